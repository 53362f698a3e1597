#pragma once
// gemma4 serve's engines: one thread that owns the sessions and runs the model, fed by a
// bounded queue of jobs that the HTTP threads fill and wait on. BatchEngine decodes
// --parallel slots in one batched pass; SpeculativeEngine decodes one slot with an
// assistant's drafts (--draft).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "gemma4/model/batch_generator.hpp"
#include "gemma4/model/drafter.hpp"
#include "gemma4/model/prompt_cache.hpp"
#include "server.hpp"

namespace gemma4::server {

// A generation as the engine runs it and the HTTP thread waiting on it sees it: the
// tokens as they are sampled, then how it ended.
struct Job {
  std::vector<int> prompt;
  SamplingOptions sampling;
  std::vector<int> stop_ids;
  int max_tokens = 0;
  std::unique_ptr<GrammarConstraint> constraint;  // response_format: what the reply must be
  // Set by the HTTP thread: the client left, or a stop string ended the reply. The engine
  // stops the sequence before its next pass.
  std::atomic<bool> cancelled{false};

  std::mutex mutex;
  std::condition_variable changed;
  // Guarded by mutex:
  std::vector<int> tokens;
  bool done = false;
  StopReason stop = StopReason::kMaxTokens;
  GenerationStats stats;
  int cached_tokens = 0;  // prompt tokens a slot's cache already held
  std::string error;      // why the engine could not run it (an error response or event)
  int error_status = 0;   // its HTTP status: 503 when the server stops, 500 for a failure

  void add_token(int id) {
    {
      const std::lock_guard lock(mutex);
      tokens.push_back(id);
    }
    changed.notify_all();
  }

  void finish(StopReason why, const GenerationStats& s, std::string why_not = {}, int status = 500) {
    {
      const std::lock_guard lock(mutex);
      done = true;
      stop = why;
      stats = s;
      error = std::move(why_not);
      error_status = status;
    }
    changed.notify_all();
  }

  void set_cached(std::size_t n) {
    const std::lock_guard lock(mutex);
    cached_tokens = static_cast<int>(n);
  }
  int cached() {
    const std::lock_guard lock(mutex);
    return cached_tokens;
  }

  // Waits up to `timeout` for tokens past `seen` or the end; returns the new tokens.
  std::vector<int> wait_for_tokens(std::size_t& seen, bool& ended, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex);
    changed.wait_for(lock, timeout, [&] { return done || tokens.size() > seen; });
    std::vector<int> fresh(tokens.begin() + static_cast<std::ptrdiff_t>(seen), tokens.end());
    seen = tokens.size();
    ended = done;
    return fresh;
  }
};

// The engine as the HTTP side sees it, whatever the model variant.
class Scheduler {
 public:
  virtual ~Scheduler() = default;
  // Queues a job; false when the queue is full or the server is stopping.
  virtual bool submit(std::shared_ptr<Job> job) = 0;
  virtual void stop() = 0;
  virtual int idle_slots() const = 0;
};

// The bounded queue an engine's thread takes its jobs from.
class JobQueue : public Scheduler {
 public:
  explicit JobQueue(int max_queue) : max_queue_(static_cast<std::size_t>(max_queue)) {}

  bool submit(std::shared_ptr<Job> job) override {
    {
      const std::lock_guard lock(mutex_);
      if (stopping_ || queue_.size() >= max_queue_) return false;
      queue_.push_back(std::move(job));
    }
    wake_.notify_one();
    return true;
  }

  void stop() override {
    {
      const std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
  }

  int idle_slots() const override { return idle_.load(); }

 protected:
  static constexpr const char* kShuttingDown = "the server is shutting down";

  // The next queued job; with `wait`, waits for one. Null when there is none, and always
  // once stop() was called.
  std::shared_ptr<Job> take(bool wait) {
    std::unique_lock lock(mutex_);
    if (wait) wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_ || queue_.empty()) return nullptr;
    std::shared_ptr<Job> job = std::move(queue_.front());
    queue_.pop_front();
    return job;
  }

  bool stopping() const {
    const std::lock_guard lock(mutex_);
    return stopping_;
  }

  // After stop(): the jobs still waiting end with a 503.
  void end_queued() {
    const std::lock_guard lock(mutex_);
    for (const std::shared_ptr<Job>& job : queue_) job->finish(StopReason::kCaller, {}, kShuttingDown, 503);
    queue_.clear();
  }

  std::atomic<int> idle_{0};

 private:
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> queue_;  // guarded by mutex_
  std::size_t max_queue_;
  bool stopping_ = false;  // guarded by mutex_
};

// A slot's session. With --prompt-cache its sliding layers keep every position, so that a
// request sharing only the start of the file's prompt rewinds to it.
inline SessionOptions slot_options(const ServeOptions& options, ThreadPool& pool) {
  return {.max_context = options.max_context, .kv_format = options.kv_format, .rewind_anywhere = !options.prompt_cache.empty(), .pool = &pool};
}

// --prompt-cache: the slot starts holding the file's prompt (a long system prompt, say),
// which a request sharing it does not prefill again.
template <Variant V>
void start_from_prompt_cache(Session<V>& session, const ServeOptions& options) {
  if (!options.prompt_cache.empty()) restore_prompt_cache(session, options.prompt_cache);
}

// The slots: --parallel sessions, each keeping its KV cache between requests, and the one
// thread (run()) that decodes all active slots in one pass, new prompts' chunks beside
// them (--prefill-rows), and hands out tokens.
template <Variant V>
class BatchEngine final : public JobQueue {
 public:
  BatchEngine(const Weights<V>& weights, const ServeOptions& options, ThreadPool& pool)
      : JobQueue(options.max_queue),
        batch_(weights, {.max_rows = options.parallel + options.prefill_rows, .pool = &pool}),
        generator_(batch_, options.prefill_rows),
        running_(static_cast<std::size_t>(options.parallel)),
        session_of_(static_cast<std::size_t>(options.parallel)) {
    for (int i = 0; i < options.parallel; ++i) {
      sessions_.push_back({std::make_unique<Session<V>>(weights, slot_options(options, pool))});
      start_from_prompt_cache(*sessions_.back().session, options);
    }
  }

  // Until stop(): then every job still queued or running ends.
  void run() {
    while (true) {
      idle_ = generator_.slots() - generator_.active();
      // A free slot takes the next job (waiting for one when nothing runs); else one pass.
      std::shared_ptr<Job> job = generator_.active() < generator_.slots() ? take(/*wait=*/generator_.active() == 0) : nullptr;
      // A job taken is always started (stop() may come just after take()): leaving it
      // unstarted would leave its client waiting for ever. After stop(), take() gives none.
      if (job) {
        start(std::move(job));
      } else if (stopping()) {
        break;
      } else {
        step();
      }
    }
    for (int slot = 0; slot < generator_.slots(); ++slot) generator_.cancel(slot);
    release_finished(kShuttingDown, 503);
    end_queued();
  }

 private:
  struct SessionSlot {
    std::unique_ptr<Session<V>> session;
    bool busy = false;
    long last_used = 0;
  };

  // The free session holding the longest prefix of `prompt`; of equals, the one unused
  // longest (the others keep their caches for the clients that made them).
  std::size_t choose_session(std::span<const int> prompt) const {
    std::size_t best = sessions_.size(), best_common = 0;
    for (std::size_t i = 0; i < sessions_.size(); ++i) {
      if (sessions_[i].busy) continue;
      const std::size_t common = common_prefix(sessions_[i].session->tokens(), prompt);
      if (best == sessions_.size() || common > best_common || (common == best_common && sessions_[i].last_used < sessions_[best].last_used)) {
        best = i;
        best_common = common;
      }
    }
    return best;
  }

  void start(std::shared_ptr<Job> job) {
    if (job->cancelled) return job->finish(StopReason::kCaller, {});  // its client left while it waited
    const std::size_t index = choose_session(job->prompt);
    Session<V>& session = *sessions_[index].session;
    job->set_cached(keep_common_prefix(session, job->prompt));
    int slot = 0;  // join takes the first free slot: on_token must find the job there
    while (!generator_.finished(slot)) ++slot;
    running_[static_cast<std::size_t>(slot)] = job;
    session_of_[static_cast<std::size_t>(slot)] = index;
    sessions_[index].busy = true;
    try {
      generator_.join(session, std::span(job->prompt).subspan(static_cast<std::size_t>(job->cached())), job->sampling, job->stop_ids,
                      job->max_tokens, [this](int s, int id) { return on_token(s, id); }, job->constraint.get());
    } catch (const std::exception& e) {
      session.reset();
      job->finish(StopReason::kCaller, {}, e.what());
      running_[static_cast<std::size_t>(slot)].reset();
      sessions_[index].busy = false;
      return;
    }
    release_finished({});  // its first token may have ended it
  }

  void step() {
    for (int slot = 0; slot < generator_.slots(); ++slot) {
      if (running_[static_cast<std::size_t>(slot)] && running_[static_cast<std::size_t>(slot)]->cancelled) generator_.cancel(slot);
    }
    try {
      if (generator_.active() > 0) generator_.step([this](int s, int id) { return on_token(s, id); });
    } catch (const std::exception& e) {  // not expected: every input was checked at join
      for (int slot = 0; slot < generator_.slots(); ++slot) generator_.cancel(slot);
      release_finished(e.what());
      return;
    }
    release_finished({});
  }

  bool on_token(int slot, int id) {
    Job& job = *running_[static_cast<std::size_t>(slot)];
    job.add_token(id);
    return !job.cancelled;
  }

  // Jobs whose sequences ended hand back their slots and sessions.
  void release_finished(const std::string& error, int status = 500) {
    for (int slot = 0; slot < generator_.slots(); ++slot) {
      std::shared_ptr<Job>& job = running_[static_cast<std::size_t>(slot)];
      if (!job || !generator_.finished(slot)) continue;
      const GenerationResult& result = generator_.result(slot);
      job->finish(result.stop, result.stats, error, status);
      SessionSlot& session = sessions_[session_of_[static_cast<std::size_t>(slot)]];
      session.busy = false;
      session.last_used = ++uses_;
      job.reset();
    }
  }

  Batch<V> batch_;
  BatchGenerator<V> generator_;
  std::vector<SessionSlot> sessions_;
  std::vector<std::shared_ptr<Job>> running_;  // by generator slot
  std::vector<std::size_t> session_of_;        // by generator slot
  long uses_ = 0;
};

// --draft: one slot, decoded speculatively with an assistant (a batch decodes plainly:
// README, batched decoding), the same tokens as plain decoding, sooner.
template <Variant V, AssistantVariant A>
class SpeculativeEngine final : public JobQueue {
 public:
  SpeculativeEngine(const Weights<V>& weights, const Assistant<A>& assistant, const ServeOptions& options, ThreadPool& pool)
      : JobQueue(options.max_queue),
        session_(weights, slot_options(options, pool)),
        drafter_(assistant, session_, {.max_drafts = options.draft_max}) {
    start_from_prompt_cache(session_, options);
  }

  void run() {
    while (true) {
      idle_ = 1;
      const std::shared_ptr<Job> job = take(/*wait=*/true);
      if (!job) break;  // stopping
      idle_ = 0;
      if (job->cancelled) {
        job->finish(StopReason::kCaller, {});
        continue;
      }
      job->set_cached(keep_common_prefix(session_, job->prompt));
      try {
        Generator<V> generator(session_, job->sampling, job->stop_ids);
        generator.constrain(job->constraint.get());
        const GenerationResult result =
            generator.generate(std::span(job->prompt).subspan(static_cast<std::size_t>(job->cached())), job->max_tokens, drafter_, [&](int id) {
              job->add_token(id);
              return !job->cancelled && !stopping();
            });
        stopping() ? job->finish(result.stop, result.stats, kShuttingDown, 503) : job->finish(result.stop, result.stats);
      } catch (const std::exception& e) {
        session_.reset();
        job->finish(StopReason::kCaller, {}, e.what());
      }
    }
    end_queued();
  }

 private:
  Session<V> session_;
  Drafter<A> drafter_;
};

}  // namespace gemma4::server

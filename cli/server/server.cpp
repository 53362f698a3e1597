#include "server.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <httplib.h>

#include "chat_page.hpp"
#include "engine.hpp"
#include "gemma4/app/conversation.hpp"
#include "gemma4/variants.hpp"
#include "openai_api.hpp"
#include "reply_builder.hpp"

namespace gemma4::server {
namespace {

std::string dump(const JsonValue& json) { return json.dump(-1, ' ', false, JsonValue::error_handler_t::replace); }

void send_json(httplib::Response& res, const JsonValue& json, int status = 200) {
  res.status = status;
  res.set_content(dump(json), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status();
  if (e.status() == 503) res.set_header("Retry-After", "1");
  res.set_content(e.json(), "application/json");
}

// What the HTTP handlers need of the loaded model, whatever its variant.
struct LoadedModel {
  std::string name;
  const Tokenizer& tokenizer;
  const ChatTemplate& chat_template;
  const GenerationConfig& generation;
  int max_context;
  Scheduler& scheduler;
};

// The API's endpoints.
class Api {
 public:
  explicit Api(const LoadedModel& model) : model_(model) {}

  void chat_completions(const httplib::Request& req, httplib::Response& res) const {
    GenerationRequest request = parse_chat_request(req.body);
    check_model(request.model);
    for (const std::string& why : request.unchecked_tools) fmt::print(stderr, "gemma4 serve: {}\n", why);
    std::vector<int> prompt;
    try {
      prompt = render_prompt(model_.chat_template, request.messages, request.tools, {.thinking = request.thinking, .add_generation_prompt = true})
                   .ids(model_.tokenizer);
    } catch (const Error& e) {
      bad_request("messages", e.what());
    }
    const std::vector<int> stop_ids = chat_stop_ids(model_.generation.stop_ids, model_.tokenizer, !request.tools.empty());
    respond(request, std::move(prompt), stop_ids, res);
  }

  void completions(const httplib::Request& req, httplib::Response& res) const {
    GenerationRequest request = parse_completion_request(req.body);
    check_model(request.model);
    std::vector<int> prompt = {control_token_id(model_.tokenizer, control_token::kBos)};
    const std::vector<int> text = model_.tokenizer.encode(request.prompt, {.add_bos = false});
    prompt.insert(prompt.end(), text.begin(), text.end());
    respond(request, std::move(prompt), model_.generation.stop_ids, res);
  }

  void models(httplib::Response& res) const {
    send_json(res, {{"object", "list"}, {"data", {{{"id", model_.name}, {"object", "model"}, {"created", created_}, {"owned_by", "gemma4"}}}}});
  }

  void tokenize(const httplib::Request& req, httplib::Response& res) const {
    const TokenizeRequest request = parse_tokenize_request(req.body);
    send_json(res, {{"tokens", model_.tokenizer.encode(request.content, {.add_bos = request.add_special})}});
  }

  void detokenize(const httplib::Request& req, httplib::Response& res) const {
    const std::vector<int> ids = parse_detokenize_request(req.body);
    for (const int id : ids) {
      if (id >= model_.tokenizer.vocab_size()) bad_request("tokens", fmt::format("token id {} is outside the vocabulary of {}", id, model_.tokenizer.vocab_size()));
    }
    send_json(res, {{"content", model_.tokenizer.decode(ids)}});
  }

 private:
  void check_model(const std::optional<std::string>& name) const {
    if (name && *name != model_.name) {
      throw ApiError(404, "model_not_found", fmt::format("the model \"{}\" does not exist: this server serves \"{}\"", *name, model_.name), "model");
    }
  }

  std::shared_ptr<Job> make_job(const GenerationRequest& request, std::vector<int> prompt, std::vector<int> stop_ids) const {
    const int room = model_.max_context - static_cast<int>(prompt.size());
    if (room < 1) {
      throw ApiError(400, "context_length_exceeded",
                     fmt::format("the prompt is {} tokens, and the context holds {} (--max-context): shorten it", prompt.size(), model_.max_context),
                     request.chat ? "messages" : "prompt");
    }
    const int max_tokens = request.max_tokens.value_or(room);
    if (max_tokens > room) {
      throw ApiError(400, "context_length_exceeded",
                     fmt::format("the context holds {} tokens, but {} were asked for ({} in the prompt, {} in the completion)", model_.max_context,
                                 prompt.size() + static_cast<std::size_t>(max_tokens), prompt.size(), max_tokens),
                     "max_tokens");
    }
    auto job = std::make_shared<Job>();
    job->prompt = std::move(prompt);
    job->sampling = request.sampling.over(model_.generation.sampling);
    job->stop_ids = std::move(stop_ids);
    job->max_tokens = max_tokens;
    if (request.grammar) job->constraint = std::make_unique<GrammarConstraint>(*request.grammar, vocabulary(), request.grammar_start);
    return job;
  }

  static FinishReason finish_reason(const Job& job, const ReplyBuilder& reply) {
    if (!reply.calls().empty()) return FinishReason::kToolCalls;
    if (reply.stopped_by_string()) return FinishReason::kStop;
    return job.stop == StopReason::kMaxTokens || job.stop == StopReason::kContextFull ? FinishReason::kLength : FinishReason::kStop;
  }

  static Usage usage(const Job& job, const ReplyBuilder& reply) {
    return {.prompt_tokens = static_cast<int>(job.prompt.size()), .completion_tokens = reply.tokens(), .cached_tokens = job.cached_tokens};
  }

  // llama-server's "timings": what the chat page's timing line shows.
  static JsonValue timings(const Job& job) {
    const GenerationStats& s = job.stats;
    return {{"prompt_n", static_cast<int>(job.prompt.size()) - job.cached_tokens},
            {"cache_n", job.cached_tokens},
            {"prompt_ms", s.prefill_seconds * 1e3},
            {"predicted_n", s.generated_tokens},
            {"predicted_per_second", s.decode_tokens_per_second()},
            {"draft_n", s.drafted},
            {"draft_n_accepted", s.accepted}};
  }

  JsonValue envelope(const GenerationRequest& request, const std::string& id, bool chunk) const {
    return {{"id", id},
            {"object", request.chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
            {"created", static_cast<long long>(std::time(nullptr))},
            {"model", model_.name}};
  }

  std::string next_id(bool chat) const { return fmt::format("{}-{}-{}", chat ? "chatcmpl" : "cmpl", created_, ++ids_); }

  void respond(const GenerationRequest& request, std::vector<int> prompt, std::vector<int> stop_ids, httplib::Response& res) const {
    std::shared_ptr<Job> job = make_job(request, std::move(prompt), std::move(stop_ids));
    if (!model_.scheduler.submit(job)) throw ApiError(503, "server_busy", "every slot is busy and the queue is full: retry later");
    const std::string id = next_id(request.chat);
    auto reply = std::make_shared<ReplyBuilder>(model_.tokenizer, request.chat, request.stop, id);
    if (request.stream) return stream(request, job, reply, id, res);

    const auto ignore = [](std::string_view, bool) {};
    std::size_t seen = 0;
    for (bool ended = false; !ended;) {
      for (const int token : job->wait_for_tokens(seen, ended, std::chrono::milliseconds(1000))) reply->push(token, ignore);
      if (reply->stopped_by_string()) job->cancelled = true;
    }
    reply->finish(ignore);
    if (!job->error.empty()) throw ApiError(job->error_status, job->error_status == 503 ? "unavailable" : "server_error", job->error);
    JsonValue out = envelope(request, id, false);
    const FinishReason reason = finish_reason(*job, *reply);
    JsonValue choice = {{"index", 0}};
    if (request.chat) {
      JsonValue message = {{"role", "assistant"}, {"content", reply->content()}};
      if (!reply->reasoning().empty()) message["reasoning_content"] = reply->reasoning();
      if (!reply->calls().empty()) message["tool_calls"] = tool_calls_json(reply->calls());
      choice["message"] = message;
    } else {
      choice["text"] = reply->content();
    }
    choice["logprobs"] = nullptr;
    choice["finish_reason"] = finish_reason_name(reason);
    out["choices"] = JsonValue::array({choice});
    out["usage"] = usage(*job, *reply).json();
    out["timings"] = timings(*job);
    send_json(res, out);
  }

  // Server-sent events: a chunk per piece of text as it is decoded, tool calls once
  // parsed, the finish reason, the usage if asked, then [DONE]. A client that goes away
  // cancels its generation before the next decode step.
  void stream(const GenerationRequest& request, std::shared_ptr<Job> job, std::shared_ptr<ReplyBuilder> reply, const std::string& id,
              httplib::Response& res) const {
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [this, request, job, reply, id](std::size_t, httplib::DataSink& sink) {
      try {
        return send_events(request, *job, *reply, id, sink);
      } catch (const std::exception&) {  // nothing is left to tell the client: end the stream
        job->cancelled = true;
        return false;
      }
    });
  }

  // The events of one streamed reply, as its tokens come; false if the client went away.
  bool send_events(const GenerationRequest& request, Job& job, ReplyBuilder& reply, const std::string& id, httplib::DataSink& sink) const {
    bool client_gone = false;
    const auto send = [&](const JsonValue& event) {
      const std::string text = fmt::format("data: {}\n\n", dump(event));
      client_gone = client_gone || !sink.write(text.data(), text.size());
    };
    const auto chunk = [&](JsonValue delta, const JsonValue& finish) {
      JsonValue event = envelope(request, id, true);
      JsonValue choice = {{"index", 0}};
      if (request.chat) {
        choice["delta"] = std::move(delta);
      } else {
        choice["text"] = delta.value("content", "");
        choice["logprobs"] = nullptr;
      }
      choice["finish_reason"] = finish;
      event["choices"] = JsonValue::array({choice});
      send(event);
    };
    const auto on_delta = [&](std::string_view text, bool thought) {
      chunk({{thought ? "reasoning_content" : "content", std::string(text)}}, nullptr);
    };
    if (request.chat) chunk({{"role", "assistant"}, {"content", ""}}, nullptr);
    std::size_t seen = 0;
    for (bool ended = false; !ended;) {
      for (const int token : job.wait_for_tokens(seen, ended, std::chrono::milliseconds(200))) reply.push(token, on_delta);
      if (JsonValue calls = reply.take_call_deltas(); !calls.empty()) chunk({{"tool_calls", std::move(calls)}}, nullptr);
      if (client_gone || !sink.is_writable()) {
        job.cancelled = true;
        return false;
      }
      if (reply.stopped_by_string()) job.cancelled = true;
    }
    reply.finish(on_delta);
    if (!job.error.empty()) {
      send(JsonValue::parse(ApiError(job.error_status, job.error_status == 503 ? "unavailable" : "server_error", job.error).json()));
    } else {
      if (JsonValue calls = reply.take_call_deltas(); !calls.empty()) chunk({{"tool_calls", std::move(calls)}}, nullptr);
      chunk(JsonValue::object(), finish_reason_name(finish_reason(job, reply)));
      if (request.include_usage) {
        JsonValue event = envelope(request, id, true);
        event["choices"] = JsonValue::array();
        event["usage"] = usage(job, reply).json();
        event["timings"] = timings(job);
        send(event);
      }
    }
    constexpr std::string_view kDone = "data: [DONE]\n\n";
    if (!client_gone) sink.write(kDone.data(), kDone.size());
    sink.done();
    return !client_gone;
  }

  // The vocabulary as a trie, built by the first request with a response_format (120 ms
  // for Gemma's 262144 tokens), then shared by every constraint.
  const TokenTrie& vocabulary() const {
    std::call_once(vocabulary_built_, [this] { vocabulary_.emplace(model_.tokenizer); });
    return *vocabulary_;
  }

  const LoadedModel& model_;
  mutable std::once_flag vocabulary_built_;
  mutable std::optional<TokenTrie> vocabulary_;
  const long long created_ = static_cast<long long>(std::time(nullptr));
  mutable std::atomic<long long> ids_{0};
};

// The model's name in the API: --alias, else its directory's name.
std::string model_name(const ServeOptions& options) {
  if (!options.alias.empty()) return options.alias;
  std::filesystem::path dir(options.model);
  if (!dir.has_filename()) dir = dir.parent_path();
  return dir.filename().string();
}

// Runs `handler` with the API once the model is loaded; errors become OpenAI errors.
template <typename Handler>
httplib::Server::Handler guarded(const std::atomic<const Api*>& api, Handler handler) {
  return [&api, handler](const httplib::Request& req, httplib::Response& res) {
    try {
      const Api* loaded = api.load();
      if (loaded == nullptr) throw ApiError(503, "loading", "the model is loading");
      handler(*loaded, req, res);
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const std::exception& e) {
      send_error(res, ApiError(500, "server_error", e.what()));
    }
  };
}

}  // namespace

int serve(const ServeOptions& options) {
  if (options.parallel < 1 || options.max_queue < 0 || options.max_context < 1) fail(ErrorKind::kInvalidArgument, "serve: bad slot or context settings");
  if (!options.draft.empty() && options.parallel != 1) {
    fail(ErrorKind::kInvalidArgument, "--draft decodes one slot speculatively: give --parallel 1 (several slots decode in one plain batched pass)");
  }
  // SIGINT and SIGTERM are blocked in every thread (those made from here inherit it) and
  // taken by one that waits for them; SIGUSR1 wakes it when the server ends otherwise.
  sigset_t signals;
  sigemptyset(&signals);
  for (const int s : {SIGINT, SIGTERM, SIGUSR1}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::atomic<const Api*> api{nullptr};
  std::atomic<Scheduler*> scheduler{nullptr};
  std::atomic<bool> stopping{false};
  httplib::Server http;
  // Each waiting request holds an HTTP thread: room for every slot and queued request,
  // and a few for /health and the like.
  const int http_threads = options.parallel + options.max_queue + 4;
  http.new_task_queue = [http_threads] { return new httplib::ThreadPool(static_cast<std::size_t>(http_threads)); };
  http.set_payload_max_length(options.max_body_bytes);
  // SO_REUSEADDR (a restart may bind at once) but not httplib's default SO_REUSEPORT, with
  // which a second server would share a busy port silently instead of failing.
  http.set_socket_options([](int sock) {
    const int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  http.set_pre_routing_handler([&options](const httplib::Request& req, httplib::Response& res) {
    const bool open = req.path == "/" || req.path == "/health";
    if (options.api_key.empty() || open) return httplib::Server::HandlerResponse::Unhandled;
    const std::string given = req.get_header_value("Authorization");
    if (constant_time_equal(given, "Bearer " + options.api_key)) return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, ApiError(401, "invalid_api_key", given.empty() ? "an API key is needed: Authorization: Bearer KEY" : "the API key is wrong"));
    return httplib::Server::HandlerResponse::Handled;
  });
  // Errors httplib answers itself (an unknown path, a body over the limit) in the API's form.
  http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    if (res.status == 404) send_error(res, ApiError(404, "not_found", fmt::format("no such endpoint: {} {}", req.method, req.path)));
    else if (res.status == 413) send_error(res, ApiError(413, "request_too_large", "the request body is larger than the server takes (--max-body-mb)"));
    else send_error(res, ApiError(res.status, "http_error", fmt::format("HTTP {}", res.status)));
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr e) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      what = x.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, "server_error", what));
  });
  http.Get("/health", [&api, &scheduler, &options](const httplib::Request&, httplib::Response& res) {
    const Scheduler* engine = scheduler.load();
    if (api.load() == nullptr || engine == nullptr) return send_json(res, {{"status", "loading"}}, 503);
    send_json(res, {{"status", "ok"}, {"slots_idle", engine->idle_slots()}, {"slots_processing", options.parallel - engine->idle_slots()}});
  });
  http.Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content(std::string(kChatPage), "text/html; charset=utf-8"); });
  http.Get("/v1/models", guarded(api, [](const Api& a, const httplib::Request&, httplib::Response& res) { a.models(res); }));
  http.Post("/v1/chat/completions", guarded(api, [](const Api& a, const httplib::Request& req, httplib::Response& res) { a.chat_completions(req, res); }));
  http.Post("/v1/completions", guarded(api, [](const Api& a, const httplib::Request& req, httplib::Response& res) { a.completions(req, res); }));
  http.Post("/tokenize", guarded(api, [](const Api& a, const httplib::Request& req, httplib::Response& res) { a.tokenize(req, res); }));
  http.Post("/detokenize", guarded(api, [](const Api& a, const httplib::Request& req, httplib::Response& res) { a.detokenize(req, res); }));

  const int port = options.port == 0 ? http.bind_to_any_port(options.host) : (http.bind_to_port(options.host, options.port) ? options.port : -1);
  if (port < 0) fail(ErrorKind::kIo, "cannot listen on {}:{} (in use, or not an address of this machine)", options.host, options.port);
  std::thread listener([&] { http.listen_after_bind(); });
  // stop() before the listener runs would be lost (and join() would wait forever).
  for (int i = 0; i < 5000 && !http.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!http.is_running()) {
    listener.join();  // listening failed at once
    fail(ErrorKind::kIo, "cannot listen on {}:{}", options.host, port);
  }
  std::thread signal_waiter([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    stopping = true;
    if (Scheduler* s = scheduler.load()) s->stop();
    http.stop();
  });
  std::exception_ptr failure;
  try {
    const std::unique_ptr<ThreadPool> own_pool = options.threads > 0 ? std::make_unique<ThreadPool>(options.threads) : nullptr;
    ThreadPool& pool = pool_or_default(own_pool.get());
    std::optional<WeightFormat> format = options.format;
    if (!format && !packed_model_info(Checkpoint(options.model))) format = WeightFormat::kInt8;  // as gemma4 run
    CompiledVariants::with_matching(read_model_config(options.model), [&]<typename V>() {
      const Model<V> model(options.model, {.format = format, .head_format = options.head_format, .pool = &pool});
      ServeOptions slots = options;
      slots.max_context = std::min<int>(options.max_context, V::config.max_position_embeddings);
      // Serves with `engine` until it stops; no handler may outlive what it reads, so the
      // HTTP threads end first.
      const auto serve_with = [&](auto& engine) {
        const LoadedModel loaded{model_name(options), model.tokenizer, model.chat_template, model.generation, slots.max_context, engine};
        const Api endpoints(loaded);
        scheduler = &engine;
        api = &endpoints;
        if (stopping) engine.stop();  // a signal came while loading
        fmt::print("gemma4 serve: {} ({}) on http://{}:{}/ with {} slots of {} tokens ({} KV cache){}\n", loaded.name, V::name, options.host, port,
                   options.parallel, slots.max_context, kv_format_name(options.kv_format), options.draft.empty() ? "" : ", drafting with " + options.draft);
        std::fflush(stdout);
        engine.run();
        http.stop();
        listener.join();
        api = nullptr;
        scheduler = nullptr;
      };
      if (options.draft.empty()) {
        BatchEngine<V> engine(model.weights, slots, pool);
        return serve_with(engine);
      }
      CompiledAssistants::with_matching<V>(read_model_config(options.draft), [&]<typename A>() {
        const Assistant<A> assistant(options.draft, {.format = model.weights.report().format, .pool = &pool});
        SpeculativeEngine<V, A> engine(model.weights, assistant, slots, pool);
        serve_with(engine);
      });
    });
  } catch (...) {
    failure = std::current_exception();
  }
  http.stop();
  if (listener.joinable()) listener.join();
  pthread_kill(signal_waiter.native_handle(), SIGUSR1);
  signal_waiter.join();
  if (failure) std::rethrow_exception(failure);
  fmt::print(stderr, "gemma4 serve: stopped\n");
  return 0;
}

}  // namespace gemma4::server

// Speed and memory of the forward pass on full-size synthetic checkpoints, against the
// machine's limits measured in the same run (bench/machine_limits.hpp):
//   gemma4_bench_model [--variants e2b,e4b] [--formats bf16,int8,int4,int4-head4] [--runs N]
//                      [--threads N] [--decode-steps N] DIR
// Checkpoints are synthesized into DIR/<variant> when missing. For each variant and
// weight format it prints load time (int8/int4: converting, and loading the packed model
// the bench writes next to the checkpoint and removes), prefill tok/s (128 and 512 tokens), decode tok/s at
// context depth 0, 512 and 2048, and peak resident memory while running, then one table with
//   decode efficiency  = weight bytes read per token * tok/s / read bandwidth
//   prefill efficiency = matmul multiply-adds per token * tok/s / peak multiply-adds/s
// of the instruction the format's matmuls use, each limit measured again right before
// the measurement it divides (this machine drifts), and how fast the int8/int4 matmul
// kernels alone stream all of the model's matrices for one token, against a plain read
// of the same bytes (bench/kernel_streaming.hpp). Also prints, on the trained toy pair of
// examples/data, the quality of each format (top-1 agreement and KL divergence against
// its bf16 checkpoint over held-out text) and its assistant's real acceptance rate.
// For int8/int4 it also measures speculative decoding with the variant's assistant
// (synthesized into DIR/<variant>-assistant when missing): what a target pass over 2..5
// tokens and a draft step cost in plain decode steps at each depth, the speed-up those
// costs give as a function of the acceptance rate, and the speed-up measured with an
// oracle drafter whose drafts are all accepted, and an estimate at the toy pair's rate.
// Batched decoding (model/batch.hpp): what a step of 2, 4 and 8 sequences costs in plain
// decode steps at each depth, the tokens/s that gives over one sequence, the memory an
// added sequence holds, and whether a prompt chunk should share the decoding rows' pass.

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/pfr.hpp>
#include <fmt/format.h>

#include "bench_util.hpp"
#include "kernel_streaming.hpp"
#include "gemma4/e2b.hpp"
#include "gemma4/e4b.hpp"
#include "gemma4/model/drafter.hpp"
#include "gemma4/model/generate.hpp"
#include "gemma4/model/prompt_cache.hpp"
#include "gemma4/testing/logit_agreement.hpp"
#include "gemma4/testing/replay_drafts.hpp"
#include "gemma4/tiny.hpp"
#include "gemma4/weights/synthetic_checkpoint.hpp"
#include "gemma4/testing/toy_heldout.hpp"
#include "gemma4/tokenizer/tokenizer.hpp"
#include "machine_limits.hpp"

namespace {

using namespace gemma4;
using bench::median;
using bench::random_tokens;
using bench::split;
using bench::quantile;
using bench::seconds_of;

// Speculative decoding's costs at one depth (spec gemma4-assistant.md section 4), each as a
// fraction of a plain decode step measured in alternation with it.
struct SpeculativeCosts {
  double verify[4] = {};  // [k - 1]: one target pass over k + 1 = 2..5 tokens
  double draft = 0;       // one draft step, centroid head

  // Decode speed-up at per-draft acceptance rate a with k drafts per round: a round emits
  // 1 + a + ... + a^k tokens on average and costs a verify and k draft steps.
  double speedup(double a, int k) const {
    double tokens = 0;
    for (int i = 0; i <= k; ++i) tokens += std::pow(a, i);
    return speedup_at(tokens, k);
  }
  // ... and at a measured number of tokens per target pass.
  double speedup_at(double tokens_per_pass, int k) const { return tokens_per_pass / (verify[k - 1] + k * draft); }
};

// Batched decoding at one depth (model/batch.hpp): N sequences advanced by one token each
// in one pass, against one sequence's plain decode step measured in alternation with it.
inline constexpr int kBatchSizes[3] = {2, 4, 8};
struct BatchCosts {
  double step[3] = {};      // [kBatchSizes index]: a batched step in plain decode steps
  double verify4[2] = {};   // [0]: 2 sequences, [1]: 4, each running 4 tokens (verifying 3 drafts)
  double aggregate(int i) const { return kBatchSizes[i] / step[i]; }  // tokens/s over one sequence's
  // Tokens/s over one sequence's plain decode if 2 or 4 sequences each drafted 3 tokens a
  // round at per-draft acceptance a (the draft steps run one sequence after another).
  double speculative(int i, double a, double draft) const {
    const int n = i == 0 ? 2 : 4;
    return n * (1 + a + a * a + a * a * a) / (verify4[i] + n * 3 * draft);
  }
};

struct Row {
  std::string variant, format;
  double load_s = 0, load_packed_s = 0, decode_packed = 0, prefill128 = 0, prefill512 = 0, decode[3] = {};
  double bytes_per_token = 0, macs_per_token = 0, peak_rss = 0, rss_limit = 0;
  // This machine's bandwidth and peaks drift by a third within minutes, so each limit is
  // measured next to what it divides: the peak right before the row's prefills, the
  // bandwidth right before and right after each depth's decode steps (their mean).
  double peak_macs_per_s = 0, bandwidth[3] = {}, bandwidth_low = 1e30, bandwidth_high = 0;
  double kernel_vs_read = 0;  // plain read time / matmul kernel time, same bytes (int8/int4)
  SpeculativeCosts speculative[3] = {};  // by depth (int8/int4)
  double oracle_speedup = 0;        // measured decode speed-up with every draft accepted, k = 3, depth 0
  BatchCosts batch[3] = {};         // by depth
  double shared_prefill = 0;        // one pass of a 64-token prompt chunk and 3 decode rows / the two passes apart
  double sequence_bytes = 0, batch_scratch_bytes = 0;  // an added sequence's KV cache and prefill scratch; the batch's scratch
};

template <Variant V>
struct AssistantOf;
template <>
struct AssistantOf<E2B> {
  using type = E2BAssistant;
};
template <>
struct AssistantOf<E4B> {
  using type = E4BAssistant;
};

// The costs at the session's position: a plain decode step, target passes over 2..5
// tokens (each rolled back) and a draft step, in alternation, `steps` times. Each cost is
// a lower quartile: this host stalls now and then (a 57 ms step of E4B took up to 750 ms,
// several times in 15), a stall only ever adds time, and medians moved with the stalls
// (in that run a pass over 4 tokens at depth 2048: median 1.44 decode steps, lower
// quartile 1.29).
template <Variant V, AssistantVariant A>
SpeculativeCosts speculative_costs(Session<V>& session, Drafter<A>& drafter, std::span<const int> next, int steps) {
  const int position = session.position();
  const std::size_t vocab = V::config.vocab_size, hidden_size = V::config.hidden_size;
  std::vector<float> logits(5 * vocab), hidden(5 * hidden_size);
  std::vector<double> decode, verify[4], draft;
  for (int s = 0; s < steps; ++s) {
    decode.push_back(seconds_of([&] { session.forward(next.first(1), Logits::kLast, std::span(logits).first(vocab)); }));
    session.rewind(position);
    for (std::size_t n = 2; n <= 5; ++n) {
      verify[n - 2].push_back(seconds_of([&] {
        session.forward(next.first(n), Logits::kAll, std::span(logits).first(n * vocab), std::span(hidden).first(n * hidden_size));
      }));
      session.rewind(position);
    }
    draft.push_back(seconds_of([&] { drafter.first_step(next[0], std::span(hidden).first(hidden_size)); }));
  }
  SpeculativeCosts costs;
  const double step = quantile(decode, 0.25);
  for (int k = 1; k <= 4; ++k) costs.verify[k - 1] = quantile(verify[k - 1], 0.25) / step;
  costs.draft = quantile(draft, 0.25) / step;
  return costs;
}

// The costs at the session's position: a plain decode step and batched steps of 2, 4 and
// 8 sequences (the session and copies of it, at the same depth), each rolled back, in
// alternation, `steps` times; lower quartiles as for the speculative costs.
template <Variant V>
BatchCosts batch_costs(Session<V>& session, Batch<V>& batch, std::span<const int> next, int steps) {
  const int position = session.position();
  const std::size_t vocab = V::config.vocab_size;
  std::vector<Session<V>> others(kBatchSizes[2] - 1, session);
  std::vector<BatchEntry<V>> entries{{&session, next.first(1)}};
  for (std::size_t i = 0; i < others.size(); ++i) entries.push_back({&others[i], next.subspan(i + 1, 1)});
  std::vector<BatchEntry<V>> verifying;  // 4 sequences, 4 tokens each
  for (std::size_t i = 0; i < 4; ++i) verifying.push_back({entries[i].session, next.subspan(i, 4)});
  std::vector<float> logits(16 * vocab);
  std::vector<double> decode, batched[3], verify[2];
  const auto timed = [&](std::span<const BatchEntry<V>> part, Logits which, std::size_t rows) {
    const double seconds = seconds_of([&] { batch.forward(part, which, std::span(logits).first(rows * vocab)); });
    for (const BatchEntry<V>& e : part) e.session->rewind(position);
    return seconds;
  };
  for (int s = 0; s < steps; ++s) {
    decode.push_back(seconds_of([&] { session.forward(next.first(1), Logits::kLast, std::span(logits).first(vocab)); }));
    session.rewind(position);
    for (int i = 0; i < 3; ++i) {
      const auto n = static_cast<std::size_t>(kBatchSizes[i]);
      batched[i].push_back(timed(std::span(entries).first(n), Logits::kLast, n));
    }
    for (int i = 0; i < 2; ++i) {
      const std::size_t n = i == 0 ? 2 : 4;
      verify[i].push_back(timed(std::span(verifying).first(n), Logits::kAll, 4 * n));
    }
  }
  BatchCosts costs;
  const double step = quantile(decode, 0.25);
  for (int i = 0; i < 3; ++i) costs.step[i] = quantile(batched[i], 0.25) / step;
  for (int i = 0; i < 2; ++i) costs.verify4[i] = quantile(verify[i], 0.25) / step;
  return costs;
}

// A prompt chunk of 64 tokens and 3 decode rows in one pass, against the chunk's own pass
// plus a batched step of the 3: whether a joining sequence's prefill should share the
// decoding ones' passes. Lower quartiles, in alternation.
template <Variant V>
double shared_prefill_cost(Session<V>& session, Batch<V>& batch, std::span<const int> tokens, int steps) {
  const int position = session.position();
  const SessionOptions options = session.options();
  Session<V> joining(session.weights(), options);
  std::vector<Session<V>> decoding(3, session);
  std::vector<BatchEntry<V>> entries;
  for (std::size_t i = 0; i < decoding.size(); ++i) entries.push_back({&decoding[i], tokens.subspan(i, 1)});
  const auto rewind_all = [&] {
    for (Session<V>& d : decoding) d.rewind(position);
    joining.reset();
  };
  const std::size_t vocab = V::config.vocab_size;
  std::vector<float> logits(4 * vocab);
  std::vector<double> apart, shared;
  for (int s = 0; s < steps; ++s) {
    apart.push_back(seconds_of([&] {
      joining.forward(tokens.first(64), Logits::kLast, std::span(logits).first(vocab));
      batch.forward(entries, Logits::kLast, std::span(logits).first(3 * vocab));
    }));
    rewind_all();
    entries.push_back({&joining, tokens.first(64)});
    shared.push_back(seconds_of([&] { batch.forward(entries, Logits::kLast, logits); }));
    entries.pop_back();
    rewind_all();
  }
  return quantile(shared, 0.25) / quantile(apart, 0.25);
}

// Greedy decode speed with an oracle drafter (k = 3, every draft accepted) over plain
// greedy decode speed, from the same prompt; the two must give the same tokens.
template <Variant V>
double oracle_speedup(const Weights<V>& weights, std::span<const int> prompt, int tokens, ThreadPool& pool) {
  const SessionOptions options{.max_context = static_cast<int>(prompt.size()) + tokens + 8, .pool = &pool};
  Session<V> plain_session(weights, options);
  const GenerationResult plain = Generator<V>(plain_session, {.temperature = 0.0f}, {}).generate(prompt, tokens, [](int) { return true; });
  Session<V> session(weights, options);
  ReplayDrafts<V> oracle{plain.tokens, static_cast<int>(prompt.size()), 3, session};
  const GenerationResult fast = Generator<V>(session, {.temperature = 0.0f}, {}).generate(prompt, tokens, oracle, [](int) { return true; });
  if (fast.tokens != plain.tokens) fail(ErrorKind::kInvalidArgument, "speculative decoding changed the output");
  return fast.stats.decode_tokens_per_second() / plain.stats.decode_tokens_per_second();
}

constexpr int kDepths[3] = {0, 512, 2048};

// Multiply-adds per prompt token of a 512-token prefill: every matrix once per token,
// the LM head once per prompt (only the last token's logits are computed).
template <Variant V>
double macs_per_prompt_token(const Weights<V>& w) {
  double macs = 0;
  const auto add = [&](const TensorView& t) {
    if (t.shape[1] > 1) macs += static_cast<double>(t.shape[0]) * static_cast<double>(t.shape[1]);
  };
  for (const auto& layer : w.layers) boost::pfr::for_each_field(layer, [&](const auto& s) { if (s.data) add(s); });
  add(w.global.per_layer_model_projection);
  const TensorView& head = w.global.embed_tokens;
  return macs + static_cast<double>(head.shape[0]) * static_cast<double>(head.shape[1]) / 512.0;
}

// Every int8/int4 matrix of a model, in the order decode reads them.
template <Variant V>
std::vector<const QuantizedMatrix*> quantized_matrices(const Weights<V>& w) {
  std::vector<const QuantizedMatrix*> all;
  const auto add = [&](const auto& slot) {
    if constexpr (std::is_base_of_v<MatrixView, std::remove_cvref_t<decltype(slot)>>) {
      if (const QuantizedMatrix* packed = quantized_matrix(slot.linear)) all.push_back(packed);
    }
  };
  add(w.global.per_layer_model_projection);
  for (const auto& layer : w.layers) boost::pfr::for_each_field(layer, add);
  add(w.global.embed_tokens);
  return all;
}

// A --formats entry: the weights' format, and an int4 model's LM head ("int4-head4": int4).
struct BenchFormat {
  std::string name;
  WeightFormat weights;
  std::optional<WeightFormat> head;

  static BenchFormat parse(const std::string& name) {
    static constexpr std::string_view kInt4Head = "int4-head4";
    if (name == kInt4Head) return {name, WeightFormat::kInt4, WeightFormat::kInt4};
    const auto format = parse_weight_format(name);
    if (!format) fail(ErrorKind::kInvalidArgument, "unknown weight format '{}': expected bf16, int8, int4 or {}", name, kInt4Head);
    return {name, *format, std::nullopt};
  }
  LoadOptions load(ThreadPool* pool = nullptr) const { return {.format = weights, .head_format = head, .pool = pool}; }
  ConvertOptions convert(ThreadPool* pool) const { return {.format = weights, .head_format = head, .pool = pool}; }
};

template <Variant V>
Row run_format(const std::filesystem::path& dir, const BenchFormat& bench_format, int runs, int decode_steps, ThreadPool& pool) {
  const WeightFormat format = bench_format.weights;
  Row row{std::string(V::name), bench_format.name};
  // Peak RSS while prefilling and decoding; the limit measurements between the phases
  // allocate buffers of their own, which must not count.
  const auto running = [&](auto&& phase) {
    bench::reset_peak_resident();
    phase();
    row.peak_rss = std::max(row.peak_rss, bench::status_bytes("VmHWM"));
  };
  std::vector<double> loads;
  for (int run = 0; run < runs; ++run) {
    loads.push_back(seconds_of([&] { const Weights<V> w(dir, bench_format.load(&pool)); }));
  }
  row.load_s = median(loads);
  // int8/int4: the packed model next to the checkpoint (DIR/e2b-int8), written, loaded,
  // and removed at the end.
  const auto packed_dir = dir.parent_path() / fmt::format("{}-{}", dir.filename().string(), row.format);
  if (format != WeightFormat::kBF16) {
    std::filesystem::remove_all(packed_dir);
    const double convert_s = seconds_of([&] { convert_checkpoint<V>(dir, packed_dir, bench_format.convert(&pool)); });
    std::vector<double> packed_loads;
    { const Weights<V> cold(packed_dir); }  // the converter dropped the file from the page cache
    for (int run = 0; run < runs; ++run) packed_loads.push_back(seconds_of([&] { const Weights<V> w(packed_dir); }));
    row.load_packed_s = median(packed_loads);
    fmt::print("  {} {}: load {:.2f} s converting, {:.2f} s from the packed model ({:.2f} GB, in the page cache;"
               " converted in {:.1f} s)\n",
               V::name, row.format, row.load_s, row.load_packed_s, std::filesystem::file_size(packed_dir / "model.safetensors") / 1e9,
               convert_s);
  }
  const Weights<V> weights(dir, bench_format.load(&pool));
  row.bytes_per_token = static_cast<double>(weights.report().bytes_per_token);
  row.macs_per_token = macs_per_prompt_token(weights);
  // Room past the deepest decode steps for the speculative costs' passes of up to 5 tokens
  // and the batched steps' next tokens.
  const int context = kDepths[2] + decode_steps + std::max(5, kBatchSizes[2]);
  Session<V> session(weights, {.max_context = context, .prefill_chunk = 64, .pool = &pool});
  std::vector<float> logits(V::config.vocab_size);
  const auto tokens = random_tokens(static_cast<std::size_t>(context), V::config.vocab_size, 7);
  const std::span<const int> all(tokens);

  row.peak_macs_per_s = format == WeightFormat::kBF16 ? bench::f32_fma_rate(pool, 3) : bench::int8_dot_rate(pool, 3);
  for (const std::size_t n : {128, 512}) {
    std::vector<double> rates;
    for (int run = 0; run < runs; ++run) {
      session.reset();
      running([&] {
        rates.push_back(static_cast<double>(n) / seconds_of([&] { session.forward(all.first(n), Logits::kLast, logits); }));
      });
    }
    (n == 128 ? row.prefill128 : row.prefill512) = median(rates);
    fmt::print("  {} {}: prefill {} tokens {:.2f} tok/s (peak measured before: {:.1f} G multiply-adds/s)\n", V::name, row.format,
               n, median(rates), row.peak_macs_per_s / 1e9);
  }
  // int8/int4: the assistant next to the checkpoint (DIR/e2b-assistant), synthesized when
  // missing, converted to the target's format.
  using A = typename AssistantOf<V>::type;
  std::optional<Assistant<A>> assistant;
  std::optional<Drafter<A>> drafter;
  if (format != WeightFormat::kBF16) {
    const auto assistant_dir = dir.parent_path() / std::string(A::name);
    if (!std::filesystem::exists(assistant_dir / "config.json")) write_synthetic_assistant<A>(assistant_dir, {.seed = 2});
    assistant.emplace(assistant_dir, AssistantOptions{.format = format, .pool = &pool});
    drafter.emplace(*assistant, session);
  }
  // Batches of up to 8 rows, or a 64-token prompt chunk beside 3 decode rows.
  Batch<V> batch(weights, {.max_rows = 64 + 3, .pool = &pool});
  row.batch_scratch_bytes = static_cast<double>(batch.scratch_bytes());
  session.reset();
  row.shared_prefill = shared_prefill_cost(session, batch, all, std::max(3, decode_steps / 2));
  fmt::print("  {} {}: a 64-token prompt chunk and 3 decode rows in one pass take {:.2f} of the time of their two passes apart\n", V::name,
             row.format, row.shared_prefill);
  for (int d = 0; d < 3; ++d) {
    const int depth = kDepths[d];
    running([&] {
      const auto start = static_cast<std::size_t>(session.position());
      if (depth > session.position()) session.forward(all.subspan(start, static_cast<std::size_t>(depth) - start), Logits::kLast, logits);
    });
    const double before = bench::read_bandwidth(pool, 3);
    std::vector<double> steps;
    running([&] {
      for (int s = 0; s < decode_steps; ++s) {
        const auto next = all.subspan(static_cast<std::size_t>(session.position()), 1);
        steps.push_back(seconds_of([&] { session.forward(next, Logits::kLast, logits); }));
      }
    });
    const double after = bench::read_bandwidth(pool, 3);
    row.bandwidth[d] = (before + after) / 2;
    row.bandwidth_low = std::min({row.bandwidth_low, before, after});
    row.bandwidth_high = std::max({row.bandwidth_high, before, after});
    row.decode[d] = 1.0 / median(steps);
    fmt::print("  {} {}: decode at depth {} {:.2f} tok/s (read bandwidth before/after: {:.1f}/{:.1f} GB/s)\n", V::name,
               row.format, depth, row.decode[d], before / 1e9, after / 1e9);
    {
      const BatchCosts& b = row.batch[d] = batch_costs(session, batch, all.subspan(static_cast<std::size_t>(session.position()), kBatchSizes[2]), decode_steps);
      fmt::print("  {} {}: at depth {}, a batched step of 2/4/8 sequences costs {:.2f}/{:.2f}/{:.2f} decode steps: {:.2f}/{:.2f}/{:.2f}x the tokens/s of one;"
                 " a pass of 2/4 sequences x 4 tokens {:.2f}/{:.2f}\n",
                 V::name, row.format, depth, b.step[0], b.step[1], b.step[2], b.aggregate(0), b.aggregate(1), b.aggregate(2), b.verify4[0], b.verify4[1]);
    }
    if (drafter) {
      const SpeculativeCosts& c = row.speculative[d] = speculative_costs(session, *drafter, all.subspan(static_cast<std::size_t>(session.position()), 5), decode_steps);
      fmt::print("  {} {}: at depth {}, a target pass over 2/3/4/5 tokens costs {:.2f}/{:.2f}/{:.2f}/{:.2f} decode steps, a draft step {:.3f}\n",
                 V::name, row.format, depth, c.verify[0], c.verify[1], c.verify[2], c.verify[3], c.draft);
    }
  }
  if (drafter) {
    row.oracle_speedup = oracle_speedup(weights, all.first(16), 8 * decode_steps + 1, pool);
    fmt::print("  {} {}: measured decode speed-up with every draft accepted (k = 3): {:.2f}x\n", V::name, row.format, row.oracle_speedup);
  }
  row.sequence_bytes = static_cast<double>(session.kv_cache_bytes() + session.scratch_bytes());
  row.rss_limit = row.bytes_per_token + static_cast<double>(session.kv_cache_bytes()) + 300e6 +
                  (assistant ? static_cast<double>(assistant->report().quantized_bytes) : 0.0);
  if (format != WeightFormat::kBF16) {
    const auto matrices = quantized_matrices(weights);
    const bench::KernelStreaming k = bench::kernel_streaming(matrices, pool, 9);
    row.kernel_vs_read = k.read_s / k.kernel_s;
    fmt::print("  {} {}: matmul kernels alone {:.2f} ms per token, a plain read of their {:.3f} GB {:.2f} ms: {:.2f} of a read\n",
               V::name, row.format, k.kernel_s * 1e3, k.bytes / 1e9, k.read_s * 1e3, row.kernel_vs_read);
    // The packed model (4 KiB pages of the page cache, not the arena's huge pages; its
    // tables looked up packed): decode steps at depths 0 and 2048, alternating with the
    // converted weights' so that both see the same bandwidth.
    // At least 30 pairs: a few steps' median moves by several percent on a noisy host.
    const int alternating = std::max(decode_steps, 30);
    constexpr int kPackedDepths[] = {0, 2048};
    const int packed_context = kPackedDepths[1] + alternating;
    const auto packed_tokens = random_tokens(static_cast<std::size_t>(packed_context), V::config.vocab_size, 8);
    const Weights<V> packed(packed_dir);
    Session<V> from_packed(packed, {.max_context = packed_context, .pool = &pool});
    Session<V> converted(weights, {.max_context = packed_context, .pool = &pool});
    for (const int depth : kPackedDepths) {
      from_packed.reset();
      converted.reset();
      if (depth > 0) {
        // One prefill for both: the packed model shares the checkpoint's fingerprint, so
        // the converted session's prompt cache restores into the packed one.
        converted.forward(std::span(packed_tokens).first(static_cast<std::size_t>(depth)), Logits::kLast, logits);
        save_prompt_cache(converted, packed_dir / "bench.prompt-cache");
        restore_prompt_cache(from_packed, packed_dir / "bench.prompt-cache");
      }
      std::vector<double> packed_steps, converted_steps;
      for (int s = 0; s < alternating; ++s) {
        const auto next = std::span(packed_tokens).subspan(static_cast<std::size_t>(depth + s), 1);
        packed_steps.push_back(seconds_of([&] { from_packed.forward(next, Logits::kLast, logits); }));
        converted_steps.push_back(seconds_of([&] { converted.forward(next, Logits::kLast, logits); }));
      }
      if (depth == 0) row.decode_packed = 1.0 / median(packed_steps);
      fmt::print("  {} {}: decode at depth {} in alternating steps: {:.2f} tok/s from the packed model ({:.0f}% of its resident bytes"
                 " mapped through 2 MiB pages), {:.2f} converting at load: {:.3f}x\n",
                 V::name, row.format, depth, 1.0 / median(packed_steps),
                 100 * bench::huge_mapped_share(std::filesystem::canonical(packed_dir / "model.safetensors").string()),
                 1.0 / median(converted_steps), median(converted_steps) / median(packed_steps));
    }
    std::filesystem::remove_all(packed_dir);
  }
  return row;
}

// The trained toy pair (examples/data/toy-e2b and toy-e2b-assistant, trained by
// examples/train/train_toy_pair.py) and its held-out chats (tests/data/toy-heldout.txt).
struct ToyPair {
  std::filesystem::path target, assistant;
  ToyHeldout heldout;
};

ToyPair load_toy_pair(const std::filesystem::path& data, const std::filesystem::path& heldout_file) {
  const std::filesystem::path target = data / "toy-e2b";
  return {target, data / "toy-e2b-assistant", read_toy_heldout(heldout_file, Tokenizer::from_file(target / "tokenizer.json"))};
}

// The toy target's logits over the held-out text in a format (unset: its bf16 as stored).
std::vector<float> toy_logits(const ToyPair& toy, const LoadOptions& format) {
  const Weights<TinyE2B> w(toy.target, format);
  Session<TinyE2B> s(w, {.max_context = static_cast<int>(toy.heldout.tokens.size())});
  std::vector<float> out(toy.heldout.tokens.size() * TinyE2B::config.vocab_size);
  s.forward(toy.heldout.tokens, Logits::kAll, out);
  return out;
}

// Top-1 agreement and KL of a format against the bf16 checkpoint's logits over the held-out text.
void toy_quality(const ToyPair& toy, std::span<const float> reference, const BenchFormat& format) {
  const auto agreement = compare_logits(reference, toy_logits(toy, format.load()), TinyE2B::config.vocab_size);
  fmt::print("quality of {} on the trained toy-e2b: top-1 agreement {:6.2f}% | mean KL {:.5f} nats | rms logit error {:.3f} | top-1"
             " moved only where the reference led by <= {:.3f} (median lead {:.3f}) | {} held-out positions, vs bf16 weights\n",
             format.name, 100 * agreement.top1, agreement.mean_kl, agreement.rms_error, agreement.largest_flipped_lead,
             agreement.median_lead, agreement.positions);
}

// The toy assistant's real acceptance over the held-out prompts, greedy and sampled at
// temperature 1 (no top-k/top-p), and the decode speed-up measured for each (median of
// `runs`). Returns the greedy tokens per target pass.
double toy_speculation(const ToyPair& toy, int runs, ThreadPool& pool) {
  const Weights<TinyE2B> weights(toy.target);
  const Assistant<TinyE2BAssistant> assistant(toy.assistant);
  const SessionOptions options{.max_context = 512, .pool = &pool};
  const std::vector<int> stops = read_generation_config(toy.target).stop_ids;
  double tokens_per_pass = 0;
  for (const SamplingOptions sampling : {SamplingOptions{.temperature = 0.0f}, SamplingOptions{.temperature = 1.0f, .top_k = 0, .top_p = 1.0f}}) {
    GenerationStats total;
    std::vector<double> speedups;
    for (int run = 0; run < runs; ++run) {
      double plain_seconds = 0, fast_seconds = 0;
      for (std::size_t i = 0; i < toy.heldout.prompts.size(); ++i) {
        SamplingOptions seeded = sampling;
        seeded.seed = i;
        Session<TinyE2B> plain_session(weights, options), session(weights, options);
        const GenerationResult plain = Generator<TinyE2B>(plain_session, seeded, stops).generate(toy.heldout.prompts[i], 256, [](int) { return true; });
        Drafter<TinyE2BAssistant> drafter(assistant, session);
        const GenerationResult fast = Generator<TinyE2B>(session, seeded, stops).generate(toy.heldout.prompts[i], 256, drafter, [](int) { return true; });
        if (fast.tokens != plain.tokens) fail(ErrorKind::kInvalidArgument, "speculative decoding changed the toy pair's output");
        plain_seconds += plain.stats.decode_seconds;
        fast_seconds += fast.stats.decode_seconds;
        if (run == 0) {
          total.generated_tokens += fast.stats.generated_tokens - 1;
          total.target_passes += fast.stats.target_passes;
          total.drafted += fast.stats.drafted;
          total.accepted += fast.stats.accepted;
        }
      }
      speedups.push_back(plain_seconds / fast_seconds);
    }
    const double per_pass = static_cast<double>(total.generated_tokens) / total.target_passes;
    fmt::print("toy pair, {} over {} held-out prompts (k = 3): {} of {} drafts accepted ({:.1f}%) | {:.2f} tokens per target pass |"
               " measured decode speed-up {:.2f}x (tiny model: bound by per-pass overheads, not by reading weights)\n",
               sampling.greedy() ? "greedy" : "sampled at temperature 1", toy.heldout.prompts.size(), total.accepted, total.drafted,
               100.0 * total.acceptance_rate(), per_pass, median(speedups));
    if (sampling.greedy()) tokens_per_pass = per_pass;
  }
  return tokens_per_pass;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir, variants = "e2b,e4b", formats = "bf16,int8,int4";
  std::string toy_dir = gemma4::bench::source_dir() + "/examples/data", heldout_file = gemma4::bench::source_dir() + "/tests/data/toy-heldout.txt";
  int runs = 3, threads = 0, decode_steps = 5;
  CLI::App app("gemma4_bench_model: speed and memory of full-size models against the machine's measured limits");
  app.add_option("--variants", variants, "comma-separated: e2b, e4b, or none (the toy pair only)")->capture_default_str();
  app.add_option("--toy", toy_dir, "where the trained toy pair is (toy-e2b, toy-e2b-assistant)")->capture_default_str();
  app.add_option("--heldout", heldout_file, "the toy pair's held-out chats")->capture_default_str();
  app.add_option("--formats", formats, "comma-separated: bf16, int8, int4, int4-head4 (int4 with an int4 LM head)")->capture_default_str();
  app.add_option("--runs", runs, "runs to take medians of")->check(CLI::Range(1, 1000))->capture_default_str();
  app.add_option("--threads", threads, "threads, 0 = all usable CPUs")->check(CLI::Range(0, 1024))->capture_default_str();
  app.add_option("--decode-steps", decode_steps, "decode steps per depth")->check(CLI::Range(1, 100000))->capture_default_str();
  app.add_option("DIR", dir, "where the synthetic checkpoints are (written when missing)")->required();
  CLI11_PARSE(app, argc, argv);
  try {
    std::vector<BenchFormat> chosen;
    for (const std::string& f : split(formats)) chosen.push_back(BenchFormat::parse(f));

    ThreadPool pool(threads);
    const bench::MachineLimits limits = bench::measure_machine(pool, 5);
    fmt::print("machine ({} threads, medians of 5): read bandwidth {:.1f} GB/s | f32 FMA {:.1f} G/s | int8 dot {:.1f} G/s"
               " multiply-adds ({})\n",
               pool.size(), limits.read_bytes_per_s / 1e9, limits.f32_fma_per_s / 1e9, limits.int8_dot_per_s / 1e9,
               bench::ops::IntDotName(bench::ops::ChosenIntDot()));

    const ToyPair toy = load_toy_pair(toy_dir, heldout_file);
    const std::vector<float> toy_reference = toy_logits(toy, {});
    for (const BenchFormat& f : chosen) {
      if (f.weights != WeightFormat::kBF16) toy_quality(toy, toy_reference, f);
    }
    const double toy_tokens_per_pass = toy_speculation(toy, runs, pool);

    std::vector<Row> rows;
    const auto bench_variant = [&]<Variant V>() {
      const std::filesystem::path path = std::filesystem::path(dir) / std::string(V::name);
      if (!std::filesystem::exists(path / "config.json")) {
        fmt::print("synthesizing {} into {} ...\n", V::name, path.string());
        write_synthetic_checkpoint(V::config, path, {.seed = 1, .shards = 2});
      }
      for (const BenchFormat& f : chosen) rows.push_back(run_format<V>(path, f, runs, decode_steps, pool));
    };
    for (const std::string& v : split(variants)) {
      if (v == "none") {
        continue;
      } else if (v == "e2b") {
        bench_variant.operator()<E2B>();
      } else if (v == "e4b") {
        bench_variant.operator()<E4B>();
      } else {
        fail(ErrorKind::kInvalidArgument, "unknown variant '{}': expected e2b, e4b or none", v);
      }
    }

    if (rows.empty()) return 0;  // --variants none: the toy pair only
    fmt::print("\n{:<4} {:<5} {:>6} {:>6} {:>6} | {:>9} {:>9} {:>5} {:>6} | {:>8} {:>5} {:>8} {:>5} {:>8} {:>5} {:>9} {:>6} | {:>7} | {:>7} {:>7}\n", "", "",
               "load", "load", "d0 t/s", "prefill", "prefill", "eff", "peak", "decode", "eff", "decode", "eff", "decode", "eff", "bandwidth", "kernel",
               "GB/tok", "peakRSS", "limit");
    fmt::print("{:<4} {:<5} {:>6} {:>6} {:>6} | {:>9} {:>9} {:>5} {:>6} | {:>8} {:>5} {:>8} {:>5} {:>8} {:>5} {:>9} {:>6} | {:>7} | {:>7} {:>7}\n", "", "",
               "s", "pack s", "packed", "128 t/s", "512 t/s", "512", "G/s", "d0 t/s", "", "d512", "", "d2048", "", "GB/s", "/read", "", "GB", "GB");
    for (const Row& r : rows) {
      const double peak = r.peak_macs_per_s;
      fmt::print("{:<4} {:<5} {:>6.2f} {:>6} {:>6} | {:>9.2f} {:>9.2f} {:>5.2f} {:>6.0f} | {:>8.2f} {:>5.2f} {:>8.2f} {:>5.2f} {:>8.2f} {:>5.2f} {:>9} {:>6} | {:>7.3f} | "
                 "{:>7.2f} {:>7.2f}{}\n",
                 r.variant, r.format, r.load_s, r.load_packed_s > 0 ? fmt::format("{:.2f}", r.load_packed_s) : "-",
                 r.decode_packed > 0 ? fmt::format("{:.2f}", r.decode_packed) : "-", r.prefill128, r.prefill512, r.macs_per_token * r.prefill512 / peak, peak / 1e9,
                 r.decode[0], r.bytes_per_token * r.decode[0] / r.bandwidth[0], r.decode[1], r.bytes_per_token * r.decode[1] / r.bandwidth[1],
                 r.decode[2], r.bytes_per_token * r.decode[2] / r.bandwidth[2],
                 fmt::format("{:.0f}-{:.0f}", r.bandwidth_low / 1e9, r.bandwidth_high / 1e9),
                 r.kernel_vs_read > 0 ? fmt::format("{:.2f}", r.kernel_vs_read) : "-", r.bytes_per_token / 1e9, r.peak_rss / 1e9, r.rss_limit / 1e9,
                 r.peak_rss <= r.rss_limit ? "" : "  over");
    }
    // Batched decoding: the targets are 4 sequences >= 3.0x and 8 >= 5.0x the
    // tokens/s of one, and a step of 4 <= 1.35 plain decode steps.
    fmt::print("\n{:<4} {:<5} {:<6} | {:>6} {:>6} {:>6} | {:>6} {:>6} {:>6} | {:>7} {:>7} | {:>9} {:>9} {:>9}\n", "batch", "", "depth", "x N=2",
               "x N=4", "x N=8", "step 2", "step 4", "step 8", "spec 2", "spec 4", "seq MB", "scratch", "shared");
    for (const Row& r : rows) {
      for (int d = 0; d < 3; ++d) {
        const BatchCosts& b = r.batch[d];
        const double draft = r.speculative[d].draft;
        const auto spec = [&](int i) { return draft > 0 ? fmt::format("{:.2f}", b.speculative(i, 0.6, draft)) : std::string("-"); };
        fmt::print("{:<4} {:<5} {:<6} | {:>6.2f} {:>6.2f} {:>6.2f} | {:>6.2f} {:>6.2f} {:>6.2f} | {:>7} {:>7} | {:>9} {:>9} {:>9}{}{}{}\n", r.variant,
                   r.format, kDepths[d], b.aggregate(0), b.aggregate(1), b.aggregate(2), b.step[0], b.step[1], b.step[2], spec(0), spec(1),
                   d == 0 ? fmt::format("{:.1f}", r.sequence_bytes / 1e6) : "", d == 0 ? fmt::format("{:.1f}", r.batch_scratch_bytes / 1e6) : "",
                   d == 0 ? fmt::format("{:.2f}", r.shared_prefill) : "", b.aggregate(1) >= 3.0 ? "" : "  N=4 under 3.0x",
                   b.aggregate(2) >= 5.0 ? "" : "  N=8 under 5.0x", b.step[1] <= 1.35 ? "" : "  step 4 over 1.35");
      }
    }
    fmt::print("batch: x N = tokens/s of N sequences decoded in one pass / one sequence's plain decode (N / step N); step N = a batched"
               " step in plain decode steps measured in alternation (lower quartiles); spec N = the tokens/s over one sequence's if N"
               " sequences each drafted 3 tokens a round at acceptance 0.6, from a measured pass of N x 4 tokens and the draft step above; seq MB = what an added sequence holds (its KV cache"
               " at the bench's context and its session's prefill scratch; the weights are shared); scratch = the batch's, for 67 rows;"
               " shared = one pass of a 64-token prompt chunk and 3 decode rows / the chunk's pass and the 3 rows' batched step apart.\n");
    // Speculative decoding: the targets are verify(k = 3) <= 1.25 and a draft step
    // <= 0.05 decode steps, and a speed-up >= 1.6x at acceptance 0.6 with k = 3.
    constexpr double kRates[] = {0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9};
    for (const Row& r : rows) {
      if (r.oracle_speedup == 0) continue;
      fmt::print("\nspeculative {} {} (oracle, k = 3, measured: {:.2f}x)\n{:<6} {:>7} {:>6} | speed-up at acceptance", r.variant, r.format,
                 r.oracle_speedup, "depth", "verify4", "draft");
      for (double a : kRates) fmt::print(" {:>5.1f}", a);
      fmt::print(" | toy's {:.2f} tokens/pass\n", toy_tokens_per_pass);
      for (int d = 0; d < 3; ++d) {
        const SpeculativeCosts& c = r.speculative[d];
        fmt::print("{:<6} {:>7.2f} {:>6.3f} | k = 3                 ", kDepths[d], c.verify[2], c.draft);
        for (double a : kRates) fmt::print(" {:>5.2f}", c.speedup(a, 3));
        fmt::print(" | {:>5.2f}", c.speedup_at(toy_tokens_per_pass, 3));
        fmt::print("{}{}{}\n", c.verify[2] <= 1.25 ? "" : "  verify over 1.25", c.draft <= 0.05 ? "" : "  draft over 0.05",
                   c.speedup(0.6, 3) >= 1.6 ? "" : "  under 1.6x at 0.6");
      }
    }
    if (std::any_of(rows.begin(), rows.end(), [](const Row& r) { return r.oracle_speedup > 0; })) {
      fmt::print("speculative: verify4 = a target pass over k + 1 = 4 tokens and draft = one draft step (centroid head), each in"
                 " plain decode steps measured in alternation (lower quartiles); speed-up = (1 + a + a^2 + a^3) / (verify4 + 3 draft) at per-draft"
                 " acceptance a; the last column estimates it at the tokens per target pass the trained toy pair reached greedily.\n");
    }
    fmt::print("load: converting (int8/int4) at load time; packed: loading the packed model of the same checkpoint"
               " (gemma4 convert), and decode at depth 0 from it (in steps alternating with the converted weights' own, printed above with"
               " depth 2048's).\n");
    fmt::print("efficiency: decode = GB/tok * tok/s / the mean of the read bandwidths measured right before and after"
               " that depth's steps; prefill ="
               " multiply-adds/s / the peak of the instruction used (f32 FMA for bf16, int8 dot for int8/int4) measured right"
               " before the row's prefills. kernel/read = time of a plain read of all int8/int4 matrices / time of the matmul kernels over them"
               " for one token. limit = weights in the format + KV cache + the assistant's matrices (int8/int4) + 300 MB.\n");
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "gemma4_bench_model: error: {}\n", e.what());
    return 1;
  }
}

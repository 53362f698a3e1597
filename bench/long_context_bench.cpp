// Long context and the KV cache's formats (ops/kv_cache.hpp):
//   gemma4_bench_long_context [--kv f32,bf16,int8] [--depth N] [--contexts 4096,32768,131072]
//                             [--quality 512,4096,16384] [--steps N] [--weights int4] [--threads N] MODEL
// MODEL is an E2B or E4B directory: a packed model (what a device runs), or a checkpoint
// converted at load to --weights. It prints, for each KV format:
//   quality  KL and top-1 agreement against the f32 cache on tiny-e2b and tiny-e4b
//            (trained-like synthetic weights) and on the trained toy pair (its held-out
//            text repeated), over each --quality length; the toy assistant's acceptance
//            rate reading the target's cache in that format;
//   memory   the KV cache's bytes and the peak resident memory of a session of each
//            --contexts size decoding 8 tokens, beside llama.cpp's f16 cache for the
//            same model computed from its layout;
//   prefill  tok/s of prompts of 512, 4096, 16384 and 32768 tokens (those up to --depth),
//            and at --depth the share of a 64-token chunk's time that attention takes;
//   restore  the time a 4096-token prompt takes to restore from a prompt cache file
//            (model/prompt_cache.hpp, in the page cache) against its prefill;
//   decode   tok/s at --depth, the formats' steps alternating, and bytes read per token
//            (weights and cache) * tok/s / the read bandwidth measured before and after.

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "bench_util.hpp"
#include "gemma4/model/drafter.hpp"
#include "gemma4/model/generate.hpp"
#include "gemma4/model/prompt_cache.hpp"
#include "gemma4/testing/logit_agreement.hpp"
#include "gemma4/weights/synthetic_checkpoint.hpp"
#include "gemma4/testing/toy_heldout.hpp"
#include "gemma4/tiny.hpp"
#include "gemma4/tokenizer/tokenizer.hpp"
#include "gemma4/variants.hpp"
#include "machine_limits.hpp"

namespace {

using namespace gemma4;
using bench::median;
using bench::random_tokens;
using bench::split;
using bench::seconds_of;

// Bytes of keys and values a decode step at `depth` reads: every layer's visible
// positions, a KV-shared layer reading its donor's again.
template <Variant V>
double kv_bytes_read(KvFormat format, int depth) {
  constexpr const ModelConfig& c = V::config;
  const double scales = format == KvFormat::kInt8 ? 2 * sizeof(float) : 0;
  double bytes = 0;
  for (const LayerFacts& f : kLayers<V>) {
    const int seen = f.kind.attention == AttentionType::kSliding ? std::min(depth + 1, c.sliding_window.value) : depth + 1;
    bytes += static_cast<double>(seen) * c.num_key_value_heads * (2.0 * f.head_dim * kv_element_bytes(format) + scales);
  }
  return bytes;
}

// llama.cpp's f16 cache at `context` (llama-kv-cache, default settings): K and V for the
// layers that own a cache only; a sliding layer holds its window plus one ubatch (512)
// rounded up to 256 positions, a full layer the whole context.
template <Variant V>
double llama_cpp_f16_bytes(int context) {
  constexpr const ModelConfig& c = V::config;
  const int swa = std::min(context, (c.sliding_window + 512 + 255) / 256 * 256);
  double bytes = 0;
  for (const LayerFacts& f : kLayers<V>) {
    if (f.kind.kv_shared) continue;
    const int positions = f.kind.attention == AttentionType::kSliding ? swa : context;
    bytes += static_cast<double>(positions) * c.num_key_value_heads * f.head_dim * 2 * 2;
  }
  return bytes;
}

// KL and top-1 of each format against f32 over `tokens`.
template <Variant V>
void quality(const char* name, const Weights<V>& weights, std::span<const int> tokens, std::span<const KvFormat> formats) {
  const auto logits = [&](KvFormat kv) {
    Session<V> session(weights, {.max_context = static_cast<int>(tokens.size()), .kv_format = kv});
    std::vector<float> out(tokens.size() * V::config.vocab_size);
    session.forward(tokens, Logits::kAll, out);
    return out;
  };
  const std::vector<float> reference = logits(KvFormat::kF32);
  for (KvFormat f : formats) {
    if (f == KvFormat::kF32) continue;
    const LogitAgreement a = compare_logits(reference, logits(f), V::config.vocab_size);
    fmt::print("  quality {:<8} {:>6} positions, {:<4} KV vs f32: top-1 {:7.3f}% | mean KL {:.2e} nats | top-1 moved at leads <= {:.3f}"
               " (median lead {:.3f})\n",
               name, tokens.size(), kv_format_name(f), 100 * a.top1, a.mean_kl, a.largest_flipped_lead, a.median_lead);
  }
}

// The toy assistant's greedy acceptance over the held-out prompts, drafting from the
// target's cache in each format.
void toy_acceptance(const std::filesystem::path& toy, const ToyHeldout& heldout, std::span<const KvFormat> formats) {
  const Weights<TinyE2B> target(toy / "toy-e2b");
  const Assistant<TinyE2BAssistant> assistant(toy / "toy-e2b-assistant");
  const std::vector<int> stops = read_generation_config(toy / "toy-e2b").stop_ids;
  for (KvFormat f : formats) {
    GenerationStats total;
    for (const std::vector<int>& prompt : heldout.prompts) {
      Session<TinyE2B> session(target, {.max_context = 512, .kv_format = f});
      Drafter<TinyE2BAssistant> drafter(assistant, session);
      const GenerationResult r = Generator<TinyE2B>(session, {.temperature = 0.0f}, stops).generate(prompt, 256, drafter, [](int) { return true; });
      total.drafted += r.stats.drafted;
      total.accepted += r.stats.accepted;
    }
    fmt::print("  toy assistant, {:<4} KV: {} of {} drafts accepted ({:.1f}%), greedy over {} held-out prompts\n", kv_format_name(f),
               total.accepted, total.drafted, 100.0 * total.acceptance_rate(), heldout.prompts.size());
  }
}

template <Variant V>
void memory(const Weights<V>& weights, std::span<const int> contexts, std::span<const KvFormat> formats, ThreadPool& pool) {
  std::vector<float> logits(V::config.vocab_size);
  for (const int context : contexts) {
    for (KvFormat f : formats) {
      bench::reset_peak_resident();
      double cache = 0;
      {
        Session<V> session(weights, {.max_context = context, .kv_format = f, .pool = &pool});
        for (int t = 0; t < 8; ++t) {
          const int token = 2 + t * 7919 % V::config.vocab_size;
          session.forward(std::span(&token, 1), Logits::kLast, logits);
        }
        cache = static_cast<double>(session.kv_cache_bytes());
      }
      fmt::print("  memory {} context {:>6}, {:<4} KV: cache {:6.3f} GB | peak resident {:6.3f} GB | llama.cpp f16 cache {:6.3f} GB\n", V::name,
                 context, kv_format_name(f), cache / 1e9, bench::status_bytes("VmHWM") / 1e9, llama_cpp_f16_bytes<V>(context) / 1e9);
    }
  }
}

// Saves the session (4096 tokens, prefilled in `prefill_s`) and restores it into a fresh
// session of the same options, timing the restores.
template <Variant V>
void restore_cost(const Session<V>& session, double prefill_s) {
  const std::filesystem::path file = std::filesystem::temp_directory_path() / fmt::format("gemma4-bench-{}.cache", ::getpid());
  save_prompt_cache(session, file);
  Session<V> restored(session.weights(), session.options());
  std::vector<double> seconds;
  for (int r = 0; r < 3; ++r) seconds.push_back(seconds_of([&] { restore_prompt_cache(restored, file); }));
  fmt::print("  restore {} {:<4} KV: {} tokens from a {:.1f} MB prompt cache in {:.3f} s, {:.1f}% of their prefill ({:.2f} s)\n", V::name,
             kv_format_name(session.options().kv_format), session.position(), static_cast<double>(std::filesystem::file_size(file)) / 1e6,
             median(seconds), 100 * median(seconds) / prefill_s, prefill_s);
  std::filesystem::remove(file);
}

template <Variant V>
void prefill_and_decode(const Weights<V>& weights, int depth, int steps, std::span<const KvFormat> formats, ThreadPool& pool) {
  constexpr std::size_t kVocab = V::config.vocab_size;
  constexpr int kChunk = 64;
  const std::vector<int> tokens = random_tokens(static_cast<std::size_t>(depth + kChunk + steps), V::config.vocab_size, 7);
  const std::span<const int> all(tokens);
  std::vector<float> logits(kVocab);
  std::vector<Session<V>> sessions;
  sessions.reserve(formats.size());
  for (KvFormat f : formats) {
    Session<V>& session = sessions.emplace_back(weights, SessionOptions{.max_context = depth + kChunk + steps, .prefill_chunk = kChunk, .kv_format = f, .pool = &pool});
    // Prompts of these lengths: tok/s from the start to each.
    std::vector<std::string> rates;
    double elapsed = 0;
    for (int done = 0; done < depth;) {
      const int n = std::min(512, depth - done);
      elapsed += seconds_of([&] { session.forward(all.subspan(static_cast<std::size_t>(done), static_cast<std::size_t>(n)), Logits::kLast, logits); });
      done += n;
      if (done == 512 || done == 4096 || done == 16384 || done == 32768 || done == depth) rates.push_back(fmt::format("{} tokens {:.1f} tok/s", done, done / elapsed));
      if (done == 4096) restore_cost(session, elapsed);
    }
    // A chunk at depth against one at depth 0: what attention over the cache adds.
    Session<V> shallow(weights, {.max_context = kChunk, .prefill_chunk = kChunk, .kv_format = f, .pool = &pool});
    std::vector<double> deep_s, shallow_s;
    for (int r = 0; r < 3; ++r) {
      deep_s.push_back(seconds_of([&] { session.forward(all.subspan(static_cast<std::size_t>(depth), kChunk), Logits::kLast, logits); }));
      session.rewind(depth);
      shallow_s.push_back(seconds_of([&] { shallow.forward(all.first(kChunk), Logits::kLast, logits); }));
      shallow.reset();
    }
    fmt::print("  prefill {} {:<4} KV: {} | a {}-token chunk at depth {} takes {:.3f} s, at depth 0 {:.3f} s: attention over the cache {:.0f}%\n",
               V::name, kv_format_name(f), fmt::join(rates, ", "), kChunk, depth, median(deep_s), median(shallow_s),
               100 * (1 - median(shallow_s) / median(deep_s)));
  }
  // Decode steps at `depth`, the formats alternating (each rewound after its step).
  const double before = bench::read_bandwidth(pool, 3);
  std::vector<std::vector<double>> step_s(formats.size());
  for (int s = 0; s < steps; ++s) {
    for (std::size_t i = 0; i < formats.size(); ++i) {
      step_s[i].push_back(seconds_of([&] { sessions[i].forward(all.subspan(static_cast<std::size_t>(depth + s), 1), Logits::kLast, logits); }));
      sessions[i].rewind(depth);
    }
  }
  const double after = bench::read_bandwidth(pool, 3);
  const double bandwidth = (before + after) / 2, weight_bytes = static_cast<double>(weights.report().bytes_per_token);
  const double f32_rate = formats.front() == KvFormat::kF32 ? 1 / median(step_s.front()) : 0;
  for (std::size_t i = 0; i < formats.size(); ++i) {
    const double rate = 1 / median(step_s[i]), cache = kv_bytes_read<V>(formats[i], depth);
    fmt::print("  decode {} at depth {}, {:<4} KV: {:.2f} tok/s{} | reads {:.3f} GB weights + {:.3f} GB cache per token: {:.2f} of the read bandwidth"
               " ({:.1f}/{:.1f} GB/s before/after)\n",
               V::name, depth, kv_format_name(formats[i]), rate, f32_rate > 0 ? fmt::format(" = {:.2f}x f32 KV", rate / f32_rate) : "",
               weight_bytes / 1e9, cache / 1e9, (weight_bytes + cache) * rate / bandwidth, before / 1e9, after / 1e9);
  }
}

std::vector<int> integers(const std::string& s) {
  std::vector<int> out;
  for (const std::string& part : split(s)) {
    if (!part.empty()) out.push_back(std::stoi(part));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model, kv = "f32,bf16,int8", contexts = "4096,32768,131072", lengths = "512,4096,16384", weights_format = "int4";
  std::string toy = gemma4::bench::source_dir() + "/examples/data", heldout_file = gemma4::bench::source_dir() + "/tests/data/toy-heldout.txt";
  int depth = 32768, steps = 9, threads = 0;
  CLI::App app("gemma4_bench_long_context: the KV cache's formats at long context, against the machine's measured bandwidth");
  app.add_option("--kv", kv, "KV formats, f32 first (the others are compared with it)")->capture_default_str();
  app.add_option("--depth", depth, "positions prefilled before the decode steps")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  app.add_option("--contexts", contexts, "session sizes whose memory is measured")->capture_default_str();
  app.add_option("--quality", lengths, "positions the quality is measured over (0: skip)")->capture_default_str();
  app.add_option("--steps", steps, "decode steps per format")->check(CLI::Range(1, 10000))->capture_default_str();
  app.add_option("--weights", weights_format, "format a checkpoint is converted to at load (a packed model runs as packed)")->capture_default_str();
  app.add_option("--threads", threads, "threads, 0 = all usable CPUs")->check(CLI::Range(0, 1024))->capture_default_str();
  app.add_option("--toy", toy, "where the trained toy pair is")->capture_default_str();
  app.add_option("MODEL", model, "an E2B or E4B model directory")->required();
  CLI11_PARSE(app, argc, argv);
  try {
    std::vector<KvFormat> formats;
    for (const std::string& name : split(kv)) {
      const auto f = kv_format_from_name(name);
      if (!f) fail(ErrorKind::kInvalidArgument, "unknown KV format '{}': expected f32, bf16 or int8", name);
      formats.push_back(*f);
    }
    if (formats.empty() || formats.front() != KvFormat::kF32) fail(ErrorKind::kInvalidArgument, "--kv must start with f32, the reference");
    ThreadPool pool(threads);

    for (const int n : integers(lengths)) {
      if (n <= 0) continue;
      for (const auto& [name, config, seed] : {std::tuple{"tiny-e2b", TinyE2B::config, 3u}, std::tuple{"tiny-e4b", TinyE4B::config, 3u}}) {
        const std::filesystem::path dir = std::filesystem::temp_directory_path() / fmt::format("gemma4-kv-bench-{}", name);
        if (!std::filesystem::exists(dir / "config.json")) write_synthetic_checkpoint(config, dir, {.dtype = DType::kF32, .seed = seed, .trained_like = true});
        CompiledVariants::with_matching(read_model_config(dir), [&]<typename V>() {
          quality(name, Weights<V>(dir), random_tokens(static_cast<std::size_t>(n), V::config.vocab_size, 5), formats);
        });
      }
      const ToyHeldout heldout = read_toy_heldout(heldout_file, Tokenizer::from_file(std::filesystem::path(toy) / "toy-e2b/tokenizer.json"));
      std::vector<int> repeated;
      while (repeated.size() < static_cast<std::size_t>(n)) repeated.insert(repeated.end(), heldout.tokens.begin(), heldout.tokens.end());
      repeated.resize(static_cast<std::size_t>(n));
      quality("toy-e2b", Weights<TinyE2B>(std::filesystem::path(toy) / "toy-e2b"), repeated, formats);
      if (n == integers(lengths).front()) toy_acceptance(toy, heldout, formats);
    }

    const auto weight_format = parse_weight_format(weights_format);
    if (!weight_format) fail(ErrorKind::kInvalidArgument, "unknown weight format '{}'", weights_format);
    const std::optional<PackedModelInfo> packed = packed_model_info(Checkpoint(model));
    CompiledVariants::with_matching(read_model_config(model), [&]<typename V>() {
      if constexpr (V::config.hidden_size < 1024) {
        fail(ErrorKind::kInvalidArgument, "{} is a tiny model: give a full-size E2B or E4B", model);
      } else {
        const Weights<V> weights(model, {.format = packed ? std::nullopt : weight_format, .pool = &pool});
        fmt::print("{} ({} weights{}), {} threads\n", model, weight_format_name(weights.report().format), packed ? ", packed" : "", pool.size());
        memory(weights, integers(contexts), formats, pool);
        prefill_and_decode(weights, depth, steps, formats, pool);
      }
    });
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "gemma4_bench_long_context: error: {}\n", e.what());
    return 1;
  }
}

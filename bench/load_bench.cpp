// Load time and resident memory of a full-size checkpoint, and of its packed models.
//   gemma4_bench_load --variant e2b|e4b|tiny-e2b|tiny-e4b [--runs N] DIR
// Writes a synthetic bf16 checkpoint into DIR first if DIR holds none, and its packed
// int4 and int8 models into DIR-int4 and DIR-int8 (weights/convert.hpp). Fails (exit 1)
// when loading the checkpoint, as stored or converted to int4, makes more memory resident
// than the weights a token reads plus a small margin (the 4.7 GB E2B PLE table and the
// converted matrices' sources must stay on disk), when
// a packed int4 model is larger than its budget (E2B 3.0 GB, E4B 4.8 GB), or when
// decoding from a packed model holds more than its matrices + KV cache + 300 MB.

#include <algorithm>
#include <cstdint>
#include <chrono>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "bench_util.hpp"
#include "gemma4/variants.hpp"
#include "gemma4/weights/synthetic_checkpoint.hpp"

namespace {

constexpr double kMarginBytes = 256e6;
constexpr double kDecodeMarginBytes = 300e6;

// Bytes of the files of `dir`.
double directory_bytes(const std::filesystem::path& dir) {
  double bytes = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) bytes += static_cast<double>(entry.file_size());
  return bytes;
}

// Converts `source` into `out` when out holds no model yet; then prints its size, load
// time and peak resident memory while decoding, each against its limit.
template <gemma4::Variant V>
bool bench_packed(const std::filesystem::path& source, const std::filesystem::path& out, gemma4::WeightFormat format, int runs) {
  using namespace gemma4;
  if (!std::filesystem::exists(out / "model.safetensors")) {
    double anonymous = 0;  // the converter's own memory, the mapped source apart
    const double seconds = bench::seconds_of([&] {
      convert_checkpoint<V>(source, out, {.format = format, .on_progress = [&](std::size_t, std::size_t) {
                                            anonymous = std::max(anonymous, bench::status_bytes("RssAnon"));
                                          }});
    });
    fmt::print("convert {} {}: {:.1f} s, peak anonymous memory {:.2f} GB\n", V::name, weight_format_name(format), seconds, anonymous / 1e9);
  }
  std::vector<double> seconds;
  for (int run = 0; run < runs; ++run) seconds.push_back(bench::seconds_of([&] { const Weights<V> w(out); }));

  // Decode tokens spread over the vocabulary: each looks up new embedding and PLE rows.
  const double before = bench::status_bytes("VmRSS");
  bench::reset_peak_resident();
  const Weights<V> weights(out);
  const double after_load = bench::status_bytes("VmRSS") - before;
  constexpr int kTokens = 96;
  Session<V> session(weights, {.max_context = kTokens});
  std::vector<float> logits(V::config.vocab_size);
  for (int t = 0; t < kTokens; ++t) {
    const int token = static_cast<int>((2 + std::int64_t{t} * 7919) % V::config.vocab_size);
    session.forward(std::span(&token, 1), Logits::kLast, logits);
  }
  const double peak = bench::status_bytes("VmHWM") - before;
  const double matrices = static_cast<double>(weights.report().quantized_bytes), kv = static_cast<double>(session.kv_cache_bytes());
  const double limit = matrices + kv + kDecodeMarginBytes;
  const double size = directory_bytes(out);
  const bool int4 = format == WeightFormat::kInt4;
  const double size_limit = !int4 ? 0 : V::name == std::string_view("e2b") ? 3.0e9 : V::name == std::string_view("e4b") ? 4.8e9 : 0;
  const bool ok = peak <= limit && (size_limit == 0 || size <= size_limit);
  fmt::print("packed {} {}: directory {:.2f} GB{}{} | load median of {}: {:.2f} s | resident after load {:.2f} GB, PLE table {:.2f} GB"
             " on disk | decoding {} tokens: peak resident {:.2f} GB, limit {:.2f} GB (matrices {:.2f} + KV cache {:.2f} + 0.30) | {}\n",
             V::name, weight_format_name(format), size / 1e9, size_limit > 0 ? fmt::format(" (limit {:.2f} GB)", size_limit / 1e9) : "",
             int4 && V::name == std::string_view("e2b") ? ", llama.cpp Q4_0 3.33 GB" : "", runs, bench::median(seconds), after_load / 1e9,
             weights.report().ple_table_bytes / 1e9, kTokens, peak / 1e9, limit / 1e9, matrices / 1e9, kv / 1e9, ok ? "OK" : "FAIL");
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  std::string variant, dir;
  int runs = 3;
  CLI::App app("gemma4_bench_load: load time and resident memory of a checkpoint, synthesized into DIR when missing");
  const auto& names = gemma4::CompiledVariants::names;
  app.add_option("--variant", variant, "the model")->required()->check(CLI::IsMember(std::vector<std::string>(names.begin(), names.end())));
  app.add_option("--runs", runs, "loads to take the median of")->check(CLI::Range(1, 1000))->capture_default_str();
  app.add_option("DIR", dir, "the checkpoint directory")->required();
  CLI11_PARSE(app, argc, argv);
  try {
    if (!std::filesystem::exists(std::filesystem::path(dir) / "config.json")) {
      const auto start = std::chrono::steady_clock::now();
      gemma4::write_synthetic_checkpoint(gemma4::CompiledVariants::config(variant), dir, {.seed = 1, .shards = 2});
      const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
      fmt::print("synthesized {} in {:.1f} s\n", variant, took.count());
    }
    bool ok = true;
    gemma4::CompiledVariants::with_matching(gemma4::read_model_config(dir), [&]<typename V>() {
      // As stored (bf16) and converted to int4 at load: what stays resident is the weights
      // a token reads, never the PLE table nor the converted matrices' sources.
      for (const std::optional<gemma4::WeightFormat> format : {std::optional<gemma4::WeightFormat>(), std::optional(gemma4::WeightFormat::kInt4)}) {
        std::vector<double> seconds, resident;
        gemma4::LoadReport report;
        for (int run = 0; run < runs; ++run) {
          const double before = gemma4::bench::status_bytes("VmRSS");
          const auto start = std::chrono::steady_clock::now();
          const gemma4::Weights<V> weights(dir, {.format = format});
          const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
          seconds.push_back(took.count());
          resident.push_back(gemma4::bench::status_bytes("VmRSS") - before);
          report = weights.report();
        }
        const double kept = static_cast<double>(report.bytes_per_token);
        const double limit = kept + kMarginBytes;
        const double rss = gemma4::bench::median(resident);
        ok = rss <= limit && ok;
        fmt::print("load {:<9} {:<4} median of {}: {:6.2f} s | resident after load {:6.2f} GB | weights a token reads {:6.2f} GB"
                   " | PLE table {:5.2f} GB on disk | limit {:6.2f} GB | {}\n",
                   V::name, gemma4::weight_format_name(report.format), runs, gemma4::bench::median(seconds), rss / 1e9, kept / 1e9,
                   report.ple_table_bytes / 1e9, limit / 1e9, rss <= limit ? "OK" : "FAIL: the PLE table or the checkpoint's pages stayed in memory");
      }
      for (const gemma4::WeightFormat format : {gemma4::WeightFormat::kInt4, gemma4::WeightFormat::kInt8}) {
        const std::filesystem::path out = dir + "-" + std::string(gemma4::weight_format_name(format));
        ok = bench_packed<V>(dir, out, format, runs) && ok;
      }
    });
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "gemma4_bench_load: error: {}\n", e.what());
    return 1;
  }
}

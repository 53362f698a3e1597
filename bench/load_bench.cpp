// Load time and resident memory of a full-size checkpoint.
//   gemma4_bench_load --variant e2b|e4b|tiny-e2b|tiny-e4b [--runs N] DIR
// Writes a synthetic bf16 checkpoint into DIR first if DIR holds none. Fails (exit 1)
// when loading makes more memory resident than the weights other than the PLE table
// plus a small margin: the 4.7 GB (E2B) PLE table must stay on disk.

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "bench_util.hpp"
#include "gemma4/variants.hpp"
#include "gemma4/testing/synthetic.hpp"

namespace {

constexpr double kMarginBytes = 256e6;

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
      std::vector<double> seconds, resident;
      gemma4::LoadReport report;
      for (int run = 0; run < runs; ++run) {
        const double before = gemma4::bench::status_bytes("VmRSS");
        const auto start = std::chrono::steady_clock::now();
        const gemma4::Weights<V> weights(dir);
        const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
        seconds.push_back(took.count());
        resident.push_back(gemma4::bench::status_bytes("VmRSS") - before);
        report = weights.report();
      }
      const double other = static_cast<double>(report.weight_bytes - report.ple_table_bytes);
      const double limit = other + kMarginBytes;
      const double rss = gemma4::bench::median(resident);
      ok = rss <= limit;
      fmt::print("load {:<9} median of {}: {:6.2f} s | resident after load {:6.2f} GB | weights without PLE {:6.2f} GB"
                 " | PLE table {:5.2f} GB on disk | limit {:6.2f} GB | {}\n",
                 V::name, runs, gemma4::bench::median(seconds), rss / 1e9, other / 1e9, report.ple_table_bytes / 1e9, limit / 1e9,
                 ok ? "OK" : "FAIL: the PLE table (or a copy) was brought into memory");
    });
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "gemma4_bench_load: error: {}\n", e.what());
    return 1;
  }
}

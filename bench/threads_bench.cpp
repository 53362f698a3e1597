// Decode speed under a competing load: does the default thread count hold up when other
// processes want the cores too?
//   gemma4_bench_threads [--loads 0,1,2,3] [--runs N] [--tokens N] [MODEL_DIR]
// For each load it starts that many busy processes (each one spins a core), then decodes
// --tokens tokens with one thread, with the default pool (one thread per usable core)
// and with one thread per usable CPU, alternating within each run, and prints median
// tok/s and the default's ratio to one thread in the same load. MODEL_DIR defaults to the
// trained toy model (examples/data/toy-e2b), whose tiny matrices make a decode step
// hundreds of short parallel loops: the case where a thread the scheduler has not run
// costs the most.

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "bench_util.hpp"
#include "gemma4/app/model.hpp"
#include "gemma4/model/session.hpp"
#include "gemma4/variants.hpp"

extern char** environ;

namespace {

using namespace gemma4;

// `count` processes that each spin one core until destroyed.
class BusyProcesses {
 public:
  explicit BusyProcesses(int count) {
    for (int i = 0; i < count; ++i) {
      const char* argv[] = {"sh", "-c", "while :; do :; done", nullptr};
      pid_t pid = 0;
      if (::posix_spawnp(&pid, "sh", nullptr, nullptr, const_cast<char**>(argv), environ) != 0) {
        fail(ErrorKind::kIo, "cannot start a busy process (sh)");
      }
      pids_.push_back(pid);
    }
  }
  ~BusyProcesses() {
    for (pid_t pid : pids_) ::kill(pid, SIGKILL);
    for (pid_t pid : pids_) ::waitpid(pid, nullptr, 0);
  }
  BusyProcesses(const BusyProcesses&) = delete;
  BusyProcesses& operator=(const BusyProcesses&) = delete;

 private:
  std::vector<pid_t> pids_;
};

// Decode tokens/s of `tokens` single-token passes on a fresh session.
template <Variant V>
double decode_rate(const Weights<V>& weights, ThreadPool& pool, int tokens) {
  Session<V> session(weights, {.max_context = tokens + 1, .pool = &pool});
  std::vector<float> logits(static_cast<std::size_t>(V::config.vocab_size));
  const std::vector<int> ids = bench::random_tokens(static_cast<std::size_t>(tokens), V::config.vocab_size, 7);
  const double seconds = bench::seconds_of([&] {
    for (const int id : ids) session.forward(std::span(&id, 1), Logits::kLast, logits);
  });
  return tokens / seconds;
}

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app{"decode speed of the default thread count under a competing load"};
  std::filesystem::path model = std::filesystem::path(gemma4::bench::source_dir()) / "examples/data/toy-e2b";
  std::string loads = "0,1,2,3";
  int runs = 5, tokens = 200;
  app.add_option("model", model, "model directory")->check(CLI::ExistingDirectory)->capture_default_str();
  app.add_option("--loads", loads, "numbers of busy processes to run beside it")->capture_default_str();
  app.add_option("--runs", runs, "runs per setting (medians are printed)")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--tokens", tokens, "tokens decoded per run")->check(CLI::PositiveNumber)->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  CompiledVariants::with_matching(read_model_config(model), [&]<Variant V>() {
    // As `gemma4 run` loads it: a packed model as packed, a checkpoint converted to int8.
    const bool packed = packed_model_info(Checkpoint(model)).has_value();
    const Model<V> loaded(model, {.format = packed ? std::nullopt : std::optional(WeightFormat::kInt8)});
    ThreadPool one(1), per_cpu(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    ThreadPool& by_default = default_pool();
    fmt::print("{} ({}, {}), {} tokens per run, median of {} runs; default pool {} threads, {} CPUs\n\n", model.string(), V::name,
               weight_format_name(loaded.weights.report().format), tokens, runs, by_default.size(), per_cpu.size());
    fmt::print("| busy processes | 1 thread tok/s | default tok/s | one per CPU tok/s | default / 1 thread |\n");
    fmt::print("|---|---|---|---|---|\n");
    for (const std::string& load : bench::split(loads)) {
      const BusyProcesses busy(std::stoi(load));
      std::vector<double> single, standard, every_cpu;
      for (int run = 0; run < runs; ++run) {  // alternating, so drift hits all three alike
        single.push_back(decode_rate(loaded.weights, one, tokens));
        standard.push_back(decode_rate(loaded.weights, by_default, tokens));
        every_cpu.push_back(decode_rate(loaded.weights, per_cpu, tokens));
      }
      const double a = bench::median(single), b = bench::median(standard), c = bench::median(every_cpu);
      fmt::print("| {} | {:.1f} | {:.1f} | {:.1f} | {:.2f} |\n", load, a, b, c, b / a);
    }
  });
} catch (const std::exception& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}

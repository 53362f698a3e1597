// The gemma4 command-line tool.
//   gemma4 synth --variant tiny-e2b|tiny-e4b|e2b|e4b --dtype bf16|f16|f32 --seed N [--shards K]
//                [--text-only] [--no-shared-kv] OUT_DIR
//   gemma4 info --model DIR      load and validate a checkpoint, print its config and tensors
//   gemma4 logits --model DIR --tokens 2,45,17 [--out FILE] [--decode]
//                                logits of every position: little-endian float32 [T, vocab]
//                                to FILE, or each position's argmax; --decode runs token by token

#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "gemma4/variants.hpp"
#include "gemma4/weights/synthetic.hpp"

namespace {

using gemma4::fail;

// "--key value" options and positional arguments; flags listed in `switches` take no value.
struct Args {
  std::map<std::string, std::string> options;
  std::vector<std::string> positional;

  Args(int argc, char** argv, int first, const std::vector<std::string>& switches) {
    for (int i = first; i < argc; ++i) {
      const std::string arg = argv[i];
      if (!arg.starts_with("--")) {
        positional.push_back(arg);
      } else if (std::find(switches.begin(), switches.end(), arg) != switches.end()) {
        options.insert_or_assign(arg, std::string(1, '1'));
      } else if (i + 1 < argc) {
        options[arg] = argv[++i];
      } else {
        fail("option {} needs a value", arg);
      }
    }
  }

  std::string get(const std::string& key, const std::string& fallback = {}) const {
    const auto it = options.find(key);
    if (it != options.end()) return it->second;
    if (fallback.empty()) fail("missing {}", key);
    return fallback;
  }
  bool has(const std::string& key) const { return options.contains(key); }

  void allow_only(const std::vector<std::string>& known) const {
    for (const auto& [key, value] : options) {
      if (std::find(known.begin(), known.end(), key) == known.end()) fail("unknown option {}", key);
    }
  }
};

long parse_integer(const std::string& text, const char* what) {
  std::size_t used = 0;
  long value = 0;
  try {
    value = std::stol(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty()) fail("{} must be an integer, got '{}'", what, text);
  return value;
}

gemma4::DType parse_dtype(const std::string& name) {
  if (name == "bf16") return gemma4::DType::kBF16;
  if (name == "f16") return gemma4::DType::kF16;
  if (name == "f32") return gemma4::DType::kF32;
  fail("--dtype must be bf16, f16 or f32, got '{}'", name);
}

int synth(const Args& args) {
  args.allow_only({"--variant", "--dtype", "--seed", "--shards", "--text-only", "--no-shared-kv"});
  if (args.positional.size() != 1) fail("synth needs exactly one output directory");
  const auto& config = gemma4::CompiledVariants::config(args.get("--variant"));
  gemma4::SynthOptions options;
  options.dtype = parse_dtype(args.get("--dtype", "bf16"));
  options.seed = static_cast<std::uint64_t>(parse_integer(args.get("--seed", "0"), "--seed"));
  options.shards = static_cast<int>(parse_integer(args.get("--shards", "1"), "--shards"));
  options.multimodal = !args.has("--text-only");
  options.shared_layer_kv = !args.has("--no-shared-kv");
  const auto start = std::chrono::steady_clock::now();
  gemma4::write_synthetic_checkpoint(config, args.positional[0], options);
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  fmt::print("wrote {} ({}) to {} in {:.1f} s\n", args.get("--variant"), args.get("--dtype", "bf16"), args.positional[0],
             took.count());
  return 0;
}

int info(const Args& args) {
  args.allow_only({"--model"});
  const std::filesystem::path dir = args.get("--model");
  const auto config_json = gemma4::read_model_config(dir);
  gemma4::CompiledVariants::with_matching(config_json, [&]<typename V>() {
    const auto start = std::chrono::steady_clock::now();
    const gemma4::Weights<V> weights(dir);
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    const auto& r = weights.report();
    fmt::print("variant {}\n{}", V::name, gemma4::format_config(V::config));
    fmt::print("SIMD target: {}\n", hwy::TargetName(HWY_STATIC_TARGET));
    fmt::print("checkpoint: prefix '{}', {} tensors used, {:.2f} GB of weights ({:.2f} GB PLE table left on disk)\n",
               r.prefix, r.tensors_used, r.weight_bytes / 1e9, r.ple_table_bytes / 1e9);
    fmt::print("skipped {} vision/audio/unused-KV tensors, copied {:.1f} MB, loaded in {:.2f} s\n", r.skipped.size(),
               r.copied_bytes / 1e6, took.count());
    for (const auto& name : r.unknown) fmt::print("warning: tensor '{}' is not part of the text model; ignored\n", name);
  });
  return 0;
}

std::vector<int> parse_tokens(const std::string& list) {
  std::vector<int> tokens;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t comma = std::min(list.find(',', start), list.size());
    const long id = parse_integer(list.substr(start, comma - start), "each --tokens entry");
    if (id < INT32_MIN || id > INT32_MAX) fail("token id {} is out of range", id);
    tokens.push_back(static_cast<int>(id));
    start = comma + 1;
  }
  return tokens;
}

int logits(const Args& args) {
  args.allow_only({"--model", "--tokens", "--out", "--decode"});
  static_assert(std::endian::native == std::endian::little, "gemma4: --out writes the host's float layout");
  const std::filesystem::path dir = args.get("--model");
  const std::vector<int> tokens = parse_tokens(args.get("--tokens"));
  const auto config_json = gemma4::read_model_config(dir);
  gemma4::CompiledVariants::with_matching(config_json, [&]<typename V>() {
    const gemma4::Weights<V> weights(dir);
    gemma4::Session<V> session(weights, {.max_context = static_cast<int>(tokens.size())});
    const std::size_t vocab = V::config.vocab_size;
    std::vector<float> out(tokens.size() * vocab);
    if (args.has("--decode")) {
      for (std::size_t t = 0; t < tokens.size(); ++t) {
        session.forward(std::span(tokens).subspan(t, 1), gemma4::Logits::kAll, std::span(out).subspan(t * vocab, vocab));
      }
    } else {
      session.forward(tokens, gemma4::Logits::kAll, out);
    }
    if (args.has("--out")) {
      const std::string path = args.get("--out");
      std::ofstream file(path, std::ios::binary);
      file.write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size() * sizeof(float)));
      if (!file) fail("cannot write {}", path);
      return;
    }
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      const auto row = std::span(out).subspan(t * vocab, vocab);
      const auto best = std::max_element(row.begin(), row.end());
      fmt::print("{}\t{}\t{}\t{:.6f}\n", t, tokens[t], best - row.begin(), *best);
    }
  });
  return 0;
}

void usage() {
  fmt::print(stderr,
             "usage:\n"
             "  gemma4 synth --variant tiny-e2b|tiny-e4b|e2b|e4b [--dtype bf16|f16|f32] [--seed N] [--shards K]\n"
             "               [--text-only] [--no-shared-kv] OUT_DIR\n"
             "  gemma4 info --model DIR\n"
             "  gemma4 logits --model DIR --tokens ID,ID,... [--out FILE] [--decode]\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage();
    return 2;
  }
  const std::string command = argv[1];
  try {
    if (command == "synth") return synth(Args(argc, argv, 2, {"--text-only", "--no-shared-kv"}));
    if (command == "info") return info(Args(argc, argv, 2, {}));
    if (command == "logits") return logits(Args(argc, argv, 2, {"--decode"}));
    usage();
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "gemma4 {}: error: {}\n", command, e.what());
    return 1;
  }
}

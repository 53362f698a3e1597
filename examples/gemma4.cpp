// The gemma4 command-line tool.
//   gemma4 run --model DIR (--prompt TEXT | --chat) [--max-tokens N] [--raw] [--system TEXT]
//              [--think] [--show-thoughts] [--max-context N] [--weights bf16|int8|int4]
//              [--converted FILE] [--threads N] [sampling options]
//                                generate text, streamed to stdout; a summary line on stderr
//   gemma4 convert --model DIR --weights int8|int4 [--threads N] OUT_FILE
//                                save the converted weights, for `run --converted OUT_FILE`
//   gemma4 tokenize --model DIR [--no-bos] [--no-special]   text on stdin, ids out
//   gemma4 detokenize --model DIR [--skip-special]          ids on stdin, text out
//   gemma4 synth --variant tiny-e2b|tiny-e4b|e2b|e4b --dtype bf16|f16|f32 --seed N [--shards K]
//                [--text-only] [--no-shared-kv] [--tokenizer TOKENIZER_JSON] OUT_DIR
//   gemma4 info --model DIR      load and validate a checkpoint, print its config and tensors
//   gemma4 logits --model DIR --tokens 2,45,17 [--out FILE] [--decode]
//                                logits of every position: little-endian float32 [T, vocab]
//                                to FILE, or each position's argmax; --decode runs token by token

#include <unistd.h>

#include <bit>
#include <chrono>
#include <iostream>
#include <iterator>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "gemma4/chat/conversation.hpp"
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

// The whole of `text` read by `convert` (std::stol, std::stof, ...), or an error naming `what`.
template <typename Convert>
auto parse_whole(const std::string& text, const char* what, const char* kind, Convert convert) {
  std::size_t used = 0;
  decltype(convert(text, &used)) value{};
  try {
    value = convert(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty()) fail("{} must be {}, got '{}'", what, kind, text);
  return value;
}

long parse_integer(const std::string& text, const char* what) {
  return parse_whole(text, what, "an integer", [](const std::string& t, std::size_t* used) { return std::stol(t, used); });
}

float parse_number(const std::string& text, const char* what) {
  return parse_whole(text, what, "a number", [](const std::string& t, std::size_t* used) { return std::stof(t, used); });
}

gemma4::DType parse_dtype(const std::string& name) {
  if (name == "bf16") return gemma4::DType::kBF16;
  if (name == "f16") return gemma4::DType::kF16;
  if (name == "f32") return gemma4::DType::kF32;
  fail("--dtype must be bf16, f16 or f32, got '{}'", name);
}

int synth(const Args& args) {
  args.allow_only({"--variant", "--dtype", "--seed", "--shards", "--text-only", "--no-shared-kv", "--tokenizer"});
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
  if (args.has("--tokenizer")) {
    const gemma4::Tokenizer tokenizer = gemma4::Tokenizer::from_file(args.get("--tokenizer"));  // refuse a bad file now
    if (tokenizer.piece_count() > config.vocab_size) {
      fail("{} has {} pieces, more than the {} vocabulary of {}", args.get("--tokenizer"), tokenizer.piece_count(),
           args.get("--variant"), config.vocab_size.value);
    }
    std::filesystem::copy_file(args.get("--tokenizer"), std::filesystem::path(args.positional[0]) / "tokenizer.json",
                               std::filesystem::copy_options::overwrite_existing);
  }
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
    fmt::print("SIMD target: {}, int8 dot product: {}\n", hwy::TargetName(HWY_STATIC_TARGET),
               gemma4::ops::kHaveVnni ? "AVX-512 VNNI" : "portable");
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

gemma4::WeightFormat weight_format(const Args& args) {
  const std::string name = args.get("--weights", "bf16");
  const auto format = gemma4::parse_weight_format(name);
  if (!format) fail("--weights must be bf16, int8 or int4, got '{}'", name);
  return *format;
}

int thread_count(const Args& args) {
  const int threads = static_cast<int>(parse_integer(args.get("--threads", "0"), "--threads"));
  if (threads < 0) fail("--threads must be 0 (all cores) or more, got {}", threads);
  return threads;
}

int convert(const Args& args) {
  args.allow_only({"--model", "--weights", "--threads"});
  if (args.positional.size() != 1) fail("convert needs exactly one output file");
  const std::filesystem::path dir = args.get("--model");
  const gemma4::WeightFormat format = weight_format(args);
  if (format == gemma4::WeightFormat::kBF16) fail("convert needs --weights int8 or int4 (bf16 is used as stored)");
  gemma4::CompiledVariants::with_matching(gemma4::read_model_config(dir), [&]<typename V>() {
    const auto start = std::chrono::steady_clock::now();
    const gemma4::Weights<V> weights(dir, {.format = format, .threads = thread_count(args), .prefault = false});
    weights.save_converted(args.positional[0]);
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    fmt::print("wrote {} ({} {}, {:.2f} GB) in {:.1f} s; use it with: gemma4 run --model {} --weights {} --converted {}\n",
               args.positional[0], V::name, gemma4::weight_format_name(format), weights.report().quantized_bytes / 1e9,
               took.count(), dir.string(), gemma4::weight_format_name(format), args.positional[0]);
  });
  return 0;
}

// ---- run: generation and chat ----

const std::vector<std::string> kSamplingOptions = {"--temperature", "--top-k", "--top-p", "--min-p",
                                                   "--repetition-penalty", "--seed", "--greedy"};

// generation_config.json's defaults, overridden by whatever the command line sets.
gemma4::GenerationConfig generation_config(const Args& args, const std::filesystem::path& dir) {
  gemma4::GenerationConfig config = gemma4::read_generation_config(dir);
  gemma4::SamplingOptions& s = config.sampling;
  if (args.has("--temperature")) s.temperature = parse_number(args.get("--temperature"), "--temperature");
  if (args.has("--top-k")) s.top_k = static_cast<int>(parse_integer(args.get("--top-k"), "--top-k"));
  if (args.has("--top-p")) s.top_p = parse_number(args.get("--top-p"), "--top-p");
  if (args.has("--min-p")) s.min_p = parse_number(args.get("--min-p"), "--min-p");
  if (args.has("--repetition-penalty")) s.repetition_penalty = parse_number(args.get("--repetition-penalty"), "--repetition-penalty");
  if (args.has("--seed")) s.seed = static_cast<std::uint64_t>(parse_integer(args.get("--seed"), "--seed"));
  if (args.has("--greedy")) s.temperature = 0.0f;
  s.validate();
  return config;
}

void print_stdout(std::string_view text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

// Decode speed comes with the weight bytes it streams per second, the figure to hold
// against the machine's memory bandwidth (gemma4_bench_model measures it).
void print_summary(const gemma4::GenerationResult& r, std::size_t weight_bytes_per_token) {
  const gemma4::GenerationStats& s = r.stats;
  fmt::print(stderr,
             "\n[{} prompt tokens | first token {:.2f} s | prefill {:.1f} tok/s | decode {:.1f} tok/s = {:.1f} GB/s of weights"
             " | {} tokens, {}]\n",
             s.prompt_tokens, s.first_token_seconds, s.prefill_tokens_per_second(), s.decode_tokens_per_second(),
             s.decode_tokens_per_second() * static_cast<double>(weight_bytes_per_token) / 1e9, s.generated_tokens,
             to_string(r.stop));
}

// Loads the weights with a progress line when stderr is a terminal.
template <typename V>
gemma4::Weights<V> load_weights(const std::filesystem::path& dir, gemma4::LoadOptions options) {
  const bool terminal = ::isatty(STDERR_FILENO) == 1;
  const auto start = std::chrono::steady_clock::now();
  if (terminal) {
    options.on_progress = [&, last = -1](std::size_t done, std::size_t total) mutable {
      const int percent = total == 0 ? 100 : static_cast<int>(100.0 * done / total);
      if (percent == last) return;
      last = percent;
      fmt::print(stderr, "\rloading {} ({}): {:3d}% of {:.2f} GB", dir.string(), V::name, percent, total / 1e9);
    };
  }
  gemma4::Weights<V> weights(dir, options);
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  if (terminal) {
    fmt::print(stderr, "\rloaded {} ({}, {} weights) in {:.1f} s{:20}\n", dir.string(), V::name,
               gemma4::weight_format_name(options.format), took.count(), "");
  }
  return weights;
}

template <typename V>
void chat_loop(const Args& args, gemma4::Session<V>& session, const gemma4::Tokenizer& tokenizer,
               const gemma4::GenerationConfig& generation, int max_tokens, std::size_t weight_bytes_per_token) {
  const bool show_thoughts = args.has("--show-thoughts");
  gemma4::Conversation<V> chat(session, tokenizer, generation,
                               {.system = args.has("--system") ? args.get("--system") : std::string(),
                                .thinking = args.has("--think"),
                                .max_new_tokens = max_tokens});
  const auto on_text = [&](std::string_view text, bool thought) {
    if (!thought) return print_stdout(text);
    if (show_thoughts) fmt::print(stderr, "{}", text);
  };
  if (args.has("--prompt")) {
    print_summary(chat.ask(args.get("--prompt"), on_text).generation, weight_bytes_per_token);
    return;
  }
  const bool terminal = ::isatty(STDIN_FILENO) == 1;
  if (terminal) fmt::print(stderr, "chat: an empty line is ignored, /reset starts over, /exit or Ctrl-D ends\n");
  for (std::string line;;) {
    if (terminal) fmt::print(stderr, "> ");
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line.empty()) continue;
    if (line == "/reset") {
      chat.restart();
      continue;
    }
    try {
      print_summary(chat.ask(line, on_text).generation, weight_bytes_per_token);
    } catch (const gemma4::Error& e) {  // a bad line (invalid UTF-8, too long) does not end the chat
      fmt::print(stderr, "error: {}\n", e.what());
    }
  }
}

int run(const Args& args) {
  std::vector<std::string> known = {"--model", "--prompt", "--chat", "--max-tokens", "--raw", "--system", "--think",
                                    "--show-thoughts", "--max-context", "--weights", "--converted", "--threads"};
  known.insert(known.end(), kSamplingOptions.begin(), kSamplingOptions.end());
  args.allow_only(known);
  if (args.has("--prompt") == args.has("--chat")) fail("give exactly one of --prompt TEXT and --chat");
  if (args.has("--raw") && args.has("--chat")) fail("--raw generates once from a plain prompt; it does not chat");
  const std::filesystem::path dir = args.get("--model");
  const int max_tokens = static_cast<int>(parse_integer(args.get("--max-tokens", "512"), "--max-tokens"));
  const int max_context = static_cast<int>(parse_integer(args.get("--max-context", "4096"), "--max-context"));
  const int threads = thread_count(args);
  const gemma4::LoadOptions load_options{
      .format = weight_format(args),
      .converted_file = args.has("--converted") ? std::filesystem::path(args.get("--converted")) : std::filesystem::path(),
      .threads = threads};
  const gemma4::GenerationConfig generation = generation_config(args, dir);
  const auto config_json = gemma4::read_model_config(dir);
  gemma4::CompiledVariants::with_matching(config_json, [&]<typename V>() {
    const gemma4::Tokenizer tokenizer = gemma4::load_tokenizer(dir);
    if (tokenizer.piece_count() > V::config.vocab_size) {
      fail("{}/tokenizer.json has {} pieces, more than the model's vocabulary of {}", dir.string(), tokenizer.piece_count(),
           V::config.vocab_size.value);
    }
    const gemma4::Weights<V> weights = load_weights<V>(dir, load_options);
    gemma4::Session<V> session(weights, {.max_context = std::min<int>(max_context, V::config.max_position_embeddings),
                                         .threads = threads});
    const std::size_t bytes_per_token = weights.report().bytes_per_token;
    if (!args.has("--raw")) return chat_loop(args, session, tokenizer, generation, max_tokens, bytes_per_token);

    // Exactly one <bos>, whether or not tokenizer.json's post-processor adds it (spec section 6).
    std::vector<int> prompt = {gemma4::kGemma4ChatTokens.bos};
    const std::vector<int> text = tokenizer.encode(args.get("--prompt"), {.add_bos = false});
    prompt.insert(prompt.end(), text.begin(), text.end());
    gemma4::Generator<V> generator(session, generation.sampling, generation.stop_ids);
    gemma4::StreamDecoder stream(tokenizer, {.skip_special = true});
    const auto result = generator.generate(prompt, max_tokens, [&](int id) {
      print_stdout(stream.push(id));
      return true;
    });
    print_stdout(stream.finish());
    print_summary(result, bytes_per_token);
  });
  return 0;
}

std::string read_stdin() { return {std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()}; }

int tokenize(const Args& args) {
  args.allow_only({"--model", "--no-bos", "--no-special"});
  const gemma4::Tokenizer tokenizer = gemma4::load_tokenizer(args.get("--model"));
  const std::vector<int> ids =
      tokenizer.encode(read_stdin(), {.add_bos = !args.has("--no-bos"), .match_special_tokens = !args.has("--no-special")});
  fmt::print("{}\n", fmt::join(ids, ","));
  return 0;
}

int detokenize(const Args& args) {
  args.allow_only({"--model", "--skip-special"});
  const gemma4::Tokenizer tokenizer = gemma4::load_tokenizer(args.get("--model"));
  std::string text = read_stdin();
  std::replace_if(text.begin(), text.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }, ',');
  std::vector<int> ids;
  for (std::size_t start = 0; start < text.size();) {
    const std::size_t end = std::min(text.find(',', start), text.size());
    if (end > start) {
      const long id = parse_integer(text.substr(start, end - start), "each id");
      if (id < INT32_MIN || id > INT32_MAX) fail("token id {} is out of range", id);
      ids.push_back(static_cast<int>(id));
    }
    start = end + 1;
  }
  print_stdout(tokenizer.decode(ids, {.skip_special = args.has("--skip-special")}));
  return 0;
}

void usage() {
  fmt::print(stderr,
             "usage:\n"
             "  gemma4 run --model DIR (--prompt TEXT | --chat) [--max-tokens N] [--raw] [--system TEXT]\n"
             "             [--think] [--show-thoughts] [--max-context N] [--weights bf16|int8|int4]\n"
             "             [--converted FILE] [--threads N]\n"
             "             [--temperature T] [--top-k K]\n"
             "             [--top-p P] [--min-p P] [--repetition-penalty R] [--seed S] [--greedy]\n"
             "  gemma4 convert --model DIR --weights int8|int4 [--threads N] OUT_FILE\n"
             "  gemma4 tokenize --model DIR [--no-bos] [--no-special] < text\n"
             "  gemma4 detokenize --model DIR [--skip-special] < ids\n"
             "  gemma4 synth --variant tiny-e2b|tiny-e4b|e2b|e4b [--dtype bf16|f16|f32] [--seed N] [--shards K]\n"
             "               [--text-only] [--no-shared-kv] [--tokenizer TOKENIZER_JSON] OUT_DIR\n"
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
    if (command == "run") return run(Args(argc, argv, 2, {"--chat", "--raw", "--think", "--show-thoughts", "--greedy"}));
    if (command == "convert") return convert(Args(argc, argv, 2, {}));
    if (command == "tokenize") return tokenize(Args(argc, argv, 2, {"--no-bos", "--no-special"}));
    if (command == "detokenize") return detokenize(Args(argc, argv, 2, {"--skip-special"}));
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

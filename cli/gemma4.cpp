// The gemma4 command-line tool; `gemma4 --help` and `gemma4 COMMAND --help` list the
// options (parsed with CLI11).
//   run        generate text, streamed to stdout; a summary line on stderr; or for a
//              file of prompts, a batch at a time, one JSON line each
//   convert    write a packed int8/int4 model directory: all a device needs
//   tokenize   text on stdin, comma-separated ids out
//   detokenize ids on stdin, text out
//   synth      write a synthetic checkpoint in the Hugging Face layout
//   info       load and validate a checkpoint, print its config and tensors
//   logits     logits of every position: little-endian float32 [T, vocab] to a file,
//              or each position's argmax
//   serve      the OpenAI API over HTTP (cli/server/)

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "gemma4/app/conversation.hpp"
#include "gemma4/grammar/gbnf.hpp"
#include "gemma4/grammar/json_schema.hpp"
#include "gemma4/model/batch_generator.hpp"
#include "gemma4/model/drafter.hpp"
#include "gemma4/model/prompt_cache.hpp"
#include "gemma4/variants.hpp"
#include "gemma4/weights/synthetic_checkpoint.hpp"
#include "line_reader.hpp"
#if GEMMA4_SERVER
#include "server.hpp"
#endif

namespace {

using gemma4::ErrorKind;
using gemma4::fail;

// Choices and ranges every command shares.
const std::map<std::string, gemma4::WeightFormat> kWeightFormats = {
    {"bf16", gemma4::WeightFormat::kBF16}, {"int8", gemma4::WeightFormat::kInt8}, {"int4", gemma4::WeightFormat::kInt4}};
const std::map<std::string, gemma4::DType> kDTypes = {
    {"bf16", gemma4::DType::kBF16}, {"f16", gemma4::DType::kF16}, {"f32", gemma4::DType::kF32}};
const std::map<std::string, gemma4::KvFormat> kKvFormats = {
    {"f32", gemma4::KvFormat::kF32}, {"bf16", gemma4::KvFormat::kBF16}, {"int8", gemma4::KvFormat::kInt8}};
constexpr int kMaxThreads = 1024;

template <typename Map>
std::vector<std::string> keys(const Map& map) {
  std::vector<std::string> out;
  for (const auto& [key, value] : map) out.push_back(key);
  return out;
}

// --kv: every command that runs the model takes it.
struct KvOption {
  std::string name{gemma4::kv_format_name(gemma4::kDefaultKvFormat)};

  void add_to(CLI::App& app) {
    app.add_option("--kv", name, "how the KV cache stores keys and values: f32, bf16 (half the bytes) or int8 (a quarter)")
        ->check(CLI::IsMember(keys(kKvFormats)))
        ->capture_default_str();
  }
  gemma4::KvFormat format() const { return kKvFormats.at(name); }
};

// --weights and --head of the commands that run a model: how a checkpoint is converted at
// load (a packed model runs as it was packed).
struct LoadFormatOption {
  std::string weights, head;

  void add_to(CLI::App& app) {
    app.add_option("--weights", weights, "format of a checkpoint's linear layers, converted at load (default int8; a packed model runs as packed)")
        ->check(CLI::IsMember(keys(kWeightFormats)));
    add_head_option(app, head);
  }
  static void add_head_option(CLI::App& app, std::string& head) {
    app.add_option("--head", head, "an int4 model's LM head (the tied embedding): int8 (default), or int4: up to a tenth faster decoding, less accurate")
        ->check(CLI::IsMember(std::vector<std::string>{"int8", "int4"}));
  }
  // Empty: unset.
  static std::optional<gemma4::WeightFormat> format_named(const std::string& name) {
    return name.empty() ? std::nullopt : std::optional(kWeightFormats.at(name));
  }
  std::optional<gemma4::WeightFormat> format() const { return format_named(weights); }
  std::optional<gemma4::WeightFormat> head_format() const { return format_named(head); }
};

// The whole of `text` as an integer, or an error naming `what`.
long long parse_integer(const std::string& text, const char* what) {
  std::size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty()) fail(ErrorKind::kInvalidArgument, "{} must be an integer, got '{}'", what, text);
  return value;
}

// A comma-separated list of token ids; with `lenient`, any run of commas and whitespace
// separates them.
std::vector<int> parse_ids(std::string text, const char* what, bool lenient = false) {
  if (lenient) std::replace_if(text.begin(), text.end(), [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }, ',');
  std::vector<int> ids;
  for (std::size_t start = 0; start <= text.size();) {
    const std::size_t end = std::min(text.find(',', start), text.size());
    if (lenient && end == start) {
      start = end + 1;
      continue;
    }
    const long long id = parse_integer(text.substr(start, end - start), what);
    if (id < std::numeric_limits<int>::min() || id > std::numeric_limits<int>::max()) fail(ErrorKind::kInvalidArgument, "token id {} is out of range", id);
    ids.push_back(static_cast<int>(id));
    start = end + 1;
  }
  return ids;
}

// --threads: 0 takes the process-wide pool (all usable CPUs), N a pool of its own.
struct Threads {
  int count = 0;
  std::unique_ptr<gemma4::ThreadPool> own;

  void add_to(CLI::App& app) {
    app.add_option("--threads", count, "threads to run on, 0 = all usable CPUs")->check(CLI::Range(0, kMaxThreads))->capture_default_str();
  }
  gemma4::ThreadPool& pool() {
    if (count == 0) return gemma4::default_pool();
    if (!own) own = std::make_unique<gemma4::ThreadPool>(count);
    return *own;
  }
};

// Whether what stdout got last leaves a line open: a reply that does not end its line
// gets a newline (end_reply_line), so the next reply or the shell's prompt starts a line.
bool g_stdout_line_open = false;

void print_stdout(std::string_view text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  if (!text.empty()) g_stdout_line_open = text.back() != '\n';
}

void end_reply_line() {
  if (g_stdout_line_open) print_stdout("\n");
}

// Ctrl-C in a chat cancels the reply being generated, not the process; at the prompt it
// says how to leave. The handler only sets flags and writes (async-signal-safe).
std::atomic<bool> g_interrupted{false}, g_generating{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void on_interrupt(int) {
  g_interrupted = true;
  if (!g_generating) {
    constexpr char kHint[] = "\n(/exit or Ctrl-D ends the chat)\n";
    [[maybe_unused]] const ssize_t written = ::write(STDERR_FILENO, kHint, sizeof kHint - 1);
  }
}

// Installs on_interrupt for SIGINT while it lives (SA_RESTART: reading stdin goes on).
class InterruptCancelsReply {
 public:
  InterruptCancelsReply() {
    struct sigaction action {};
    action.sa_handler = on_interrupt;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, &previous_);
  }
  ~InterruptCancelsReply() { ::sigaction(SIGINT, &previous_, nullptr); }
  InterruptCancelsReply(const InterruptCancelsReply&) = delete;
  InterruptCancelsReply& operator=(const InterruptCancelsReply&) = delete;

 private:
  struct sigaction previous_ {};
};

// A progress callback printing "what: N% of X GB" on one line of stderr.
std::function<void(std::size_t, std::size_t)> progress_line(std::string what) {
  return [what = std::move(what), last = -1](std::size_t done, std::size_t total) mutable {
    const int percent = total == 0 ? 100 : static_cast<int>(100.0 * done / total);
    if (percent == last) return;
    last = percent;
    fmt::print(stderr, "\r{}: {:3d}% of {:.2f} GB", what, percent, total / 1e9);
  };
}

std::string read_stdin() { return {std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()}; }

// Calls f.template operator()<V>() for the compiled variant that `dir`'s config.json describes.
template <typename F>
void with_model_variant(const std::filesystem::path& dir, F&& f) {
  gemma4::CompiledVariants::with_matching(gemma4::read_model_config(dir), std::forward<F>(f));
}

// ---- synth ----

struct SynthCommand {
  std::string variant, dtype = "bf16", tokenizer, out;
  std::uint64_t seed = 0;
  int shards = 1;
  bool text_only = false, no_shared_kv = false;

  void add_to(CLI::App& app) {
    std::vector<std::string> names(gemma4::CompiledVariants::names.begin(), gemma4::CompiledVariants::names.end());
    names.insert(names.end(), gemma4::CompiledAssistants::names.begin(), gemma4::CompiledAssistants::names.end());
    app.add_option("--variant", variant, "the model (or assistant) to write")->required()->check(CLI::IsMember(names));
    app.add_option("--dtype", dtype, "weight dtype")->check(CLI::IsMember(keys(kDTypes)))->capture_default_str();
    app.add_option("--seed", seed, "random seed of the weights")->capture_default_str();
    app.add_option("--shards", shards, "files to split the weights into")->check(CLI::Range(1, 1000))->capture_default_str();
    app.add_flag("--text-only", text_only, "a text-only Gemma4ForCausalLM save (prefix model.)");
    app.add_flag("--no-shared-kv", no_shared_kv, "leave out the unused k/v tensors of KV-shared layers");
    app.add_option("--tokenizer", tokenizer, "a tokenizer.json to copy into the directory")->check(CLI::ExistingFile);
    app.add_option("OUT_DIR", out, "where to write the checkpoint")->required();
  }

  // An assistant directory: config.json and model.safetensors, as published.
  bool write_assistant() const {
    bool written = false;
    [&]<typename... As>(gemma4::AssistantSet<As...>*) {
      ((written = written || (variant == As::name && (gemma4::write_synthetic_assistant<As>(out, {.dtype = kDTypes.at(dtype), .seed = seed}), true))),
       ...);
    }(static_cast<gemma4::CompiledAssistants*>(nullptr));
    return written;
  }

  int operator()() const {
    const auto start = std::chrono::steady_clock::now();
    if (write_assistant()) {
      fmt::print("wrote {} ({}) to {}\n", variant, dtype, out);
      return 0;
    }
    const auto& config = gemma4::CompiledVariants::config(variant);
    gemma4::write_synthetic_checkpoint(config, out,
                                       {.dtype = kDTypes.at(dtype), .seed = seed, .shards = shards, .multimodal = !text_only,
                                        .shared_layer_kv = !no_shared_kv});
    if (!tokenizer.empty()) {
      const gemma4::Tokenizer tok = gemma4::Tokenizer::from_file(tokenizer);  // refuse a bad file now
      gemma4::check_vocabulary(tok, config.vocab_size, tokenizer);
      std::filesystem::copy_file(tokenizer, std::filesystem::path(out) / "tokenizer.json",
                                 std::filesystem::copy_options::overwrite_existing);
    }
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    fmt::print("wrote {} ({}) to {} in {:.1f} s\n", variant, dtype, out, took.count());
    return 0;
  }
};

// ---- info ----

struct InfoCommand {
  std::string model;

  void add_to(CLI::App& app) { app.add_option("--model", model, "model directory")->required(); }

  int operator()() const {
    with_model_variant(model, [&]<typename V>() {
      const auto start = std::chrono::steady_clock::now();
      const gemma4::Weights<V> weights(model);
      const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
      const auto& r = weights.report();
      fmt::print("variant {}\n{}", V::name, gemma4::format_config(V::config));
      const gemma4::ForwardPass<V> pass = gemma4::choose_forward_pass<V>();
      fmt::print("SIMD target: {} (chosen {}), int8 dot product: {}\n", pass.simd_target,
                 gemma4::kDynamicDispatch ? "at run time" : "at compile time", pass.integer_dot);
      fmt::print("{}: prefix '{}', {} tensors used, {:.2f} GB of weights ({:.2f} GB PLE table left on disk)\n",
                 r.packed_model ? fmt::format("packed {} model", gemma4::weight_format_name(r.format)) : std::string("checkpoint"), r.prefix,
                 r.tensors_used, r.weight_bytes / 1e9, r.ple_table_bytes / 1e9);
      fmt::print("skipped {} vision/audio/unused-KV tensors, copied {:.1f} MB, loaded in {:.2f} s\n", r.skipped.size(),
                 r.copied_bytes / 1e6, took.count());
      for (const auto& name : r.unknown) fmt::print("warning: tensor '{}' is not part of the text model; ignored\n", name);
    });
    return 0;
  }
};

// Calls f(drafts) with the drafter of the assistant in `dir` for `session`, its
// matrices in the target's format, or with no drafts when dir is empty.
template <typename V, typename F>
void with_drafts(const std::string& dir, const gemma4::Session<V>& session, const gemma4::DrafterOptions& options, F&& f) {
  if (dir.empty()) {
    gemma4::NoDrafts none;
    return f(none);
  }
  gemma4::CompiledAssistants::with_matching<V>(gemma4::read_model_config(dir), [&]<typename A>() {
    const gemma4::Assistant<A> assistant(dir, {.format = session.weights().report().format, .pool = &session.pool()});
    gemma4::Drafter<A> drafter(assistant, session, options);
    f(drafter);
  });
}

// ---- logits ----

struct LogitsCommand {
  std::string model, tokens, out, draft;
  bool decode = false;
  KvOption kv;

  void add_to(CLI::App& app) {
    app.add_option("--model", model, "model directory")->required();
    app.add_option("--tokens", tokens, "token ids, e.g. 2,45,17")->required();
    app.add_option("--out", out, "write little-endian float32 [T, vocab] here instead of printing each argmax");
    auto* decode_flag = app.add_flag("--decode", decode, "run token by token instead of as one prompt");
    app.add_option("--draft", draft,
                   "an assistant directory: write its first draft step's logits [T - 1, vocab] instead, row i - 1 from positions "
                   "0..i-1 committed, token i and the target's hidden row i - 1 (centroid head)")
        ->excludes(decode_flag);
    kv.add_to(app);
  }

  // Row i - 1: the assistant's first step for the round after positions 0..i-1.
  template <typename V>
  std::vector<float> draft_logits(gemma4::Session<V>& session, const std::vector<int>& ids) const {
    if (ids.size() < 2) fail(ErrorKind::kInvalidArgument, "--draft needs at least two --tokens");
    const std::size_t vocab = V::config.vocab_size, hidden_size = V::config.hidden_size;
    std::vector<float> out_rows, logits(vocab), hidden(hidden_size);
    gemma4::CompiledAssistants::with_matching<V>(gemma4::read_model_config(draft), [&]<typename A>() {
      const gemma4::Assistant<A> assistant(draft);
      gemma4::Drafter<A> drafter(assistant, session);
      for (std::size_t i = 1; i < ids.size(); ++i) {
        session.forward(std::span(ids).subspan(i - 1, 1), gemma4::Logits::kLast, logits, hidden);
        const auto row = drafter.first_step(ids[i], hidden);
        out_rows.insert(out_rows.end(), row.begin(), row.end());
      }
    });
    return out_rows;
  }

  int operator()() const {
    static_assert(std::endian::native == std::endian::little, "gemma4: --out writes the host's float layout");
    const std::vector<int> ids = parse_ids(tokens, "each --tokens entry");
    with_model_variant(model, [&]<typename V>() {
      const gemma4::Weights<V> weights(model);
      gemma4::Session<V> session(weights, {.max_context = static_cast<int>(ids.size()), .kv_format = kv.format()});
      const std::size_t vocab = V::config.vocab_size;
      std::vector<float> logits(ids.size() * vocab);
      if (!draft.empty()) {
        logits = draft_logits(session, ids);
      } else if (decode) {
        for (std::size_t t = 0; t < ids.size(); ++t) {
          session.forward(std::span(ids).subspan(t, 1), gemma4::Logits::kAll, std::span(logits).subspan(t * vocab, vocab));
        }
      } else {
        session.forward(ids, gemma4::Logits::kAll, logits);
      }
      if (!out.empty()) {
        std::ofstream file(out, std::ios::binary);
        file.write(reinterpret_cast<const char*>(logits.data()), static_cast<std::streamsize>(logits.size() * sizeof(float)));
        if (!file) fail(ErrorKind::kIo, "cannot write {}", out);
        return;
      }
      for (std::size_t t = 0; t < logits.size() / vocab; ++t) {
        const auto row = std::span(logits).subspan(t * vocab, vocab);
        const auto best = std::max_element(row.begin(), row.end());
        fmt::print("{}\t{}\t{}\t{:.6f}\n", t, ids[t], best - row.begin(), *best);
      }
    });
    return 0;
  }
};

// ---- convert ----

struct ConvertCommand {
  std::string model, weights = "int4", head, out;
  Threads threads;

  void add_to(CLI::App& app) {
    app.add_option("--model", model, "the checkpoint to convert")->required();
    app.add_option("--weights", weights, "format of the packed model")->check(CLI::IsMember(std::vector<std::string>{"int8", "int4"}))->capture_default_str();
    LoadFormatOption::add_head_option(app, head);
    threads.add_to(app);
    app.add_option("OUT_DIR", out, "the directory to write: config, tokenizer and packed weights")->required();
  }

  int operator()() {
    const auto start = std::chrono::steady_clock::now();
    const bool terminal = ::isatty(STDERR_FILENO) == 1;
    gemma4::ConvertOptions options{.format = kWeightFormats.at(weights),
                                   .head_format = LoadFormatOption::format_named(head),
                                   .pool = &threads.pool()};
    const auto report = [&](std::string_view name, const gemma4::ConvertReport& report, std::string_view use) {
      const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
      if (terminal) fmt::print(stderr, "\n");
      fmt::print("wrote {} ({} {}, {:.2f} GB, with {}) in {:.1f} s; {} {}\n", out, name, weights, report.bytes / 1e9,
                 fmt::join(report.copied, ", "), took.count(), use, out);
    };
    const nlohmann::json config = gemma4::read_model_config(model);
    if (config.value("model_type", "") == gemma4::kAssistantModelType) {
      gemma4::CompiledAssistants::with_any_matching(config, [&]<typename A>() {
        if (terminal) options.on_progress = progress_line(fmt::format("converting {} ({}) to {}", model, A::name, weights));
        report(A::name, gemma4::convert_assistant<A>(model, out, options), "draft with it: gemma4 run --draft");
      });
      return 0;
    }
    with_model_variant(model, [&]<typename V>() {
      if (terminal) options.on_progress = progress_line(fmt::format("converting {} ({}) to {}", model, V::name, weights));
      report(V::name, gemma4::convert_checkpoint<V>(model, out, options), "run it with: gemma4 run --model");
    });
    return 0;
  }
};

// ---- tokenize / detokenize ----

struct TokenizeCommand {
  std::string model;
  bool no_bos = false, no_special = false;

  void add_to(CLI::App& app) {
    app.add_option("--model", model, "model directory (its tokenizer.json)")->required();
    app.add_flag("--no-bos", no_bos, "do not start with <bos>");
    app.add_flag("--no-special", no_special, "encode special-token text as plain text");
  }

  int operator()() const {
    const gemma4::Tokenizer tokenizer = gemma4::load_tokenizer(model);
    const std::vector<int> ids = tokenizer.encode(read_stdin(), {.add_bos = !no_bos, .match_special_tokens = !no_special});
    fmt::print("{}\n", fmt::join(ids, ","));
    return 0;
  }
};

std::vector<gemma4::Tool> read_tools(const std::string& path) {
  if (path.empty()) return {};
  const gemma4::JsonValue json = gemma4::read_json_file<gemma4::JsonValue>(path);  // keys in file order; its errors name the file
  try {
    return gemma4::tools_from_json(json);
  } catch (const gemma4::Error& e) {
    fail(e.kind(), "{}: {}", path, e.what());
  }
}

// The chat template of a model directory; one we do not know is said on stderr.
gemma4::ChatTemplate chat_template_with_warning(const std::filesystem::path& dir) {
  gemma4::ChatTemplate chat_template = gemma4::chat_template_of(dir);
  if (!chat_template.warning.empty()) fmt::print(stderr, "warning: {}\n", chat_template.warning);
  return chat_template;
}

struct TemplateCommand {
  std::string model, messages, tools;
  bool thinking = false, no_generation_prompt = false, ids = false;

  void add_to(CLI::App& app) {
    app.add_option("--model", model, "model directory (its chat template and tokenizer.json)")->required();
    app.add_option("--messages", messages, "OpenAI-style messages: a JSON array of {role, content, tool_calls, reasoning_content, ...}")->required();
    app.add_option("--tools", tools, "a JSON array of {\"type\": \"function\", \"function\": {name, description, parameters}}");
    app.add_flag("--thinking", thinking, "thinking mode (<|think|> in the system turn)");
    app.add_flag("--no-generation-prompt", no_generation_prompt, "end after the last message, without <|turn>model");
    app.add_flag("--ids", ids, "print the token ids (one comma-separated line) instead of the text");
  }

  int operator()() const {
    const gemma4::ChatTemplate chat_template = chat_template_with_warning(model);
    std::vector<gemma4::Message> parsed;
    try {
      parsed = gemma4::messages_from_json(gemma4::read_json_file<gemma4::JsonValue>(messages));
    } catch (const gemma4::Error& e) {
      fail(e.kind(), "{}: {}", messages, e.what());
    }
    const gemma4::PromptText prompt = gemma4::render_prompt(chat_template, parsed, read_tools(tools),
                                                            {.thinking = thinking, .add_generation_prompt = !no_generation_prompt});
    if (ids) {
      fmt::print("{}\n", fmt::join(prompt.ids(gemma4::load_tokenizer(model)), ","));
    } else {
      print_stdout(prompt.str());
    }
    return 0;
  }
};

struct DetokenizeCommand {
  std::string model;
  bool skip_special = false;

  void add_to(CLI::App& app) {
    app.add_option("--model", model, "model directory (its tokenizer.json)")->required();
    app.add_flag("--skip-special", skip_special, "leave control tokens out of the text");
  }

  int operator()() const {
    const gemma4::Tokenizer tokenizer = gemma4::load_tokenizer(model);
    const std::vector<int> ids = parse_ids(read_stdin(), "each id", /*lenient=*/true);
    print_stdout(tokenizer.decode(ids, {.skip_special = skip_special}));
    return 0;
  }
};

// ---- run: generation and chat ----

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
  if (s.drafted > 0) {
    fmt::print(stderr, "[drafts: {} of {} accepted ({:.0f}%) | {:.2f} tokens per target pass]\n", s.accepted, s.drafted,
               100 * s.acceptance_rate(), s.tokens_per_target_pass());
  }
}

// Loads the model with a progress line when stderr is a terminal.
template <typename V>
gemma4::Model<V> load_model(const std::filesystem::path& dir, gemma4::LoadOptions options) {
  const bool terminal = ::isatty(STDERR_FILENO) == 1;
  const auto start = std::chrono::steady_clock::now();
  if (terminal) options.on_progress = progress_line(fmt::format("loading {} ({})", dir.string(), V::name));
  gemma4::Model<V> model(dir, options);
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  if (terminal) {
    fmt::print(stderr, "\rloaded {} ({}, {} weights{}) in {:.1f} s{:20}\n", dir.string(), V::name,
               gemma4::weight_format_name(model.weights.report().format), model.weights.report().packed_model ? ", packed" : "",
               took.count(), "");
  }
  return model;
}

// One generated reply of a batch as it streams in: the text, the thought channel kept
// apart, tool calls parsed out.
struct StreamedReply {
  gemma4::ReplyStream stream;
  std::string text{}, thought{};

  void push(int id) { stream.push(id, [&](std::string_view piece, bool in_thought) { (in_thought ? thought : text) += piece; }); }
  void finish() { stream.finish([&](std::string_view piece, bool in_thought) { (in_thought ? thought : text) += piece; }); }
};

struct RunCommand {
  std::string model, prompt, prompts, system, draft, tools, tool_choice = "auto", prompt_cache, grammar, json_schema;
  bool chat = false, raw = false, think = false, show_thoughts = false, greedy = false;
  int max_tokens = 512, max_context = 4096, draft_max = 3, batch = 4;
  LoadFormatOption load_format;
  KvOption kv;
  Threads threads;
  // Sampling settings: generation_config.json's unless given.
  float temperature = 0, top_p = 0, min_p = 0, repetition_penalty = 0;
  int top_k = 0;
  std::uint64_t seed = 0;
  std::map<std::string, CLI::Option*> sampling;
  CLI::Option* prompt_option = nullptr;

  void add_to(CLI::App& app) {
    app.add_option("--model", model, "model directory")->required();
    prompt_option = app.add_option("--prompt", prompt, "generate once from this prompt");
    auto* chat_option = app.add_flag("--chat", chat, "multi-turn chat on stdin, the KV cache kept between turns");
    auto* prompts_option = app.add_option("--prompts", prompts,
                                          "generate for every line of this file, up to --batch at once in one pass: a prompt, or a JSON array of"
                                          " messages; one JSON line per prompt out")
                               ->check(CLI::ExistingFile);
    prompt_option->excludes(chat_option)->excludes(prompts_option);
    chat_option->excludes(prompts_option);
    app.add_option("--prompt-cache", prompt_cache,
                   "with --prompt: take the prompt's longest prefix this file holds from it instead of prefilling it, then save the prompt"
                   " into it (a fixed system prompt or tool list is prefilled once across runs)")
        ->needs(prompt_option);
    app.add_option("--batch", batch, "with --prompts: sequences decoded at once")->check(CLI::Range(1, 256))->capture_default_str()->needs(prompts_option);
    app.add_flag("--raw", raw, "plain text after <bos>, no chat template (pretrained models)");
    app.add_option("--system", system, "system prompt");
    auto* think_option = app.add_flag("--think", think, "thinking mode: the model reasons first");
    app.add_flag("--show-thoughts", show_thoughts, "print the thought channel to stderr");
    auto* tools_option =
        app.add_option("--tools", tools, "tools the model may call (JSON array, OpenAI form); each call is shown on stderr and its result read as a line of stdin");
    app.add_option("--tool-choice", tool_choice, "auto: the model decides; required: each answer to a prompt is tool calls; or the name of the tool to call")
        ->capture_default_str()
        ->needs(tools_option);
    auto* grammar_option = app.add_option("--grammar", grammar, "only text this GBNF grammar allows: every answer is one of its sentences (see the README)")
                               ->check(CLI::ExistingFile)
                               ->excludes(think_option)
                               ->excludes(tools_option)
                               ->excludes(prompts_option);
    app.add_option("--json-schema", json_schema, "every answer is a JSON document this JSON Schema allows (see the README)")
        ->check(CLI::ExistingFile)
        ->excludes(grammar_option)
        ->excludes(think_option)
        ->excludes(tools_option)
        ->excludes(prompts_option);
    app.add_option("--max-tokens", max_tokens, "tokens to generate at most per answer")->check(CLI::Range(1, 1 << 30))->capture_default_str();
    app.add_option("--max-context", max_context, "context size in tokens")->check(CLI::Range(1, 1 << 30))->capture_default_str();
    kv.add_to(app);
    load_format.add_to(app);
    threads.add_to(app);
    app.add_option("--draft", draft, "an assistant directory (e.g. gemma-4-E2B-it-assistant): decode speculatively, same output, faster");
    app.add_option("--draft-max", draft_max, "tokens the assistant drafts per target pass")->check(CLI::Range(1, 16))->capture_default_str();
    sampling["temperature"] = app.add_option("--temperature", temperature, "0 = greedy");
    sampling["top_k"] = app.add_option("--top-k", top_k, "keep the K most likely tokens, 0 = all");
    sampling["top_p"] = app.add_option("--top-p", top_p, "keep the most likely tokens up to this probability");
    sampling["min_p"] = app.add_option("--min-p", min_p, "drop tokens below this times the top probability");
    sampling["repetition_penalty"] = app.add_option("--repetition-penalty", repetition_penalty, "1 = off");
    sampling["seed"] = app.add_option("--seed", seed, "random seed of the sampler");
    app.add_flag("--greedy", greedy, "always the most likely token (temperature 0)");
  }

  // generation_config.json's defaults, overridden by whatever the command line sets.
  gemma4::GenerationConfig generation_config(gemma4::GenerationConfig config) const {
    gemma4::SamplingOptions& s = config.sampling;
    const auto given = [&](const char* name) { return sampling.at(name)->count() > 0; };
    if (given("temperature")) s.temperature = temperature;
    if (given("top_k")) s.top_k = top_k;
    if (given("top_p")) s.top_p = top_p;
    if (given("min_p")) s.min_p = min_p;
    if (given("repetition_penalty")) s.repetition_penalty = repetition_penalty;
    if (given("seed")) s.seed = seed;
    if (greedy) s.temperature = 0.0f;
    s.validate();
    return config;
  }

  template <typename V, typename Drafts>
  void chat_loop(gemma4::Session<V>& session, Drafts& drafts, const gemma4::Model<V>& loaded, const gemma4::GenerationConfig& generation,
                 gemma4::GrammarConstraint* constraint, const gemma4::TokenTrie* vocabulary) const {
    gemma4::Conversation<V> conversation(session, loaded.tokenizer, generation,
                                         {.system = system, .thinking = think, .max_new_tokens = max_tokens, .tools = read_tools(tools),
                                          .chat_template = loaded.chat_template});  // generation: the command line's sampling
    conversation.constrain(constraint);
    // Tool calls follow the tools' schemas; a forced choice applies to each answer to a prompt.
    gemma4::ToolChoice choice;
    if (!tools.empty()) {
      for (const std::string& why : conversation.constrain_tool_calls(*vocabulary)) fmt::print(stderr, "warning: {}\n", why);
      if (tool_choice == "required") {
        choice.mode = gemma4::ToolChoice::Mode::kRequired;
      } else if (tool_choice != "auto") {
        choice = {.mode = gemma4::ToolChoice::Mode::kFunction, .function = tool_choice};
      }
      conversation.force_tool_call(choice);  // errors now for a tool not declared
    }
    if (!loaded.chat_template.warning.empty()) fmt::print(stderr, "warning: {}\n", loaded.chat_template.warning);
    const auto on_text = [&](std::string_view text, bool thought) {
      if (!thought) print_stdout(text);
      if (thought && show_thoughts) fmt::print(stderr, "{}", text);
      return !g_interrupted;  // false cancels the reply
    };
    const auto ask = [&](std::string_view text) {
      if (choice.mode != gemma4::ToolChoice::Mode::kAuto) conversation.force_tool_call(choice);
      return conversation.ask(text, drafts, on_text);
    };
    gemma4::cli::LineReader input;
    // A reply and, while it calls tools, each call shown on stderr and its result read as
    // one line of stdin (a script can pipe them in), then the model's continuation.
    const auto answer = [&](gemma4::Reply reply) {
      while (true) {
        end_reply_line();
        if (reply.dropped_turns > 0) fmt::print(stderr, "\n[the context was full: the {} oldest turns were dropped]", reply.dropped_turns);
        for (const gemma4::MalformedToolCall& bad : reply.malformed_calls) fmt::print(stderr, "\n[malformed tool call: {}] {}\n", bad.reason, bad.raw);
        print_summary(reply.generation, loaded.weights.report().bytes_per_token);
        if (reply.tool_calls.empty()) return;
        std::vector<gemma4::ToolResult> results;
        for (const gemma4::ToolCall& call : reply.tool_calls) {
          fmt::print(stderr, "[tool call {}] {} {}\n", call.id, call.name, call.arguments.dump());
          const std::optional<std::string> line = input.read(fmt::format("result of {}> ", call.name).c_str());
          if (!line) fail(ErrorKind::kInvalidArgument, "stdin ended before the result of tool call {} ({})", call.id, call.name);
          results.push_back({.call_id = call.id, .content = *line});
        }
        reply = conversation.send_tool_results(results, drafts, on_text);
      }
    };
    if (!chat) return answer(ask(prompt));
    constexpr const char* kHelp =
        "chat: an empty line is ignored, Ctrl-C cancels a reply, /reset starts over, /help shows this, /exit or Ctrl-D ends\n";
    if (input.terminal()) fmt::print(stderr, "{}", kHelp);
    const InterruptCancelsReply interrupts;
    for (;;) {
      const std::optional<std::string> read = input.read("> ");
      if (!read || *read == "/exit") break;
      const std::string& line = *read;
      if (line.empty()) continue;
      if (line == "/help") {
        fmt::print(stderr, "{}", kHelp);
        continue;
      }
      if (line == "/reset") {
        conversation.restart();
        fmt::print(stderr, "[the conversation starts over]\n");
        continue;
      }
      g_interrupted = false;
      g_generating = true;
      try {
        answer(ask(line));
      } catch (const gemma4::Error& e) {  // a bad line (invalid UTF-8, too long) does not end the chat
        fmt::print(stderr, "error: {}\n", e.what());
      }
      g_generating = false;
    }
  }

  // The token ids of a prompt: a JSON array of messages, or the user's text (after
  // --system); with --raw, the text after exactly one <bos>, whether or not
  // tokenizer.json's post-processor adds it (spec section 6).
  template <typename V>
  std::vector<int> prompt_ids(const gemma4::Model<V>& loaded, const std::string& line) const {
    const gemma4::Tokenizer& tokenizer = loaded.tokenizer;
    if (raw) {
      std::vector<int> ids = {gemma4::control_token_id(tokenizer, gemma4::control_token::kBos)};
      const std::vector<int> text = tokenizer.encode(line, {.add_bos = false});
      ids.insert(ids.end(), text.begin(), text.end());
      return ids;
    }
    std::vector<gemma4::Message> messages;
    if (line.starts_with('[')) {
      messages = gemma4::messages_from_json(gemma4::parse_json(line, "a JSON array of messages"));
    } else {
      if (!system.empty()) messages.push_back({.role = gemma4::Role::kSystem, .content = system});
      messages.push_back({.role = gemma4::Role::kUser, .content = line});
    }
    return gemma4::render_prompt(loaded.chat_template, messages, read_tools(tools), {.thinking = think, .add_generation_prompt = true}).ids(tokenizer);
  }

  // --prompt-cache: what the file holds of the prompt is not prefilled again; then the
  // prompt, but for its last token (whose logits generation takes), is saved back.
  template <typename V>
  void use_prompt_cache(gemma4::Session<V>& session, const std::vector<int>& ids) const {
    std::size_t reused = 0;
    if (std::filesystem::exists(prompt_cache)) {
      gemma4::restore_prompt_cache(session, prompt_cache);
      reused = gemma4::keep_common_prefix(session, ids);
    }
    if (ids.size() - 1 > reused) {
      std::vector<float> logits(V::config.vocab_size);
      session.forward(std::span(ids).first(ids.size() - 1).subspan(reused), gemma4::Logits::kLast, logits);
    }
    gemma4::save_prompt_cache(session, prompt_cache);
    fmt::print(stderr, "[prompt cache {}: {} of the prompt's {} tokens taken from it; {} tokens saved]\n", prompt_cache, reused, ids.size(),
               session.position());
  }

  // --prompts: every line's reply as one JSON line on stdout, in the order they finish,
  // up to --batch sequences decoded at once (model/batch_generator.hpp); a line that
  // cannot run gets an "error" instead. A summary on stderr.
  template <typename V>
  void run_batch(const gemma4::Model<V>& loaded, const gemma4::GenerationConfig& generation, gemma4::ThreadPool& pool) const {
    std::ifstream in(prompts, std::ios::binary);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    const int context = std::min<int>(max_context, V::config.max_position_embeddings);
    gemma4::Batch<V> batched(loaded.weights, {.max_rows = batch, .pool = &pool});
    gemma4::BatchGenerator<V> generator(batched);
    std::vector<gemma4::Session<V>> sessions;  // by slot, made as slots are first taken (in order)
    sessions.reserve(static_cast<std::size_t>(batch));  // no moves: the generator holds their addresses
    std::vector<std::optional<StreamedReply>> replies(static_cast<std::size_t>(batch));  // by slot
    std::vector<std::size_t> line_of(static_cast<std::size_t>(batch));                   // by slot
    const std::vector<int> stop_ids = raw ? generation.stop_ids : gemma4::chat_stop_ids(generation.stop_ids, loaded.tokenizer, !tools.empty());
    const auto on_token = [&](int slot, int id) {
      replies[static_cast<std::size_t>(slot)]->push(id);
      return true;
    };
    const auto print_line = [](gemma4::JsonValue line) {
      print_stdout(line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    };
    const auto start = std::chrono::steady_clock::now();
    int replied = 0, generated = 0;
    double sequence_rates = 0;
    // A slot's reply, once its sequence has finished (a first token may finish it at once).
    const auto report_if_finished = [&](int slot) {
      std::optional<StreamedReply>& reply = replies[static_cast<std::size_t>(slot)];
      if (!reply || !generator.finished(slot)) return;
      reply->finish();
      const gemma4::GenerationResult& result = generator.result(slot);
      gemma4::JsonValue out = {{"line", line_of[static_cast<std::size_t>(slot)] + 1}, {"text", reply->text}};
      if (!reply->thought.empty()) out["thought"] = reply->thought;
      for (const gemma4::ToolCall& call : reply->stream.calls()) out["tool_calls"].push_back({{"name", call.name}, {"arguments", call.arguments}});
      for (const gemma4::MalformedToolCall& bad : reply->stream.malformed()) out["malformed_tool_calls"].push_back({{"raw", bad.raw}, {"reason", bad.reason}});
      out["stop"] = to_string(result.stop);
      out["prompt_tokens"] = result.stats.prompt_tokens;
      out["generated_tokens"] = result.stats.generated_tokens;
      print_line(out);
      ++replied;
      generated += result.stats.generated_tokens;
      sequence_rates += result.stats.decode_tokens_per_second();
      reply.reset();
    };
    std::size_t next = 0;
    while (true) {
      // Free slots take the next lines; each prompt runs in its slot's session.
      while (next < lines.size() && generator.active() < batch) {
        const std::size_t line = next++;
        if (lines[line].empty()) continue;
        int slot = 0;
        while (!generator.finished(slot)) ++slot;
        if (static_cast<std::size_t>(slot) == sessions.size()) sessions.emplace_back(loaded.weights, gemma4::SessionOptions{.max_context = context, .kv_format = kv.format(), .pool = &pool});
        gemma4::Session<V>& session = sessions[static_cast<std::size_t>(slot)];
        session.reset();
        replies[static_cast<std::size_t>(slot)].emplace(StreamedReply{.stream = gemma4::ReplyStream(loaded.tokenizer)});
        line_of[static_cast<std::size_t>(slot)] = line;
        try {
          generator.join(session, prompt_ids(loaded, lines[line]), generation.sampling, stop_ids, max_tokens, on_token);
          report_if_finished(slot);
        } catch (const gemma4::Error& e) {
          print_line({{"line", line + 1}, {"error", e.what()}});
          replies[static_cast<std::size_t>(slot)].reset();
        }
      }
      if (generator.active() == 0) break;  // and every line taken
      generator.step(on_token);
      for (int slot = 0; slot < batch; ++slot) report_if_finished(slot);
    }
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    fmt::print(stderr, "[{} prompts, up to {} at once | {} tokens generated in {:.1f} s: {:.1f} tok/s in all | {:.1f} tok/s per sequence (mean decode)]\n",
               replied, batch, generated, took.count(), generated / took.count(), replied > 0 ? sequence_rates / replied : 0.0);
  }

  int operator()() {
    if (prompt_option->count() == 0 && !chat && prompts.empty()) fail(ErrorKind::kInvalidArgument, "give one of --prompt TEXT, --prompts FILE and --chat");
    if (raw && chat) fail(ErrorKind::kInvalidArgument, "--raw takes --prompt or --prompts, not --chat");
    if (!prompts.empty() && !draft.empty()) fail(ErrorKind::kInvalidArgument, "--prompts decodes a batch plainly: leave out --draft");
    gemma4::ThreadPool& pool = threads.pool();
    // Unset: a packed model as packed, a checkpoint in int8 (bf16 decodes at half the speed).
    std::optional<gemma4::WeightFormat> format = load_format.format();
    if (!format && !gemma4::packed_model_info(gemma4::Checkpoint(model))) format = gemma4::WeightFormat::kInt8;
    const gemma4::LoadOptions load_options{.format = format, .head_format = load_format.head_format(), .pool = &pool};
    std::optional<gemma4::Grammar> parsed_grammar;  // read first: a bad grammar fails before the model loads
    if (!grammar.empty()) parsed_grammar = gemma4::read_gbnf_file(grammar);
    if (!json_schema.empty()) parsed_grammar = gemma4::read_json_schema_file(json_schema);
    with_model_variant(model, [&]<typename V>() {
      const gemma4::Model<V> loaded = load_model<V>(model, load_options);
      const gemma4::GenerationConfig generation = generation_config(loaded.generation);
      std::optional<gemma4::TokenTrie> vocabulary;
      std::optional<gemma4::GrammarConstraint> constraint;
      if (parsed_grammar || !tools.empty()) vocabulary.emplace(loaded.tokenizer);
      if (parsed_grammar) constraint.emplace(std::move(*parsed_grammar), *vocabulary);
      if (!prompts.empty()) return run_batch(loaded, generation, pool);
      // A prompt cache may be reused at any prefix: every position of the sliding layers is kept.
      gemma4::Session<V> session(loaded.weights, {.max_context = std::min<int>(max_context, V::config.max_position_embeddings),
                                                  .kv_format = kv.format(), .rewind_anywhere = !prompt_cache.empty(), .pool = &pool});
      if (!prompt_cache.empty()) use_prompt_cache(session, prompt_ids(loaded, prompt));
      const std::size_t bytes_per_token = loaded.weights.report().bytes_per_token;
      with_drafts<V>(draft, session, {.max_drafts = draft_max}, [&](auto& drafts) {
        if (!raw) return chat_loop(session, drafts, loaded, generation, constraint ? &*constraint : nullptr, vocabulary ? &*vocabulary : nullptr);

        const std::vector<int> ids = prompt_ids(loaded, prompt);
        const std::size_t held = gemma4::keep_common_prefix(session, ids);  // what a prompt cache gave
        gemma4::Generator<V> generator(session, generation.sampling, generation.stop_ids);
        generator.constrain(constraint ? &*constraint : nullptr);
        gemma4::StreamDecoder stream(loaded.tokenizer, {.skip_special = true});
        const auto result = generator.generate(std::span(ids).subspan(held), max_tokens, drafts, [&](int id) {
          print_stdout(stream.push(id));
          return true;
        });
        print_stdout(stream.finish());
        end_reply_line();
        print_summary(result, bytes_per_token);
      });
    });
    return 0;
  }
};

#if GEMMA4_SERVER
// ---- serve ----

struct ServeCommand {
  gemma4::server::ServeOptions options;
  LoadFormatOption load_format;
  KvOption kv;
  std::size_t max_body_mb = 4;

  void add_to(CLI::App& app) {
    app.add_option("--model", options.model, "model directory")->required();
    app.add_option("--alias", options.alias, "the model's name in the API (default: the directory's name)");
    app.add_option("--host", options.host, "address to listen on (loopback unless you mean otherwise)")->capture_default_str();
    app.add_option("--port", options.port, "port; 0 = any free one")->check(CLI::Range(0, 65535))->capture_default_str();
    app.add_option("--parallel", options.parallel, "slots: requests decoded at once, each with its own KV cache")->check(CLI::Range(1, 64))->capture_default_str();
    app.add_option("--max-queue", options.max_queue, "requests waiting for a slot; more get 503")->check(CLI::Range(0, 4096))->capture_default_str();
    app.add_option("--max-context", options.max_context, "context size of each slot in tokens")->check(CLI::Range(1, 1 << 30))->capture_default_str();
    kv.add_to(app);
    app.add_option("--prefill-rows", options.prefill_rows,
                   "prompt tokens each pass runs beside the decoding slots (0: a new prompt runs at once while the others wait)")
        ->check(CLI::Range(0, 4096))
        ->capture_default_str();
    app.add_option("--threads", options.threads, "threads to run on, 0 = all usable CPUs")->check(CLI::Range(0, kMaxThreads))->capture_default_str();
    app.add_option("--api-key", options.api_key, "require \"Authorization: Bearer KEY\" on /v1 requests");
    app.add_option("--prompt-cache", options.prompt_cache,
                   "every slot starts from this prompt cache (written by gemma4 run --prompt-cache): requests sharing its prompt's start"
                   " do not prefill it")
        ->check(CLI::ExistingFile);
    app.add_option("--draft", options.draft, "an assistant directory: decode speculatively (with --parallel 1), same output, faster");
    app.add_option("--draft-max", options.draft_max, "tokens the assistant drafts per target pass")->check(CLI::Range(1, 16))->capture_default_str();
    app.add_option("--max-body-mb", max_body_mb, "largest request body taken, in MiB (more gets 413)")->check(CLI::Range(1, 1024))->capture_default_str();
    load_format.add_to(app);
  }

  int operator()() {
    options.max_body_bytes = max_body_mb << 20;
    options.kv_format = kv.format();
    options.format = load_format.format();
    options.head_format = load_format.head_format();
    return gemma4::server::serve(options);
  }
};
#endif

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("gemma4: Gemma 4 E2B/E4B text models on CPUs");
  app.require_subcommand(1);
  RunCommand run;
  ConvertCommand convert;
  TokenizeCommand tokenize;
  DetokenizeCommand detokenize;
  SynthCommand synth;
  InfoCommand info;
  LogitsCommand logits;
  TemplateCommand template_command;
  std::function<int()> chosen;
  std::vector<std::string> commands;
  const auto add = [&](const char* name, const char* description, auto& command) {
    commands.push_back(name);
    CLI::App* sub = app.add_subcommand(name, description);
    command.add_to(*sub);
    sub->callback([&] { chosen = [&] { return command(); }; });
  };
  add("run", "generate text, streamed to stdout; a summary line on stderr", run);
  add("convert", "write a packed int8/int4 model directory: all a device needs", convert);
  add("tokenize", "text on stdin, comma-separated ids out", tokenize);
  add("detokenize", "ids on stdin, text out", detokenize);
  add("synth", "write a synthetic checkpoint in the Hugging Face layout", synth);
  add("info", "load and validate a checkpoint, print its config and tensors", info);
  add("logits", "logits of every position: float32 [T, vocab] to --out, or each argmax", logits);
  add("template", "print the chat prompt the model sees for a list of messages (and tools)", template_command);
#if GEMMA4_SERVER
  ServeCommand serve;
  add("serve", "the OpenAI API over HTTP: /v1/chat/completions, /v1/completions, a chat page at /", serve);
#endif
  // Usage errors exit with 2, as the shell's own tools do; a run that fails, with 1.
  constexpr int kUsageError = 2;
  if (argc > 1 && argv[1][0] != '-' && std::find(commands.begin(), commands.end(), argv[1]) == commands.end()) {
    fmt::print(stderr, "gemma4: unknown command '{}'; the commands are {} (gemma4 COMMAND --help)\n", argv[1], fmt::join(commands, ", "));
    return kUsageError;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kUsageError;
  }
  try {
    return chosen();
  } catch (const std::exception& e) {
    fmt::print(stderr, "gemma4 {}: error: {}\n", app.get_subcommands().front()->get_name(), e.what());
    return 1;
  }
}

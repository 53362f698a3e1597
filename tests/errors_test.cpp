// Every Error carries a kind a program can branch on, next to its message.

#include <catch2/catch.hpp>

#include "gemma4/tiny.hpp"
#include "gemma4/weights/synthetic_checkpoint.hpp"
#include "small_tokenizer.hpp"
#include "support.hpp"

using namespace gemma4;

namespace {

template <typename F>
std::optional<ErrorKind> kind_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.kind();
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("errors have kinds", "[errors]") {
  test::TempDir dir;
  CHECK(kind_of([&] { read_model_config(dir / "none"); }) == ErrorKind::kMissingFile);
  CHECK(kind_of([&] { load_tokenizer(dir.path()); }) == ErrorKind::kMissingFile);

  test::write_file(dir / "x.safetensors", "\x10\x00\x00");
  CHECK(kind_of([&] { SafetensorsFile(dir / "x.safetensors"); }) == ErrorKind::kBadFile);

  write_synthetic_checkpoint(TinyE2B::config, dir / "m", {.seed = 1});
  CHECK(kind_of([&] { Weights<TinyE4B>(dir / "m"); }) == ErrorKind::kConfigMismatch);

  const Weights<TinyE2B> weights(dir / "m");
  Session<TinyE2B> session(weights, {.max_context = 4});
  std::vector<float> logits(TinyE2B::config.vocab_size);
  CHECK(kind_of([&] { session.forward(std::vector<int>(5, 2), Logits::kLast, logits); }) == ErrorKind::kContextFull);
  CHECK(kind_of([&] { session.forward(std::vector<int>{2, 5000}, Logits::kLast, logits); }) == ErrorKind::kInvalidArgument);

  const Tokenizer tokenizer = Tokenizer::from_json_text(test::small_tokenizer_json().dump());
  CHECK(kind_of([&] { tokenizer.encode("caf\xE9"); }) == ErrorKind::kInvalidText);
  auto unigram = test::small_tokenizer_json();
  unigram["model"]["type"] = "Unigram";
  CHECK(kind_of([&] { Tokenizer::from_json_text(unigram.dump()); }) == ErrorKind::kUnsupported);

  CHECK(kind_of([] { SamplingOptions{.top_p = 2.0f}.validate(); }) == ErrorKind::kInvalidArgument);
  CHECK(error_kind_name(ErrorKind::kContextFull) == "context full");
}

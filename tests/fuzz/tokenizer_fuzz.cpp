// libFuzzer target for the tokenizer. The first byte picks what the rest is:
//   even: a tokenizer.json, which must load or raise gemma4::Error; when it loads, a few
//         strings are encoded and decoded and arbitrary ids decoded (Error for unknown ids);
//   odd:  text for a fixed Gemma-shaped tokenizer, which must encode or raise Error
//         (invalid UTF-8), and decode back to itself when it holds no literal "▁".
// Never a crash, a hang, or an unbounded allocation.

#include <cstdint>
#include <string_view>

#include "../small_tokenizer.hpp"
#include "gemma4/tokenizer/stream_decoder.hpp"

namespace {

void exercise(const gemma4::Tokenizer& tok, std::string_view seed_text) {
  for (const std::string_view text : {std::string_view("a b  c\n\n<|turn>x"), std::string_view("h\xC3\xA9llo \xF0\x9F\x98\x80"), seed_text}) {
    try {
      for (const bool special : {true, false}) {
        const std::vector<int> ids = tok.encode(text, {.add_bos = false, .match_special_tokens = special});
        (void)tok.decode(ids, {.skip_special = special});
      }
    } catch (const gemma4::Error&) {
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    try {
      const gemma4::Tokenizer tok = gemma4::Tokenizer::from_json_text(rest);
      exercise(tok, rest.substr(0, 64));
      std::vector<int> ids;
      for (std::size_t i = 0; i + 1 < size && i < 64; i += 2) ids.push_back((data[i] << 8 | data[i + 1]) % (tok.vocab_size() + 2) - 1);
      gemma4::StreamDecoder stream(tok);
      for (const int id : ids) (void)stream.push(id);
    } catch (const gemma4::Error&) {
    }
    return 0;
  }
  static const gemma4::Tokenizer fixed = gemma4::Tokenizer::from_json_text(gemma4::test::small_tokenizer_json().dump());
  std::vector<int> ids;
  try {
    ids = fixed.encode(rest, {.add_bos = false});
  } catch (const gemma4::Error&) {
    if (gemma4::utf8::is_valid(rest)) __builtin_trap();  // valid text must encode
    return 0;
  }
  if (rest.find("\xE2\x96\x81") == std::string_view::npos && fixed.decode(ids) != rest) __builtin_trap();
  return 0;
}

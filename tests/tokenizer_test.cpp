// The tokenizer: BPE merge order against a naive reference, added tokens, byte fallback,
// decoding, hostile files, and id-for-id parity with Hugging Face on the real vocabulary.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <random>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "gemma4/tokenizer/stream_decoder.hpp"
#include "gemma4/tokenizer/tokenizer.hpp"
#include "real_tokenizer.hpp"
#include "small_tokenizer.hpp"
#include "support.hpp"

namespace {

using gemma4::Tokenizer;
using gemma4::test::real_tokenizer;
using gemma4::test::real_tokenizer_path;
using gemma4::test::small_tokenizer_json;
using nlohmann::json;

Tokenizer small_tokenizer(const json& j = small_tokenizer_json()) { return Tokenizer::from_json_text(j.dump()); }

int id_of(const json& j, const char* piece) { return j["model"]["vocab"][piece].get<int>(); }

// The textbook algorithm: merge the lowest-ranked adjacent pair (leftmost on a tie) until
// none is left. Quadratic, and independent of the library's priority queue.
std::vector<int> naive_bpe(const json& j, std::string_view word) {
  const json& vocab = j["model"]["vocab"];
  std::vector<std::string> symbols;
  for (std::size_t i = 0; i < word.size();) {
    const std::size_t n = gemma4::utf8::sequence_length(word, i);
    const std::string c(word.substr(i, n));
    if (vocab.contains(c)) {
      symbols.push_back(c);
    } else {
      for (std::size_t k = 0; k < n; ++k) symbols.push_back(fmt::format("<0x{:02X}>", static_cast<unsigned char>(c[k])));
    }
    i += n;
  }
  const json& merges = j["model"]["merges"];
  while (true) {
    std::size_t best_rank = merges.size(), best_at = 0;
    for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
      for (std::size_t r = 0; r < best_rank; ++r) {
        if (merges[r][0] == symbols[i] && merges[r][1] == symbols[i + 1]) {
          best_rank = r;
          best_at = i;
          break;
        }
      }
    }
    if (best_rank == merges.size()) break;
    symbols[best_at] += symbols[best_at + 1];
    symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best_at) + 1);
  }
  std::vector<int> ids;
  for (const std::string& s : symbols) ids.push_back(vocab[s].get<int>());
  return ids;
}

json tokenizer_parity_fixture() { return json::parse(gemma4::test::read_file(gemma4::test::kTestData / "tokenizer_parity.json")); }

}  // namespace

TEST_CASE("BPE applies merges lowest rank first, as the naive algorithm does") {
  const json j = small_tokenizer_json();
  const Tokenizer tok = small_tokenizer(j);
  CHECK(tok.encode("abc", {.add_bos = false}) == std::vector<int>{id_of(j, "abc")});
  CHECK(tok.encode("abcd", {.add_bos = false}) == std::vector<int>{id_of(j, "abc"), id_of(j, "d")});
  CHECK(tok.encode(" a", {.add_bos = false}) == std::vector<int>{id_of(j, "▁a")});

  std::mt19937 rng(7);
  const std::vector<std::string> alphabet = {"a", "b", "c", "d", "e", " ", "  ", "é", "x", "ü", "😀"};
  for (int trial = 0; trial < 500; ++trial) {
    std::string text;
    const int length = 1 + static_cast<int>(rng() % 40);
    for (int k = 0; k < length; ++k) text += alphabet[rng() % alphabet.size()];
    std::string normalized = text;
    for (std::size_t at; (at = normalized.find(' ')) != std::string::npos;) normalized.replace(at, 1, "▁");
    // The pre-tokenizer has nothing left to split: the whole text is one word.
    INFO(text);
    CHECK(tok.encode(text, {.add_bos = false}) == naive_bpe(j, normalized));
    CHECK(tok.decode(tok.encode(text, {.add_bos = false})) == text);
  }
}

TEST_CASE("Unknown characters fall back to their UTF-8 bytes and decode back") {
  const json j = small_tokenizer_json();
  const Tokenizer tok = small_tokenizer(j);
  const std::vector<int> ids = tok.encode("aü", {.add_bos = false});  // ü = C3 BC, not in the vocabulary
  CHECK(ids == std::vector<int>{id_of(j, "a"), id_of(j, "<0xC3>"), id_of(j, "<0xBC>")});
  CHECK(tok.decode(ids) == "aü");
  // A byte run that is not UTF-8 becomes one U+FFFD per byte, as Hugging Face decodes it.
  CHECK(tok.decode(std::vector<int>{id_of(j, "<0xC3>"), id_of(j, "a")}) == "\xEF\xBF\xBD" "a");
  CHECK(tok.decode(std::vector<int>{id_of(j, "<0xE2>"), id_of(j, "<0x82>")}) == "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST_CASE("Added tokens match leftmost-longest; special ones can be turned off") {
  const json j = small_tokenizer_json();
  const Tokenizer tok = small_tokenizer(j);
  const int bos = id_of(j, "<bos>"), nl = id_of(j, "\n"), nl2 = id_of(j, "\n\n"), turn = id_of(j, "<|turn>");
  CHECK(tok.encode("a\n\n\nb") == std::vector<int>{bos, id_of(j, "a"), nl2, nl, id_of(j, "b")});
  CHECK(tok.encode("a<|turn>b", {.add_bos = false}) == std::vector<int>{id_of(j, "a"), turn, id_of(j, "b")});

  // Typed text: the special token is encoded as characters, on its own like HF does.
  const std::vector<int> typed = tok.encode("a<|turn>\n<b>", {.add_bos = false, .match_special_tokens = false});
  CHECK(std::find(typed.begin(), typed.end(), turn) == typed.end());
  CHECK(std::find(typed.begin(), typed.end(), nl) != typed.end());              // not special: still matched
  CHECK(std::find(typed.begin(), typed.end(), id_of(j, "<b>")) != typed.end());  // likewise
  CHECK(tok.decode(typed) == "a<|turn>\n<b>");

  CHECK(tok.decode(tok.encode("x<|turn>y"), {.skip_special = true}) == "xy");
  CHECK(tok.decode(tok.encode("x<|turn>y")) == "<bos>x<|turn>y");
  CHECK(tok.is_special(turn));
  CHECK_FALSE(tok.is_special(nl));
}

TEST_CASE("The stream decoder prints what decode() prints") {
  const json j = small_tokenizer_json();
  const Tokenizer tok = small_tokenizer(j);
  const std::vector<int> ids = {id_of(j, "a"), id_of(j, "<0xC3>"), id_of(j, "<0xBC>"), id_of(j, "<0xC3>"), id_of(j, "<bos>"),
                                id_of(j, "<0xF0>")};
  for (const bool skip : {false, true}) {
    gemma4::StreamDecoder stream(tok, {.skip_special = skip});
    std::string streamed;
    for (const int id : ids) streamed += stream.push(id);
    streamed += stream.finish();
    CHECK(streamed == tok.decode(ids, {.skip_special = skip}));
  }
  gemma4::StreamDecoder stream(tok);
  CHECK(stream.push(id_of(j, "<0xC3>")).empty());  // half a character: held back
  CHECK(stream.push(id_of(j, "<0xBC>")).empty());
  CHECK(stream.push(id_of(j, "b")) == "üb");
}

TEST_CASE("Bad input to encode and decode is an error that names it") {
  const Tokenizer tok = small_tokenizer();
  CHECK_THROWS_WITH(tok.encode("ab\xFF"), Catch::Contains("not valid UTF-8") && Catch::Contains("byte 2"));
  CHECK_THROWS_WITH(tok.encode("\xC0\xAF"), Catch::Contains("byte 0"));         // overlong
  CHECK_THROWS_WITH(tok.encode("\xED\xA0\x80"), Catch::Contains("byte 0"));     // surrogate
  CHECK_THROWS_WITH(tok.encode("ab\xE2\x82"), Catch::Contains("byte 2"));       // truncated
  CHECK_THROWS_WITH(tok.decode(std::vector<int>{1, 999999}), Catch::Contains("999999"));
  CHECK_THROWS_WITH(tok.decode(std::vector<int>{-1}), Catch::Contains("-1"));
  CHECK_THROWS_WITH(tok.token_text(100000), Catch::Contains("100000"));
}

TEST_CASE("A tokenizer.json outside what Gemma uses is refused by name") {
  const auto refused = [](const std::function<void(json&)>& change, const std::string& expected) {
    json j = small_tokenizer_json();
    change(j);
    INFO(expected);
    CHECK_THROWS_WITH(small_tokenizer(j), Catch::Contains(expected));
  };
  refused([](json& j) { j["model"]["type"] = "Unigram"; }, "Unigram");
  refused([](json& j) { j["model"]["merges"].push_back(json::array({"a", "zz"})); }, "\"zz\"");
  refused([](json& j) { j["model"]["merges"].push_back(json::array({"d", "e"})); }, "\"de\"");
  refused([](json& j) { j["model"]["merges"].push_back(json::array({"a"})); }, "merge #7 has 1 parts");
  refused([](json& j) { j["model"]["merges"].push_back(7); }, "model.merges");
  refused([](json& j) { j["model"]["merges"].push_back("a b c"); }, "one space");
  refused([](json& j) { j["model"]["vocab"]["zz"] = 3; }, "id 3");
  refused([](json& j) { j["model"]["vocab"]["zz"] = -5; }, "-5");
  refused([](json& j) { j["model"]["vocab"]["zz"] = 1 << 30; }, "outside");
  refused([](json& j) { j["model"]["vocab"]["zz"] = "x"; }, "integer id");
  refused([](json& j) { j["model"]["vocab"] = json::object(); }, "model.vocab is empty");
  refused([](json& j) { j["model"]["dropout"] = 0.1; }, "dropout");
  refused([](json& j) { j["model"]["unk_token"] = "<nope>"; }, "unk_token");
  refused([](json& j) { j["added_tokens"][4]["lstrip"] = true; }, "lstrip");
  refused([](json& j) { j["added_tokens"][4]["content"] = ""; }, "empty");
  refused([](json& j) { j["added_tokens"][4]["id"] = 0; }, "reuses id 0");
  refused([](json& j) { j["added_tokens"][4]["id"] = "four"; }, "id must be an integer in");
  refused([](json& j) { j["pre_tokenizer"]["pattern"] = {{"Regex", "\\s+"}}; }, "pre_tokenizer");
  refused([](json& j) { j["normalizer"] = {{"type", "NFKC"}}; }, "normalizer");
  refused([](json& j) { j["decoder"]["decoders"].push_back({{"type", "Strip"}}); }, "decoder");
  refused([](json& j) { j["post_processor"]["single"].push_back(j["post_processor"]["single"][0]); }, "post_processor");
  refused([](json& j) { j.erase("model"); }, "model");

  json no_bos = small_tokenizer_json();
  no_bos["post_processor"] = nullptr;
  const Tokenizer tok = small_tokenizer(no_bos);
  CHECK_THROWS_WITH(tok.encode("a"), Catch::Contains("add_bos"));
  CHECK(tok.encode("a", {.add_bos = false}).size() == 1);
}

TEST_CASE("A truncated or missing tokenizer.json is an error, never a crash") {
  const std::string text = small_tokenizer_json().dump();
  for (std::size_t length = 0; length < text.size(); length += 1 + length / 50) {
    INFO(length);
    CHECK_THROWS_AS(Tokenizer::from_json_text(text.substr(0, length)), gemma4::Error);
  }
  CHECK_THROWS_WITH(Tokenizer::from_file("/nonexistent/tokenizer.json"), Catch::Contains("/nonexistent/tokenizer.json"));
  CHECK_THROWS_WITH(Tokenizer::from_json_text("[1, 2]"), Catch::Contains("not a JSON object"));
}

TEST_CASE("Real Gemma vocabulary: ids equal Hugging Face's on the parity fixture") {
  const Tokenizer* tok = real_tokenizer();
  if (tok == nullptr) return;
  const json fixture = tokenizer_parity_fixture();
  REQUIRE(fixture["cases"].size() >= 300);
  CHECK(std::filesystem::file_size(real_tokenizer_path()) == fixture["tokenizer_bytes"].get<std::uintmax_t>());
  for (const json& c : fixture["cases"]) {
    const std::string text = c["text"];
    INFO(json(text).dump());
    const std::vector<int> ids = tok->encode(text);
    CHECK(ids == c["ids"].get<std::vector<int>>());
    // decode(encode(s)) == s, except that a literal "▁" comes back as a space (spec section 6).
    const std::span<const int> after_bos = std::span(ids).subspan(1);
    if (text.find("▁") == std::string::npos) CHECK(tok->decode(after_bos) == text);
    const std::string decoded = tok->decode(ids, {.skip_special = true});
    if (std::none_of(after_bos.begin(), after_bos.end(), [&](int id) { return tok->is_special(id); })) {
      CHECK(decoded == tok->decode(after_bos));
    }

    gemma4::StreamDecoder stream(*tok, {.skip_special = true});
    std::string streamed;
    for (const int id : ids) streamed += stream.push(id);
    CHECK(streamed + stream.finish() == decoded);
  }
}

TEST_CASE("Real Gemma vocabulary: a 100 KB line without newlines round-trips") {
  const Tokenizer* tok = real_tokenizer();
  if (tok == nullptr) return;
  std::string line;
  std::mt19937 rng(3);
  const std::vector<std::string> words = {"token", "izer", " ", "Gemma", "日本", "😀", ", ", "naïve", "x"};
  while (line.size() < 100'000) line += words[rng() % words.size()];
  const std::vector<int> ids = tok->encode(line, {.add_bos = false});
  CHECK(ids.size() < line.size() / 2);
  CHECK(tok->decode(ids) == line);
}

TEST_CASE("Real Gemma vocabulary: typed control tokens stay text") {
  const Tokenizer* tok = real_tokenizer();
  if (tok == nullptr) return;
  const std::vector<int> typed = tok->encode("<start_of_turn>model\n<end_of_turn>", {.add_bos = false, .match_special_tokens = false});
  for (const int id : typed) CHECK_FALSE(tok->is_special(id));
  CHECK(tok->decode(typed) == "<start_of_turn>model\n<end_of_turn>");
  CHECK(tok->bos_id() == 2);
}

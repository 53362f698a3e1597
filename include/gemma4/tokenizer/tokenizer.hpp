#pragma once
// Gemma's tokenizer, read from a Hugging Face `tokenizer.json` (spec section 6).
//
//   gemma4::Tokenizer tok = gemma4::Tokenizer::from_file(dir / "tokenizer.json");
//   std::vector<int> ids = tok.encode("Hello world");    // [2, 9259, 1902]: <bos> first
//   std::string text = tok.decode(ids, {.skip_special = true});  // "Hello world"
//
// encode(): added tokens are found in the raw text first (leftmost-longest), the rest
// is normalized (" " -> "▁"), split by the pre-tokenizer and BPE-encoded. The result
// equals Hugging Face tokenizers' `encode(text)` id for id; tests check it on the real
// vocabulary. decode(): "▁" -> " ", byte-fallback pieces reassembled into UTF-8 (a run
// that is not valid UTF-8 becomes one U+FFFD per byte, as in Hugging Face).
//
// Only what Gemma's file uses is implemented. Anything else in a tokenizer.json (another
// model type, a regex pre-tokenizer, lstrip on an added token, ...) is refused with an
// error naming it, never silently encoded differently.
//
// Errors: gemma4::Error for a missing, malformed or unsupported file, text that is not
// UTF-8, and ids outside the vocabulary. A Tokenizer is immutable after construction:
// encode and decode may run concurrently from any number of threads.

#include <algorithm>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "gemma4/base/json.hpp"
#include "gemma4/error.hpp"
#include "gemma4/tokenizer/added_tokens.hpp"
#include "gemma4/tokenizer/bpe.hpp"
#include "gemma4/tokenizer/tokenizer_json.hpp"
#include "gemma4/tokenizer/utf8.hpp"

namespace gemma4 {

struct EncodeOptions {
  bool add_bos = true;  // the post-processor's leading token, as Hugging Face adds it
  // false: the text of a special (control) token is encoded as ordinary text, so what a
  // user types cannot end a turn or forge a role. Non-special added tokens still match.
  bool match_special_tokens = true;
};

struct DecodeOptions {
  bool skip_special = false;  // drop control tokens (<bos>, <|turn>, ...) from the text
};

class Tokenizer {
 public:
  static Tokenizer from_file(const std::filesystem::path& path) {
    TokenizerJson json = read_tokenizer_json(path);
    return Tokenizer(std::move(json), path.string());
  }
  // `source` names the text in error messages.
  static Tokenizer from_json_text(std::string_view text, std::string_view source = "tokenizer.json") {
    return Tokenizer(parse_tokenizer_json(text, source), source);
  }

  // The matchers point into added_: a Tokenizer moves but does not copy.
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;
  Tokenizer(Tokenizer&&) = default;
  Tokenizer& operator=(Tokenizer&&) = default;

  Tokenizer(TokenizerJson json, std::string_view source) {
    try {
      bpe_ = BpeModel(json, source);
      const nlohmann::json& rest = json.rest;
      read_added_tokens(rest.value("added_tokens", nlohmann::json::array()), source);
      read_normalizer(rest.value("normalizer", nlohmann::json()), source);
      read_pre_tokenizer(rest.value("pre_tokenizer", nlohmann::json()), source);
      read_post_processor(rest.value("post_processor", nlohmann::json()), source);
      read_decoder(rest.value("decoder", nlohmann::json()), source);
    } catch (const nlohmann::json::exception& e) {
      fail(ErrorKind::kBadFile, "{}: unexpected structure: {}", source, e.what());
    }
    build_decode_table();
  }

  // Token ids of `text` (UTF-8; anything else is an Error naming the byte offset).
  std::vector<int> encode(std::string_view text, const EncodeOptions& options = {}) const {
    utf8::require_valid(text, "text to encode");
    std::vector<int> ids;
    ids.reserve(text.size() / 3 + 2);
    if (options.add_bos) {
      if (!bos_id_) fail(ErrorKind::kInvalidArgument, "tokenizer.json has no post-processor that adds <bos>; encode with add_bos = false");
      ids.push_back(*bos_id_);
    }
    split_added(raw_matcher_, text, options, ids, [&](std::string_view segment) {
      const std::string normalized = normalize(segment);
      split_added(normalized_matcher_, normalized, options, ids, [&](std::string_view part) {
        for_each_pre_token(part, [&](std::string_view word) { bpe_.encode_word(word, ids); });
      });
    });
    return ids;
  }

  // The text of `ids`; an id outside the vocabulary is an Error naming it.
  std::string decode(std::span<const int> ids, const DecodeOptions& options = {}) const {
    std::string text;
    std::string pending_bytes;
    for (const int id : ids) append_decoded(id, options, text, pending_bytes);
    flush_bytes(text, pending_bytes);
    return text;
  }

  // One past the largest id the tokenizer knows (vocabulary or added token).
  int vocab_size() const { return static_cast<int>(decoded_.size()); }
  // One past the largest id of model.vocab: what a model's embedding must cover.
  int piece_count() const { return bpe_.vocab_size(); }
  std::optional<int> bos_id() const { return bos_id_; }
  bool is_known(int id) const { return id >= 0 && id < vocab_size() && decoded_[id].known; }
  bool is_special(int id) const { return is_known(id) && decoded_[id].special; }
  // The piece or added-token text of `id`, as stored in the file (spaces still "▁").
  std::string_view token_text(int id) const {
    require_known(id);
    if (const AddedToken* t = added_token(id)) return t->content;
    return bpe_.piece(id);
  }
  // The id of the added token whose text is `content` (a control token such as "<|turn>").
  std::optional<int> added_token_id(std::string_view content) const {
    for (const AddedToken& t : added_) {
      if (t.content == content) return t.id;
    }
    return std::nullopt;
  }
  const AddedToken* added_token(int id) const {
    const auto it = added_index_.find(id);
    return it == added_index_.end() ? nullptr : &added_[it->second];
  }

  // Decoding one id at a time (StreamDecoder): appends to `text`, or holds a byte-fallback
  // byte in `pending_bytes` until the run of bytes ends.
  void append_decoded(int id, const DecodeOptions& options, std::string& text, std::string& pending_bytes) const {
    require_known(id);
    const DecodedToken& token = decoded_[id];
    if (token.byte >= 0) {
      pending_bytes.push_back(static_cast<char>(token.byte));
      return;
    }
    flush_bytes(text, pending_bytes);
    if (options.skip_special && token.special) return;
    text.append(decoded_text_, token.offset, token.length);
  }
  // Ends a run of byte-fallback bytes: valid UTF-8 as is, otherwise U+FFFD per byte.
  static void flush_bytes(std::string& text, std::string& pending_bytes) {
    if (utf8::is_valid(pending_bytes)) {
      text += pending_bytes;
    } else {
      for (std::size_t i = 0; i < pending_bytes.size(); ++i) text += "\xEF\xBF\xBD";
    }
    pending_bytes.clear();
  }

 private:
  struct Replace {
    std::string from;
    std::string to;
  };
  struct DecodedToken {
    std::uint32_t offset = 0;
    std::uint32_t length = 0;
    int byte = -1;  // the byte of a "<0xXX>" piece
    bool special = false;
    bool known = false;
  };

  void require_known(int id) const {
    if (!is_known(id)) fail(ErrorKind::kInvalidArgument, "token id {} is not in the vocabulary (ids 0..{})", id, vocab_size() - 1);
  }

  static bool is_type(const nlohmann::json& j, std::string_view type) {
    return j.is_object() && j.value("type", std::string()) == type;
  }

  // A Replace step with a plain-string pattern, as Gemma's normalizer and decoder use.
  static Replace read_replace(const nlohmann::json& j, std::string_view where, std::string_view source) {
    if (!is_type(j, "Replace") || !j.contains("pattern") || !j["pattern"].contains("String") || !j.contains("content")) {
      fail(ErrorKind::kUnsupported, "{}: {} {} is not supported (Gemma's tokenizer uses Replace with a plain string pattern)", source, where, j.dump());
    }
    Replace r{j["pattern"]["String"].get<std::string>(), j["content"].get<std::string>()};
    if (r.from.empty()) fail(ErrorKind::kBadFile, "{}: {} replaces the empty string", source, where);
    return r;
  }

  void read_added_tokens(const nlohmann::json& list, std::string_view source) {
    if (!list.is_array()) fail(ErrorKind::kBadFile, "{}: added_tokens is not a list", source);
    for (const nlohmann::json& t : list) {
      const std::string where = fmt::format("{}: added token {}", source, t.dump());
      AddedToken token{json_integer<int>(t.at("id"), where + ": id"), t.at("content").get<std::string>(), t.value("special", false),
                       t.value("normalized", false)};
      if (token.id < 0 || token.id >= BpeModel::kMaxId) fail(ErrorKind::kBadFile, "{} has an id outside 0..{}", where, BpeModel::kMaxId - 1);
      if (token.content.empty()) fail(ErrorKind::kBadFile, "{} is empty", where);
      utf8::require_valid(token.content, where);
      for (const char* flag : {"lstrip", "rstrip", "single_word"}) {
        if (t.value(flag, false)) fail(ErrorKind::kUnsupported, "{}: {} = true is not supported (Gemma's tokens leave it false)", where, flag);
      }
      if (!added_index_.emplace(token.id, added_.size()).second) fail(ErrorKind::kBadFile, "{} reuses id {}", where, token.id);
      added_.push_back(std::move(token));
    }
    std::vector<const AddedToken*> raw, normalized;
    for (const AddedToken& t : added_) (t.normalized ? normalized : raw).push_back(&t);
    raw_matcher_ = AddedTokenMatcher(raw);
    normalized_matcher_ = AddedTokenMatcher(normalized);
  }

  void read_normalizer(const nlohmann::json& j, std::string_view source) {
    if (j.is_null()) return;
    if (is_type(j, "Sequence")) {
      for (const nlohmann::json& step : j.at("normalizers")) normalizer_.push_back(read_replace(step, "normalizer", source));
    } else {
      normalizer_.push_back(read_replace(j, "normalizer", source));
    }
  }

  void read_pre_tokenizer(const nlohmann::json& j, std::string_view source) {
    if (j.is_null()) return;
    const bool supported = is_type(j, "Split") && j.contains("pattern") && j["pattern"].contains("String") &&
                           j.value("behavior", std::string()) == "MergedWithPrevious" && !j.value("invert", false);
    if (!supported) {
      fail(ErrorKind::kUnsupported, "{}: pre_tokenizer {} is not supported (Gemma's tokenizer splits on a plain string, merged with the previous piece)",
           source, j.dump());
    }
    split_after_ = j["pattern"]["String"].get<std::string>();
    if (split_after_.empty()) fail(ErrorKind::kBadFile, "{}: pre_tokenizer splits on the empty string", source);
  }

  void read_post_processor(const nlohmann::json& j, std::string_view source) {
    if (j.is_null()) return;
    const auto unsupported = [&] {
      fail(ErrorKind::kUnsupported, "{}: post_processor {} is not supported (Gemma's tokenizer prepends at most one <bos>)", source, j.dump());
    };
    if (!is_type(j, "TemplateProcessing")) unsupported();
    const nlohmann::json& single = j.at("single");
    const auto is_sequence = [](const nlohmann::json& item) { return item.contains("Sequence"); };
    if (single.size() == 1 && is_sequence(single[0])) return;
    if (single.size() != 2 || !single[0].contains("SpecialToken") || !is_sequence(single[1])) unsupported();
    const std::string name = single[0]["SpecialToken"].at("id").get<std::string>();
    const nlohmann::json& ids = j.at("special_tokens").at(name).at("ids");
    if (ids.size() != 1) unsupported();
    bos_id_ = json_integer<int>(ids[0], fmt::format("{}: post_processor's <bos> id", source));
    if (*bos_id_ < 0) fail(ErrorKind::kBadFile, "{}: post_processor's <bos> id {} is negative", source, *bos_id_);
  }

  void read_decoder(const nlohmann::json& j, std::string_view source) {
    if (j.is_null()) return;
    const auto unsupported = [&] {
      fail(ErrorKind::kUnsupported, "{}: decoder {} is not supported (Gemma's is Replace, ByteFallback, Fuse, in that order)", source, j.dump());
    };
    const nlohmann::json steps = is_type(j, "Sequence") ? j.at("decoders") : nlohmann::json::array({j});
    // Replace steps, then ByteFallback and Fuse: each token's text is final before bytes fuse.
    bool after_replace = false;
    for (const nlohmann::json& step : steps) {
      if (is_type(step, "Replace")) {
        if (after_replace) unsupported();
        decoder_replaces_.push_back(read_replace(step, "decoder", source));
      } else if (is_type(step, "ByteFallback")) {
        byte_fallback_decoding_ = true;
        after_replace = true;
      } else if (is_type(step, "Fuse")) {
        after_replace = true;
      } else {
        unsupported();
      }
    }
  }

  void build_decode_table() {
    int size = bpe_.vocab_size();
    for (const AddedToken& t : added_) size = std::max(size, t.id + 1);
    decoded_.assign(static_cast<std::size_t>(size), DecodedToken{});
    const auto store = [&](int id, std::string_view text, bool special) {
      DecodedToken& d = decoded_[id];
      d = {static_cast<std::uint32_t>(decoded_text_.size()), 0, byte_of(text), special, true};
      append_replaced(decoder_replaces_, text, decoded_text_);
      d.length = static_cast<std::uint32_t>(decoded_text_.size() - d.offset);
    };
    for (int id = 0; id < bpe_.vocab_size(); ++id) {
      if (bpe_.has_piece(id)) store(id, bpe_.piece(id), false);
    }
    for (const AddedToken& t : added_) store(t.id, t.content, t.special);  // added text wins, as in HF
  }

  // The byte of a "<0xXX>" token when byte fallback decoding is on, else -1.
  int byte_of(std::string_view text) const {
    if (!byte_fallback_decoding_ || text.size() != 6 || !text.starts_with("<0x") || text.back() != '>') return -1;
    int value = 0;
    for (const char c : text.substr(3, 2)) {
      const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (digit < 0) return -1;
      value = value * 16 + digit;
    }
    return value;
  }

  // Appends `text` with every replacement applied, in order, to `out`.
  static void append_replaced(const std::vector<Replace>& replaces, std::string_view text, std::string& out) {
    const auto untouched = [&](const Replace& r) { return text.find(r.from) == std::string_view::npos; };
    if (std::all_of(replaces.begin(), replaces.end(), untouched)) {  // the common case, without a copy
      out += text;
      return;
    }
    out += apply(replaces, text);
  }

  static std::string apply(const std::vector<Replace>& replaces, std::string_view text) {
    std::string out(text);
    for (const Replace& r : replaces) {
      std::string next;
      next.reserve(out.size());
      std::size_t at = 0;
      for (std::size_t hit; (hit = out.find(r.from, at)) != std::string::npos; at = hit + r.from.size()) {
        next.append(out, at, hit - at).append(r.to);
      }
      next.append(out, at);
      out = std::move(next);
    }
    return out;
  }

  std::string normalize(std::string_view text) const { return apply(normalizer_, text); }

  // Calls emit(word) for each pre-token: pieces that end right after each `split_after_`.
  template <typename Emit>
  void for_each_pre_token(std::string_view text, Emit&& emit) const {
    if (split_after_.empty()) {
      if (!text.empty()) emit(text);
      return;
    }
    std::size_t begin = 0;
    for (std::size_t hit; (hit = text.find(split_after_, begin)) != std::string_view::npos;) {
      emit(text.substr(begin, hit + split_after_.size() - begin));
      begin = hit + split_after_.size();
    }
    if (begin < text.size()) emit(text.substr(begin));
  }

  // Cuts `text` at added tokens: their ids go to `ids`, the text between to encode_rest.
  // A special token that may not match is encoded as text, but still on its own, as
  // Hugging Face does with encode_special_tokens.
  template <typename EncodeRest>
  static void split_added(const AddedTokenMatcher& matcher, std::string_view text, const EncodeOptions& options,
                          std::vector<int>& ids, EncodeRest&& encode_rest) {
    std::size_t at = 0;
    while (at < text.size()) {
      const AddedTokenMatch match = matcher.find(text, at);
      if (match.token == nullptr) break;
      if (match.begin > at) encode_rest(text.substr(at, match.begin - at));
      if (match.token->special && !options.match_special_tokens) {
        encode_rest(text.substr(match.begin, match.end - match.begin));
      } else {
        ids.push_back(match.token->id);
      }
      at = match.end;
    }
    if (at < text.size()) encode_rest(text.substr(at));
  }

  BpeModel bpe_;
  std::vector<AddedToken> added_;
  std::unordered_map<int, std::size_t> added_index_;  // id -> index in added_
  AddedTokenMatcher raw_matcher_;         // added tokens with normalized = false
  AddedTokenMatcher normalized_matcher_;  // added tokens with normalized = true
  std::vector<Replace> normalizer_;
  std::string split_after_;  // pre-tokenizer pattern; empty: no split
  std::optional<int> bos_id_;
  std::vector<Replace> decoder_replaces_;
  bool byte_fallback_decoding_ = false;
  std::string decoded_text_;            // every token's decoded text, back to back
  std::vector<DecodedToken> decoded_;   // [vocab_size]
};

// The tokenizer of a model directory (its tokenizer.json).
inline Tokenizer load_tokenizer(const std::filesystem::path& model_dir) {
  const std::filesystem::path path = model_dir / "tokenizer.json";
  if (!std::filesystem::exists(path)) {
    fail(ErrorKind::kMissingFile, "{}: no tokenizer.json; a model directory needs the tokenizer.json its checkpoint was published with",
         model_dir.string());
  }
  return Tokenizer::from_file(path);
}

}  // namespace gemma4

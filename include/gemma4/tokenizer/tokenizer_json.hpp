#pragma once
// Reads a Hugging Face `tokenizer.json` into plain tables. The two big tables (262144
// vocabulary entries, 514906 merges for Gemma) are streamed straight out of nlohmann's
// SAX parser: building a DOM for them costs several times more (gemma4_bench_tokenizer's load).
// Every other section is small and kept as JSON for the tokenizer to interpret.

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "gemma4/error.hpp"
#include "gemma4/base/mapped_file.hpp"

namespace gemma4 {

// Many short strings in one buffer: 1.3 million separate std::strings would cost more
// in allocation than the parse itself.
class StringTable {
 public:
  // Reserving what a file of `text_bytes` could hold costs address space, not memory:
  // untouched pages are never faulted in, and growth never copies.
  void reserve_for(std::size_t text_bytes, std::size_t min_bytes_per_string) {
    bytes_.reserve(text_bytes);
    ends_.reserve(text_bytes / min_bytes_per_string);
  }
  void push_back(std::string_view s) {
    if (bytes_.size() + s.size() > UINT32_MAX) fail(ErrorKind::kBadFile, "tokenizer.json: more than 4 GB of strings");
    bytes_ += s;
    ends_.push_back(static_cast<std::uint32_t>(bytes_.size()));
  }
  std::size_t total_bytes() const { return bytes_.size(); }
  std::size_t size() const { return ends_.size(); }
  std::string_view operator[](std::size_t i) const {
    const std::size_t begin = i == 0 ? 0 : ends_[i - 1];
    return std::string_view(bytes_).substr(begin, ends_[i] - begin);
  }

 private:
  std::string bytes_;
  std::vector<std::uint32_t> ends_;
};

struct TokenizerJson {
  StringTable vocab_pieces;         // model.vocab keys, in file order
  std::vector<long long> vocab_ids;  // model.vocab values
  StringTable merge_parts;          // model.merges: left and right piece of each, by rank
  nlohmann::json rest;              // the whole file except model.vocab and model.merges
};

namespace detail {

// Builds `rest` like nlohmann's DOM parser, except under model.vocab and model.merges.
class TokenizerJsonSax final : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit TokenizerJsonSax(TokenizerJson& out) : out_(out) {}

  bool null() override { return value(nullptr); }
  bool boolean(bool v) override { return value(v); }
  bool number_integer(number_integer_t v) override { return table_ == Table::kVocab ? vocab_id(v) : value(v); }
  bool number_unsigned(number_unsigned_t v) override {
    return table_ == Table::kVocab ? vocab_id(v > number_unsigned_t(1) << 62 ? -1 : static_cast<long long>(v)) : value(v);
  }
  bool number_float(number_float_t v, const string_t&) override { return value(v); }
  bool binary(binary_t&) override { return error("binary values are not JSON"); }

  bool string(string_t& v) override {
    if (table_ == Table::kMerges) return merge_part(v);
    return value(std::move(v));
  }

  bool key(string_t& k) override {
    if (table_ == Table::kVocab) {
      pending_piece_ = std::move(k);
      return true;
    }
    if (table_ != Table::kNone) return error("model.merges holds an object");
    key_ = std::move(k);
    return true;
  }

  bool start_object(std::size_t) override {
    if (table_ == Table::kMerges) return error("model.merges holds an object");
    if (table_ == Table::kVocab) return error("model.vocab maps a piece to an object, not an id");
    if (entering("vocab")) {
      table_ = Table::kVocab;
      return true;
    }
    return open(nlohmann::json::object());
  }
  bool end_object() override {
    if (table_ == Table::kVocab) {
      table_ = Table::kNone;
      return true;
    }
    stack_.pop_back();
    return true;
  }

  bool start_array(std::size_t) override {
    if (table_ == Table::kVocab) return error("model.vocab maps a piece to an array, not an id");
    if (table_ == Table::kMerges) {
      if (in_pair_) return error("model.merges holds a nested array");
      in_pair_ = true;
      pair_parts_ = 0;
      return true;
    }
    if (entering("merges")) {
      table_ = Table::kMerges;
      return true;
    }
    return open(nlohmann::json::array());
  }
  bool end_array() override {
    if (table_ == Table::kMerges) {
      if (!in_pair_) {
        table_ = Table::kNone;
        return true;
      }
      in_pair_ = false;
      if (pair_parts_ != 2) return error(fmt::format("merge #{} has {} parts, not 2", merge_count(), pair_parts_));
      return true;
    }
    stack_.pop_back();
    return true;
  }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) override {
    return error(fmt::format("not valid JSON at byte {}: {}", position, e.what()));
  }

  const std::string& error_message() const { return error_; }

 private:
  enum class Table { kNone, kVocab, kMerges };

  bool error(std::string message) {
    if (error_.empty()) error_ = std::move(message);
    return false;
  }

  // True when the next container is model.<name> (the only place the tables live).
  bool entering(std::string_view name) const {
    return stack_.size() == 2 && key_ == name && stack_[0]->contains("model") && stack_[1] == &(*stack_[0])["model"];
  }

  nlohmann::json* place(nlohmann::json&& v) {
    if (stack_.empty()) {
      out_.rest = std::move(v);
      return &out_.rest;
    }
    nlohmann::json& parent = *stack_.back();
    if (parent.is_object()) {
      nlohmann::json& slot = parent[key_];
      slot = std::move(v);
      return &slot;
    }
    parent.push_back(std::move(v));
    return &parent.back();
  }
  bool value(nlohmann::json&& v) {
    if (table_ == Table::kVocab) return error("model.vocab maps a piece to something other than an integer id");
    if (table_ == Table::kMerges) return error("model.merges holds something other than strings");
    place(std::move(v));
    return true;
  }
  bool open(nlohmann::json&& container) {
    stack_.push_back(place(std::move(container)));
    return true;
  }

  bool vocab_id(long long id) {
    out_.vocab_pieces.push_back(pending_piece_);
    out_.vocab_ids.push_back(id);
    return true;
  }

  std::size_t merge_count() const { return out_.merge_parts.size() / 2; }

  // A merge is ["a", "b"] (current format) or "a b" (older files).
  bool merge_part(const std::string& s) {
    if (in_pair_) {
      if (++pair_parts_ <= 2) out_.merge_parts.push_back(s);
      return true;
    }
    const std::size_t space = s.find(' ');
    if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
      return error(fmt::format("merge #{} \"{}\" is not two pieces separated by one space", merge_count(), s));
    }
    out_.merge_parts.push_back(std::string_view(s).substr(0, space));
    out_.merge_parts.push_back(std::string_view(s).substr(space + 1));
    return true;
  }

  TokenizerJson& out_;
  std::vector<nlohmann::json*> stack_;
  std::string key_;
  std::string pending_piece_;
  Table table_ = Table::kNone;
  bool in_pair_ = false;
  std::size_t pair_parts_ = 0;
  std::string error_;
};

}  // namespace detail

// Parses tokenizer.json text; `source` names it in errors.
inline TokenizerJson parse_tokenizer_json(std::string_view text, std::string_view source) {
  TokenizerJson out;
  out.vocab_pieces.reserve_for(text.size(), /*min_bytes_per_string=*/6);  // "a":1,
  out.vocab_ids.reserve(text.size() / 6);
  out.merge_parts.reserve_for(text.size(), /*min_bytes_per_string=*/4);   // "a",
  detail::TokenizerJsonSax sax(out);
  if (!nlohmann::json::sax_parse(text, &sax) || !sax.error_message().empty()) {
    fail(ErrorKind::kBadFile, "{}: {}", source, sax.error_message().empty() ? "not valid JSON" : sax.error_message());
  }
  if (!out.rest.is_object()) fail(ErrorKind::kBadFile, "{}: not a JSON object", source);
  return out;
}

inline TokenizerJson read_tokenizer_json(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) fail(ErrorKind::kMissingFile, "{}: missing", path.string());
  const MappedFile file(path);
  advise(file.bytes(), MADV_SEQUENTIAL);
  const std::string_view text(reinterpret_cast<const char*>(file.bytes().data()), file.bytes().size());
  return parse_tokenizer_json(text, path.string());
}

}  // namespace gemma4

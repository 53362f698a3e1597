#pragma once
// The BPE model of a tokenizer.json: vocabulary, ranked merges, byte fallback.
//
// Gemma's text reaches the model as one word per line (spec section 6), so a word can
// be 100 KB long. Merging uses a priority queue of candidate pairs (lowest rank first,
// then leftmost), O(n log n) per word, and applies merges in exactly the order Hugging
// Face tokenizers does, stale queue entries included, so the ids agree.

#include <array>
#include <cstdint>
#include <queue>
#include <string>
#include <string_view>
#include <optional>
#include <vector>

#include "gemma4/detail/flat_map.hpp"
#include "gemma4/error.hpp"
#include "gemma4/tokenizer/tokenizer_json.hpp"
#include "gemma4/tokenizer/utf8.hpp"

namespace gemma4 {

class BpeModel {
 public:
  // Ids above this are refused: no real vocabulary comes near, and it bounds the tables.
  static constexpr long long kMaxId = 1 << 24;

  BpeModel() = default;

  // Takes model.vocab and model.merges out of `json`; `source` names the file in errors.
  BpeModel(TokenizerJson& json, std::string_view source) {
    const nlohmann::json& model = json.rest.contains("model") ? json.rest["model"] : nlohmann::json();
    check_options(model, source);
    read_vocab(json, source);
    const PieceIndex ids(*this, source);
    read_merges(json.merge_parts, ids, source);
    find_special_pieces(model, ids, source);
    json.vocab_pieces = {};
    json.vocab_ids = {};
    json.merge_parts = {};
  }

  // One past the largest id in model.vocab.
  int vocab_size() const { return static_cast<int>(piece_spans_.size()); }
  bool has_piece(int id) const { return id >= 0 && id < vocab_size() && piece_spans_[id].present; }
  std::string_view piece(int id) const {
    const PieceSpan& s = piece_spans_[id];
    return std::string_view(pieces_).substr(s.offset, s.length);
  }

  // Appends the ids of one (normalized, valid UTF-8) word to `out`.
  void encode_word(std::string_view word, std::vector<int>& out) const {
    std::vector<Symbol> symbols = initial_symbols(word);
    merge_all(symbols);
    for (int i = symbols.empty() ? -1 : 0; i != -1; i = symbols[i].next) out.push_back(symbols[i].id);
  }

 private:
  struct PieceSpan {
    std::uint32_t offset = 0;
    std::uint32_t length = 0;
    bool present = false;
  };
  struct MergeRule {  // model.merges[rank]
    int left;
    int right;
    int merged;
  };
  // A doubly linked list over the word; a merged-away symbol keeps length 0.
  struct Symbol {
    int id;
    int prev;
    int next;
    int length;
  };
  // A queued merge: rank in the high half, position in the low half, so that one integer
  // comparison orders the queue as HF does (lowest rank, then leftmost).
  using Candidate = std::uint64_t;
  static Candidate candidate(int rank, int position) { return std::uint64_t(std::uint32_t(rank)) << 32 | std::uint32_t(position); }

  // piece -> id, for load time. Keyed by a 64-bit hash and checked against the piece,
  // so a collision is caught at construction instead of mapping a piece wrongly.
  class PieceIndex {
   public:
    PieceIndex(const BpeModel& model, std::string_view source) : model_(model), map_(model.piece_spans_.size()) {
      constexpr int kBatch = 32;  // prefetch a batch of slots, then insert (see read_merges)
      std::array<std::uint64_t, kBatch> hashes;
      for (int first = 0; first < model.vocab_size(); first += kBatch) {
        const int n = std::min(kBatch, model.vocab_size() - first);
        for (int k = 0; k < n; ++k) {
          hashes[k] = model.has_piece(first + k) ? hash(model.piece(first + k)) : 0;
          map_.prefetch(hashes[k]);
        }
        for (int k = 0; k < n; ++k) {
          const int id = first + k;
          if (!model.has_piece(id)) continue;
          if (const int* other = map_.insert_if_absent(hashes[k], id)) {
            const std::string_view piece = model.piece(id);
            if (model.piece(*other) == piece) fail(ErrorKind::kBadFile, "{}: model.vocab lists \"{}\" twice (ids {} and {})", source, piece, *other, id);
            fail(ErrorKind::kBadFile, "{}: pieces \"{}\" and \"{}\" share a 64-bit hash; cannot index them", source, model.piece(*other), piece);
          }
        }
      }
    }
    // The id of prefix + suffix, whose hash is `h`.
    std::optional<int> find(std::string_view prefix, std::uint64_t h, std::string_view suffix = {}) const {
      const int* id = map_.find(h);
      if (id == nullptr) return std::nullopt;
      const std::string_view piece = model_.piece(*id);
      if (piece.size() != prefix.size() + suffix.size() || !piece.starts_with(prefix) || !piece.ends_with(suffix)) return std::nullopt;
      return *id;
    }
    std::optional<int> find(std::string_view piece) const { return find(piece, hash(piece)); }
    void prefetch(std::uint64_t h) const { map_.prefetch(h); }
    template <typename F>
    void for_each(F&& f) const {
      for (int id = 0; id < model_.vocab_size(); ++id) {
        if (model_.has_piece(id)) f(model_.piece(id), id);
      }
    }

    // FNV-1a; hash(b, hash(a)) is the hash of a + b.
    static std::uint64_t hash(std::string_view s, std::uint64_t h = 0xcbf29ce484222325ull) {
      for (const char c : s) h = (h ^ static_cast<std::uint8_t>(c)) * 0x100000001b3ull;
      return h;
    }

   private:
    const BpeModel& model_;
    detail::FlatMap<int> map_;
  };

  static std::uint64_t pair_key(int a, int b) { return std::uint64_t(std::uint32_t(a)) << 32 | std::uint32_t(b); }

  static void check_options(const nlohmann::json& model, std::string_view source) {
    if (!model.is_object()) fail(ErrorKind::kBadFile, "{}: no \"model\" object", source);
    const auto type = model.value("type", std::string("BPE"));
    if (type != "BPE") fail(ErrorKind::kUnsupported, "{}: model.type is \"{}\"; only BPE (Gemma's tokenizer) is supported", source, type);
    const auto unset = [&](const char* key) {
      return !model.contains(key) || model[key].is_null() || (model[key].is_string() && model[key].get<std::string>().empty()) ||
             (model[key].is_boolean() && !model[key].get<bool>());
    };
    for (const char* key : {"dropout", "continuing_subword_prefix", "end_of_word_suffix", "ignore_merges"}) {
      if (!unset(key)) fail(ErrorKind::kUnsupported, "{}: model.{} = {} is not supported (Gemma's tokenizer leaves it unset)", source, key, model[key].dump());
    }
  }

  void read_vocab(const TokenizerJson& json, std::string_view source) {
    long long max_id = -1;
    for (std::size_t i = 0; i < json.vocab_ids.size(); ++i) {
      const long long id = json.vocab_ids[i];
      if (id < 0 || id >= kMaxId) fail(ErrorKind::kBadFile, "{}: model.vocab gives \"{}\" the id {}, outside 0..{}", source, json.vocab_pieces[i], id, kMaxId - 1);
      max_id = std::max(max_id, id);
    }
    if (max_id < 0) fail(ErrorKind::kBadFile, "{}: model.vocab is empty", source);
    piece_spans_.assign(static_cast<std::size_t>(max_id + 1), PieceSpan{});
    pieces_.reserve(json.vocab_pieces.total_bytes());
    for (std::size_t i = 0; i < json.vocab_ids.size(); ++i) {
      const int id = static_cast<int>(json.vocab_ids[i]);
      const std::string_view piece = json.vocab_pieces[i];
      PieceSpan& span = piece_spans_[static_cast<std::size_t>(id)];
      if (span.present) fail(ErrorKind::kBadFile, "{}: model.vocab gives the id {} to both \"{}\" and \"{}\"", source, id, this->piece(id), piece);
      if (piece.empty()) fail(ErrorKind::kBadFile, "{}: model.vocab has an empty piece (id {})", source, id);
      utf8::require_valid(piece, fmt::format("{}: model.vocab piece with id {}", source, id));
      span = {static_cast<std::uint32_t>(pieces_.size()), static_cast<std::uint32_t>(piece.size()), true};
      pieces_ += piece;
    }
  }

  // Resolves merges in batches: the hash tables are far larger than the caches, so each
  // batch first prefetches all its slots and then reads them, overlapping the misses.
  void read_merges(const StringTable& parts, const PieceIndex& ids, std::string_view source) {
    const std::size_t count = parts.size() / 2;
    merges_ = detail::FlatMap<int>(count);
    rules_.resize(count);
    constexpr std::size_t kBatch = 32;
    struct Lookup {
      std::string_view left, right;
      std::uint64_t left_hash, right_hash, merged_hash;
      std::uint64_t key;
    };
    std::array<Lookup, kBatch> batch;
    for (std::size_t first = 0; first < count; first += kBatch) {
      const std::size_t n = std::min(kBatch, count - first);
      for (std::size_t k = 0; k < n; ++k) {
        Lookup& l = batch[k];
        l.left = parts[2 * (first + k)];
        l.right = parts[2 * (first + k) + 1];
        l.left_hash = PieceIndex::hash(l.left);
        l.right_hash = PieceIndex::hash(l.right);
        l.merged_hash = PieceIndex::hash(l.right, l.left_hash);
        ids.prefetch(l.left_hash);
        ids.prefetch(l.right_hash);
        ids.prefetch(l.merged_hash);
      }
      const auto id_of = [&](std::string_view piece, std::uint64_t hash, std::size_t rank, std::string_view suffix = {}) {
        const std::optional<int> id = ids.find(piece, hash, suffix);
        if (!id) fail(ErrorKind::kBadFile, "{}: merge #{} uses or makes \"{}{}\", which is not in model.vocab", source, rank, piece, suffix);
        return *id;
      };
      for (std::size_t k = 0; k < n; ++k) {
        Lookup& l = batch[k];
        l.key = pair_key(id_of(l.left, l.left_hash, first + k), id_of(l.right, l.right_hash, first + k));
        merges_.prefetch(l.key);
      }
      for (std::size_t k = 0; k < n; ++k) {
        const Lookup& l = batch[k];
        const int merged = id_of(l.left, l.merged_hash, first + k, l.right);
        rules_[first + k] = MergeRule{static_cast<int>(l.key >> 32), static_cast<int>(l.key & 0xFFFFFFFF), merged};
        merges_.insert_or_assign(l.key, static_cast<int>(first + k));  // a repeated pair: the later rank wins, as in HF
      }
    }
  }

  void find_special_pieces(const nlohmann::json& model, const PieceIndex& ids, std::string_view source) {
    byte_fallback_ = model.value("byte_fallback", false);
    fuse_unk_ = model.value("fuse_unk", false);
    byte_ids_.fill(-1);
    for (int b = 0; b < 256; ++b) byte_ids_[b] = ids.find(fmt::format("<0x{:02X}>", b)).value_or(-1);
    if (model.contains("unk_token") && !model["unk_token"].is_null()) {
      const auto& unk = model["unk_token"];
      const std::optional<int> id = unk.is_string() ? ids.find(unk.get<std::string>()) : std::nullopt;
      if (!id) fail(ErrorKind::kBadFile, "{}: model.unk_token {} is not in model.vocab", source, unk.dump());
      unk_id_ = *id;
    }
    // Single characters, for the first step of every word.
    std::size_t count = 0;
    ids.for_each([&](std::string_view piece, int) { count += utf8::sequence_length(piece, 0) == piece.size(); });
    chars_ = detail::FlatMap<int>(count);
    ids.for_each([&](std::string_view piece, int id) {
      const std::size_t n = utf8::sequence_length(piece, 0);
      if (n == piece.size()) chars_.insert_or_assign(utf8::decode(piece, 0, n), id);
    });
  }

  std::vector<Symbol> initial_symbols(std::string_view word) const {
    std::vector<Symbol> symbols;
    symbols.reserve(word.size());
    const auto add = [&](int id, int length) {
      const int index = static_cast<int>(symbols.size());
      if (index > 0) symbols.back().next = index;
      symbols.push_back(Symbol{id, index - 1, -1, length});
    };
    bool last_was_unk = false;
    for (std::size_t i = 0; i < word.size();) {
      const std::size_t n = utf8::sequence_length(word, i);
      const char32_t c = utf8::decode(word, i, n);
      if (const int* id = chars_.find(c)) {
        add(*id, static_cast<int>(n));
        last_was_unk = false;
      } else if (byte_fallback_ && all_bytes_known(word.substr(i, n))) {
        for (std::size_t k = 0; k < n; ++k) add(byte_ids_[static_cast<std::uint8_t>(word[i + k])], 1);
        last_was_unk = false;
      } else if (unk_id_ >= 0) {
        if (fuse_unk_ && last_was_unk) {
          symbols.back().length += static_cast<int>(n);
        } else {
          add(unk_id_, static_cast<int>(n));
        }
        last_was_unk = true;
      } else {
        fail(ErrorKind::kUnsupported, "character U+{:04X} is not in the vocabulary, and the tokenizer has neither byte fallback nor an unk token",
             static_cast<std::uint32_t>(c));
      }
      i += n;
    }
    return symbols;
  }

  bool all_bytes_known(std::string_view bytes) const {
    for (const char b : bytes) {
      if (byte_ids_[static_cast<std::uint8_t>(b)] < 0) return false;
    }
    return true;
  }


  void merge_all(std::vector<Symbol>& symbols) const {
    std::vector<Candidate> storage;
    storage.reserve(symbols.size());
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue(std::greater<>(), std::move(storage));
    const auto push_pair = [&](int left) {
      const int right = symbols[left].next;
      if (right < 0) return;
      if (const int* rank = merges_.find(pair_key(symbols[left].id, symbols[right].id))) queue.push(candidate(*rank, left));
    };
    // The merge table is far larger than the caches: look a few pairs ahead.
    constexpr int kPrefetchDistance = 16;
    const int count = static_cast<int>(symbols.size());
    for (int i = 0; i + 1 < count; ++i) {
      if (i + kPrefetchDistance + 1 < count) {
        merges_.prefetch(pair_key(symbols[i + kPrefetchDistance].id, symbols[i + kPrefetchDistance + 1].id));
      }
      push_pair(i);
    }

    while (!queue.empty()) {
      const Candidate top = queue.top();
      queue.pop();
      const MergeRule& rule = rules_[top >> 32];
      const int position = static_cast<int>(top & 0xFFFFFFFF);
      Symbol& left = symbols[position];
      if (left.length == 0 || left.next < 0) continue;
      Symbol& right = symbols[left.next];
      // Stale: the pair here changed since it was queued. Symbols only grow, so a changed
      // pair spells a longer string and could never make the same token (HF's own test).
      if (left.id != rule.left || right.id != rule.right) continue;

      left.id = rule.merged;
      left.length += right.length;
      left.next = right.next;
      right.length = 0;
      if (left.next >= 0) symbols[left.next].prev = position;
      if (left.prev >= 0) push_pair(left.prev);
      push_pair(position);
    }
  }

  std::string pieces_;                 // every piece, back to back
  std::vector<PieceSpan> piece_spans_;  // [vocab_size]
  detail::FlatMap<int> merges_;        // (left id, right id) -> rank
  std::vector<MergeRule> rules_;       // [merges] by rank
  detail::FlatMap<int> chars_;         // code point -> id of its one-character piece
  std::array<int, 256> byte_ids_{};    // byte -> id of "<0xXX>", or -1
  int unk_id_ = -1;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
};

}  // namespace gemma4

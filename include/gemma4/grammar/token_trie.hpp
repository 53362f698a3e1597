#pragma once
// The bytes each token of a vocabulary adds to the text, and a trie over them walked in
// pre-order: what a grammar's token mask is computed from (grammar/grammar_constraint.hpp).
// Tokens sharing a prefix share its walk, and a prefix the grammar refuses skips its whole
// subtree, so a step never looks at most of the vocabulary byte by byte.
//
// Byte-fallback tokens ("<0xE2>") add their one byte; special (control) tokens and tokens
// that add nothing are left out of the trie: a grammar allows a special token only where it
// names it (special_token), and stop tokens where it may end. Built once per tokenizer;
// immutable, shareable by threads.

#include <algorithm>
#include <cstdint>
#include <map>
#include <numeric>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gemma4/tokenizer/tokenizer.hpp"

namespace gemma4 {

class TokenTrie {
 public:
  struct Node {
    std::uint8_t byte;            // the byte this node adds to its parent's prefix
    std::uint16_t depth;          // the prefix length, 1 for a child of the root
    std::uint32_t subtree_end;    // index of the first node after this one's subtree
    std::uint32_t first_token;    // tokens whose bytes end here: token_ids()[first_token, +token_count)
    std::uint32_t token_count;
  };

  explicit TokenTrie(const Tokenizer& tokenizer) : vocab_size_(tokenizer.vocab_size()), offsets_(static_cast<std::size_t>(vocab_size_) + 1, 0) {
    std::string pending;
    for (int id = 0; id < vocab_size_; ++id) {
      offsets_[id] = static_cast<std::uint32_t>(bytes_.size());
      if (tokenizer.is_special(id)) special_ids_.emplace(tokenizer.token_text(id), id);
      if (!tokenizer.is_known(id) || tokenizer.is_special(id)) continue;
      tokenizer.append_decoded(id, {}, bytes_, pending);
      bytes_ += pending;  // a byte-fallback token: its raw byte
      pending.clear();
    }
    offsets_.back() = static_cast<std::uint32_t>(bytes_.size());
    build();
  }

  int vocab_size() const { return vocab_size_; }
  // What token `id` adds to the text; empty for tokens left out of the trie.
  std::string_view bytes(int id) const { return std::string_view(bytes_).substr(offsets_[id], offsets_[id + 1] - offsets_[id]); }
  const std::vector<Node>& nodes() const { return nodes_; }
  const std::vector<int>& token_ids() const { return token_ids_; }
  std::size_t max_depth() const { return max_depth_; }
  // The id of the special token with this text (<|tool_call>), if the vocabulary has one.
  std::optional<int> special_token(std::string_view text) const {
    const auto it = special_ids_.find(text);
    return it == special_ids_.end() ? std::nullopt : std::optional<int>(it->second);
  }

 private:
  void build() {
    std::vector<int> order;
    for (int id = 0; id < vocab_size_; ++id) {
      if (!bytes(id).empty()) order.push_back(id);
    }
    std::sort(order.begin(), order.end(), [&](int a, int b) { return bytes(a) != bytes(b) ? bytes(a) < bytes(b) : a < b; });
    std::vector<std::uint32_t> open;  // the node of each depth on the current path
    std::string_view previous;
    for (const int id : order) {
      const std::string_view b = bytes(id);
      std::size_t common = 0;
      while (common < previous.size() && common < b.size() && previous[common] == b[common]) ++common;
      // Close the nodes below the common prefix; open one per new byte.
      for (std::size_t depth = open.size(); depth > common; --depth) nodes_[open[depth - 1]].subtree_end = static_cast<std::uint32_t>(nodes_.size());
      open.resize(common);
      for (std::size_t depth = common; depth < b.size(); ++depth) {
        open.push_back(static_cast<std::uint32_t>(nodes_.size()));
        nodes_.push_back({static_cast<std::uint8_t>(b[depth]), static_cast<std::uint16_t>(depth + 1), 0, static_cast<std::uint32_t>(token_ids_.size()), 0});
      }
      Node& end = nodes_[open.back()];
      if (end.token_count == 0) end.first_token = static_cast<std::uint32_t>(token_ids_.size());
      token_ids_.push_back(id);
      ++end.token_count;
      max_depth_ = std::max(max_depth_, b.size());
      previous = b;
    }
    for (const std::uint32_t node : open) nodes_[node].subtree_end = static_cast<std::uint32_t>(nodes_.size());
  }

  int vocab_size_;
  std::string bytes_;                  // every token's bytes, back to back
  std::vector<std::uint32_t> offsets_; // [vocab_size + 1]
  std::vector<Node> nodes_;
  std::vector<int> token_ids_;         // in node order
  std::size_t max_depth_ = 0;
  std::map<std::string, int, std::less<>> special_ids_;  // by text
};

}  // namespace gemma4

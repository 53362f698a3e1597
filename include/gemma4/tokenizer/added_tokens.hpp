#pragma once
// Finds added tokens (`added_tokens` of tokenizer.json: control tokens, "\n" runs, tab
// runs, HTML tags, ...) in text the way Hugging Face tokenizers does: leftmost-longest.
// At the first position where any token starts, the longest token starting there wins.
// A byte trie makes that one walk per position, however many tokens there are.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gemma4/detail/flat_map.hpp"

namespace gemma4 {

struct AddedToken {
  int id = 0;
  std::string content;
  bool special = false;     // control token: skipped by decode(skip_special), never typed by a user
  bool normalized = false;  // matched after normalization instead of on the raw text
};

struct AddedTokenMatch {
  std::size_t begin = 0;
  std::size_t end = 0;
  const AddedToken* token = nullptr;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // `tokens` must outlive the matcher.
  explicit AddedTokenMatcher(const std::vector<const AddedToken*>& tokens) {
    std::size_t edges = 0;
    for (const AddedToken* t : tokens) edges += t->content.size();
    edges_ = detail::FlatMap<int>(edges);
    ends_.assign(1, nullptr);
    for (const AddedToken* t : tokens) add(*t);
  }

  bool empty() const { return ends_.size() <= 1; }

  // The leftmost-longest match in text[from..], or a match with token == nullptr.
  AddedTokenMatch find(std::string_view text, std::size_t from) const {
    if (empty()) return {};
    for (std::size_t begin = from; begin < text.size(); ++begin) {
      if (!starts_[static_cast<std::uint8_t>(text[begin])]) continue;
      AddedTokenMatch best;
      int node = 0;
      for (std::size_t i = begin; i < text.size(); ++i) {
        const int* child = edges_.find(edge_key(node, text[i]));
        if (child == nullptr) break;
        node = *child;
        if (ends_[node] != nullptr) best = {begin, i + 1, ends_[node]};
      }
      if (best.token != nullptr) return best;
    }
    return {};
  }

 private:
  static std::uint64_t edge_key(int node, char byte) {
    return std::uint64_t(std::uint32_t(node)) << 8 | static_cast<std::uint8_t>(byte);
  }

  void add(const AddedToken& token) {
    if (token.content.empty()) return;
    starts_[static_cast<std::uint8_t>(token.content[0])] = true;
    int node = 0;
    for (const char byte : token.content) {
      if (const int* child = edges_.find(edge_key(node, byte))) {
        node = *child;
        continue;
      }
      const int next = static_cast<int>(ends_.size());
      ends_.push_back(nullptr);
      edges_.insert_or_assign(edge_key(node, byte), next);
      node = next;
    }
    ends_[node] = &token;
  }

  detail::FlatMap<int> edges_;              // (node, byte) -> child node
  std::vector<const AddedToken*> ends_;     // [nodes] token ending at the node, or null
  std::array<bool, 256> starts_{};          // bytes that begin some token
};

}  // namespace gemma4

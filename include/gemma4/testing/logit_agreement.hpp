#pragma once
// How closely one run's logits follow a reference run's, position by position: the
// quality measure of the int8/int4 weight formats (tests require it, bench prints it).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "gemma4/error.hpp"

namespace gemma4 {

struct LogitAgreement {
  std::size_t positions = 0;
  double top1 = 0;       // fraction of positions whose argmax equals the reference's
  double mean_kl = 0;    // mean over positions of KL(reference || test) of the softmaxes, in nats
  double rms_error = 0;  // root mean square of test - reference over all logits
  // How far the reference's top logit leads its runner-up: the median over positions,
  // and the largest lead at a position whose argmax the test moved (0 if none). Flips
  // only at small leads mean near-ties, not a broken format.
  double median_lead = 0;
  double largest_flipped_lead = 0;
};

// reference and test are [positions, vocab] logits.
inline LogitAgreement compare_logits(std::span<const float> reference, std::span<const float> test, std::size_t vocab) {
  if (vocab == 0 || reference.empty() || reference.size() != test.size() || reference.size() % vocab != 0) {
    fail(ErrorKind::kInvalidArgument, "compare_logits: {} and {} logits do not both hold whole rows of {}", reference.size(), test.size(), vocab);
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
  std::vector<double> p, q, leads;
  std::size_t agree = 0;
  double squared_error = 0;
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
      const double error = static_cast<double>(got[i]) - ref[i];
      squared_error += error * error;
    }
    double runner_up = -HUGE_VAL;
    for (std::size_t i = 0; i < vocab; ++i) {
      if (i != best_ref) runner_up = std::max(runner_up, static_cast<double>(ref[i]));
    }
    const double lead = vocab > 1 ? ref[best_ref] - runner_up : 0.0;
    leads.push_back(lead);
    if (best_ref == best_got) {
      ++agree;
    } else {
      result.largest_flipped_lead = std::max(result.largest_flipped_lead, lead);
    }
    result.mean_kl += kl;
  }
  result.top1 = static_cast<double>(agree) / static_cast<double>(result.positions);
  result.mean_kl /= static_cast<double>(result.positions);
  result.rms_error = std::sqrt(squared_error / static_cast<double>(reference.size()));
  std::nth_element(leads.begin(), leads.begin() + leads.size() / 2, leads.end());
  result.median_lead = leads[leads.size() / 2];
  return result;
}

}  // namespace gemma4

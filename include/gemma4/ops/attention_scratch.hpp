#pragma once
// How attention (ops/attention-inl.h) splits a long context, and the scratch it needs.
//
// It goes segment by segment: kAttentionSegment positions from a multiple of it, each
// segment's softmax and weighted values computed alone, then merged through their
// maxima and sums. Segment s joins partial result s % kAttentionPartials, in order, and
// the partials join in order. Decoding one sequence spreads a layer's partials over the
// threads, so each reads its share of the cache (split by heads, every thread read all
// of it). Segments and partials are fixed by position: the bits depend neither on the
// threads nor on which tokens run together, and a context inside one segment gets the
// bits of one softmax.

#include <cstddef>
#include <vector>

#include "gemma4/ops/kv_cache.hpp"

namespace gemma4 {

inline constexpr int kAttentionSegment = 512, kAttentionPartials = 4;
static_assert(kAttentionSegment % kPositionTile == 0);

// Rows (t, g) of a query block's attention, t a token and g a head of a kv head's group:
// row (t, g) is row t * token_rows + g. Each row holds head_dim outputs, normalised by
// its softmax, and at sums + 2 * row that softmax's max and sum (a sum of 0: no
// positions yet).
struct PartialRows {
  float* out;
  float* sums;
  std::size_t token_rows;
  std::size_t head_dim;

  std::size_t row(std::size_t t, std::size_t g) const { return t * token_rows + g; }
  // The same rows from head g on.
  PartialRows from_head(std::size_t g) const { return {out + g * head_dim, sums + 2 * g, token_rows, head_dim}; }
};

// Each thread's scratch: the scores of one segment, its result and kAttentionPartials
// partial results, for up to `rows` query rows (heads of one kv head x tokens of a
// block) of up to head_dim.
class AttentionScratch {
 public:
  AttentionScratch(int threads, std::size_t rows, std::size_t head_dim)
      : rows_(rows), head_dim_(head_dim), per_thread_(rows * (kAttentionSegment + (1 + kAttentionPartials) * (head_dim + 2))),
        floats_(per_thread_ * static_cast<std::size_t>(threads)) {}

  float* scores(int thread) { return floats_.data() + static_cast<std::size_t>(thread) * per_thread_; }
  // A thread's result of one segment: `token_rows` rows per token of head_dim.
  PartialRows segment(int thread, std::size_t token_rows, std::size_t head_dim) { return result(thread, 0, token_rows, head_dim); }
  // A thread's partial result j.
  PartialRows partial(int thread, int j, std::size_t token_rows, std::size_t head_dim) { return result(thread, 1 + j, token_rows, head_dim); }

  std::size_t bytes() const { return floats_.size() * sizeof(float); }

 private:
  PartialRows result(int thread, int slot, std::size_t token_rows, std::size_t head_dim) {
    float* first = scores(thread) + rows_ * kAttentionSegment + static_cast<std::size_t>(slot) * rows_ * (head_dim_ + 2);
    return {first, first + rows_ * head_dim, token_rows, head_dim};
  }

  std::size_t rows_, head_dim_, per_thread_;
  std::vector<float> floats_;
};

}  // namespace gemma4

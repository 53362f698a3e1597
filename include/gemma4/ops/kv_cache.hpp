#pragma once
// One layer's keys and values, for the positions its queries can still see (spec
// section 3). Position p lives at slot p % capacity, so a sliding layer's cache is a
// ring; a full layer's holds every position of the context.
//
// Keys are stored transposed in tiles of kPositionTile consecutive positions
// ([tile][kv_head][d][lane]): a query's scores for a tile are then kPositionTile-wide
// multiply-adds, one per d, with no horizontal sums, and one loaded key vector serves
// every query head that shares the kv head. Values are stored in column chunks of
// kValueChunk ([kv_head][chunk][slot][kValueChunk]): the weighted sum runs over the
// positions for one chunk of columns at a time, and so reads memory in order (row-major
// values made it a strided read at a third of the speed).

#include <algorithm>
#include <cstddef>
#include <vector>

#include "gemma4/error.hpp"

namespace gemma4 {

inline constexpr int kPositionTile = 16;
inline constexpr int kValueChunk = 32;  // floats; head dims are multiples of it

constexpr int round_up_to_tile(int positions) { return (positions + kPositionTile - 1) / kPositionTile * kPositionTile; }

// Query tokens whose attention runs together (ops/attention-inl.h): each key tile and
// value row is loaded once for all of them. Four covers a verification pass of three drafts.
inline constexpr int kQueryBlock = 4;

// Floats of scores one query head needs for keys [first, last]: whole tiles.
constexpr std::size_t attention_score_span(int first, int last) {
  return static_cast<std::size_t>(round_up_to_tile(last + 1) - (first - first % kPositionTile));
}

class KvCache {
 public:
  // Room for at least `positions` positions, rounded up to whole tiles so that a tile's
  // positions are never split by the ring's wrap.
  KvCache(int positions, int kv_heads, int head_dim)
      : capacity_(round_up_to_tile(positions)),
        kv_heads_(kv_heads),
        head_dim_(head_dim),
        k_(static_cast<std::size_t>(capacity_) * kv_heads * head_dim),
        v_(k_.size()) {
    if (head_dim <= 0 || head_dim % kValueChunk != 0) fail(ErrorKind::kInvalidArgument, "KV cache: head dim {} is not a multiple of {}", head_dim, kValueChunk);
  }

  int capacity() const { return capacity_; }
  int head_dim() const { return head_dim_; }
  std::size_t bytes() const { return (k_.size() + v_.size()) * sizeof(float); }

  // Writes one position's keys and values, each [kv_heads, head_dim].
  void store(int position, const float* keys, const float* values) {
    const int slot = position % capacity_;
    const std::size_t lane = static_cast<std::size_t>(slot % kPositionTile);
    for (int h = 0; h < kv_heads_; ++h) {
      float* tile = k_.data() + key_tile_offset(slot - static_cast<int>(lane), h);
      const float* key = keys + static_cast<std::size_t>(h) * head_dim_;
      for (int d = 0; d < head_dim_; ++d) tile[static_cast<std::size_t>(d) * kPositionTile + lane] = key[d];
    }
    for (int h = 0; h < kv_heads_; ++h) {
      for (int c = 0; c < head_dim_ / kValueChunk; ++c) {
        std::copy_n(values + static_cast<std::size_t>(h) * head_dim_ + c * kValueChunk, kValueChunk,
                    v_.data() + value_chunk_offset(h, c) + static_cast<std::size_t>(slot) * kValueChunk);
      }
    }
  }

  // The keys of positions [tile_start, tile_start + kPositionTile) for one kv head, as
  // [head_dim][kPositionTile]; tile_start is a multiple of kPositionTile.
  const float* key_tile(int tile_start, int kv_head) const {
    return k_.data() + key_tile_offset(tile_start % capacity_, kv_head);
  }
  // The slot of `position`, and columns [kValueChunk * chunk, kValueChunk * (chunk + 1))
  // of one kv head's values, as [capacity][kValueChunk].
  int slot(int position) const { return position % capacity_; }
  const float* value_chunk(int kv_head, int chunk) const { return v_.data() + value_chunk_offset(kv_head, chunk); }

 private:
  std::size_t value_chunk_offset(int kv_head, int chunk) const {
    return (static_cast<std::size_t>(kv_head) * (head_dim_ / kValueChunk) + chunk) * capacity_ * kValueChunk;
  }
  std::size_t key_tile_offset(int tile_slot, int kv_head) const {
    const std::size_t tile = static_cast<std::size_t>(tile_slot / kPositionTile);
    return (tile * kv_heads_ + kv_head) * head_dim_ * kPositionTile;
  }

  int capacity_, kv_heads_, head_dim_;
  std::vector<float> k_;  // [capacity / kPositionTile, kv_heads, head_dim, kPositionTile]
  std::vector<float> v_;  // [kv_heads, head_dim / kValueChunk, capacity, kValueChunk]
};

// What attention reads for a run of `tokens` consecutive query tokens of one sequence
// (ops/attention-inl.h): its cache, q and out [tokens, heads, head_dim]; token t's newest
// key is at position last + t.
struct AttentionRun {
  const KvCache* cache = nullptr;
  const float* q = nullptr;
  float* out = nullptr;
  int tokens = 1;
  int last = 0;
};

}  // namespace gemma4

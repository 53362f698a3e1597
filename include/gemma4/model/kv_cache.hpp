#pragma once
// One layer's keys and values, for the positions its queries can still see (spec
// section 3). Position p lives at slot p % capacity, so a sliding layer's cache is a
// ring; a full layer's holds every position of the context.
//
// Keys are stored transposed in tiles of kPositionTile consecutive positions
// ([tile][kv_head][d][lane]): a query's scores for a tile are then kPositionTile-wide
// multiply-adds, one per d, with no horizontal sums, and one loaded key vector serves
// every query head that shares the kv head. Values stay row-major ([slot][kv_head][d]),
// which is the order the weighted sum reads them in.

#include <algorithm>
#include <cstddef>
#include <vector>

namespace gemma4 {

inline constexpr int kPositionTile = 16;

constexpr int round_up_to_tile(int positions) { return (positions + kPositionTile - 1) / kPositionTile * kPositionTile; }

class KvCache {
 public:
  // Room for at least `positions` positions, rounded up to whole tiles so that a tile's
  // positions are never split by the ring's wrap.
  KvCache(int positions, int kv_heads, int head_dim)
      : capacity_(round_up_to_tile(positions)),
        kv_heads_(kv_heads),
        head_dim_(head_dim),
        k_(static_cast<std::size_t>(capacity_) * kv_heads * head_dim),
        v_(k_.size()) {}

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
    const std::size_t row = static_cast<std::size_t>(kv_heads_) * head_dim_;
    std::copy_n(values, row, v_.data() + static_cast<std::size_t>(slot) * row);
  }

  // The keys of positions [tile_start, tile_start + kPositionTile) for one kv head, as
  // [head_dim][kPositionTile]; tile_start is a multiple of kPositionTile.
  const float* key_tile(int tile_start, int kv_head) const {
    return k_.data() + key_tile_offset(tile_start % capacity_, kv_head);
  }
  // The slot of `position`, and the values of a slot for one kv head: [head_dim].
  int slot(int position) const { return position % capacity_; }
  const float* values(int slot, int kv_head) const {
    return v_.data() + (static_cast<std::size_t>(slot) * kv_heads_ + kv_head) * head_dim_;
  }

 private:
  std::size_t key_tile_offset(int tile_slot, int kv_head) const {
    const std::size_t tile = static_cast<std::size_t>(tile_slot / kPositionTile);
    return (tile * kv_heads_ + kv_head) * head_dim_ * kPositionTile;
  }

  int capacity_, kv_heads_, head_dim_;
  std::vector<float> k_;  // [capacity / kPositionTile, kv_heads, head_dim, kPositionTile]
  std::vector<float> v_;  // [capacity, kv_heads, head_dim]
};

}  // namespace gemma4

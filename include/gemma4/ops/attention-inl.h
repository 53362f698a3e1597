// Attention of one query position over a layer's KV cache (ops/kv_cache.hpp), for a
// group of query heads that share one kv head (GQA): each key tile and value row is
// loaded once for the whole group instead of once per head.
//
// Every (head, position) score is one pair of FMA chains over d, in order, and every
// output element one FMA chain over positions, in order: a head's result does not
// depend on the group size or on which heads run together, so any split of the heads
// between threads gives the same bits.

#ifndef GEMMA4_OPS_ATTENTION_INL_H_
#define GEMMA4_OPS_ATTENTION_INL_H_
#include <cstddef>

#include "gemma4/ops/kv_cache.hpp"
#endif  // GEMMA4_OPS_ATTENTION_INL_H_

#if defined(GEMMA4_OPS_ATTENTION_TOGGLE) == defined(HWY_TARGET_TOGGLE)
#ifdef GEMMA4_OPS_ATTENTION_TOGGLE
#undef GEMMA4_OPS_ATTENTION_TOGGLE
#else
#define GEMMA4_OPS_ATTENTION_TOGGLE
#endif

#include "gemma4/ops/ops-inl.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace gemma4 {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// At most one key tile per vector; narrower targets take several passes over a tile.
using DT = hn::CappedTag<float, kPositionTile>;
using VT = hn::Vec<DT>;

// For the kGroup query heads q [kGroup, head_dim] that share kv head `kv_head`, at a
// query position that sees keys [first, last]:
//   out[g] = sum_p softmax_p(q[g] . k_p) v_p   (scale 1.0: Gemma 4 normalises q and k).
// scores needs kGroup * attention_score_span(first, last) floats. The head dim must be
// a multiple of kValueChunk (a Session checks this for its variant).
template <size_t kGroup>
HWY_NOINLINE void AttendGroup(const float* HWY_RESTRICT q, const KvCache& cache, int kv_head, int first, int last,
                              float* HWY_RESTRICT scores, float* HWY_RESTRICT out) {
  const size_t D = static_cast<size_t>(cache.head_dim());
  const int base = first - first % kPositionTile;
  const size_t span = attention_score_span(first, last);

  // Scores, a tile of positions at a time; even and odd d in separate chains so that a
  // lone head still has two FMAs in flight. Lanes outside [first, last] are computed
  // and never read.
  const DT dt;
  const size_t NT = hn::Lanes(dt);
  for (int tile = base; tile <= last; tile += kPositionTile) {
    const float* HWY_RESTRICT keys = cache.key_tile(tile, kv_head);
    for (size_t lane = 0; lane < kPositionTile; lane += NT) {
      VT even[kGroup], odd[kGroup];
      HWY_UNROLL(8)
      for (size_t g = 0; g < kGroup; ++g) even[g] = odd[g] = hn::Zero(dt);
      for (size_t d = 0; d < D; d += 2) {
        const VT k0 = hn::LoadU(dt, keys + d * kPositionTile + lane);
        const VT k1 = hn::LoadU(dt, keys + (d + 1) * kPositionTile + lane);
        HWY_UNROLL(8)
        for (size_t g = 0; g < kGroup; ++g) {
          even[g] = hn::MulAdd(hn::Set(dt, q[g * D + d]), k0, even[g]);
          odd[g] = hn::MulAdd(hn::Set(dt, q[g * D + d + 1]), k1, odd[g]);
        }
      }
      HWY_UNROLL(8)
      for (size_t g = 0; g < kGroup; ++g) {
        hn::StoreU(hn::Add(even[g], odd[g]), dt, scores + g * span + static_cast<size_t>(tile - base) + lane);
      }
    }
  }
  const size_t count = static_cast<size_t>(last - first + 1);
  for (size_t g = 0; g < kGroup; ++g) Softmax(scores + g * span + static_cast<size_t>(first - base), count);

  // out[g] = sum_p scores[g][p] v_p, two vectors of each head's output at a time kept in
  // registers over all positions, which are consecutive rows of the values' column chunk.
  const int first_slot = cache.slot(first);
  for (size_t i = 0; i < D; i += 2 * NT) {
    const float* HWY_RESTRICT chunk = cache.value_chunk(kv_head, static_cast<int>(i / kValueChunk)) + i % kValueChunk;
    VT lo[kGroup], hi[kGroup];
    HWY_UNROLL(8)
    for (size_t g = 0; g < kGroup; ++g) lo[g] = hi[g] = hn::Zero(dt);
    int slot = first_slot;
    for (size_t p = static_cast<size_t>(first - base); p < static_cast<size_t>(last - base) + 1; ++p) {
      const float* HWY_RESTRICT row = chunk + static_cast<size_t>(slot) * kValueChunk;
      const VT v0 = hn::LoadU(dt, row), v1 = hn::LoadU(dt, row + NT);
      HWY_UNROLL(8)
      for (size_t g = 0; g < kGroup; ++g) {
        const VT weight = hn::Set(dt, scores[g * span + p]);
        lo[g] = hn::MulAdd(weight, v0, lo[g]);
        hi[g] = hn::MulAdd(weight, v1, hi[g]);
      }
      if (++slot == cache.capacity()) slot = 0;
    }
    HWY_UNROLL(8)
    for (size_t g = 0; g < kGroup; ++g) {
      hn::StoreU(lo[g], dt, out + g * D + i);
      hn::StoreU(hi[g], dt, out + g * D + i + NT);
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace gemma4
HWY_AFTER_NAMESPACE();

#endif  // toggle

// Attention of a few consecutive query positions over a layer's KV cache
// (ops/kv_cache.hpp), for a group of query heads that share one kv head (GQA): each key
// tile and value row is loaded once for the whole group and all the positions, instead
// of once per head and position. Keys and values are read in the cache's format and
// widened to f32 in registers; an int8 cache's key scales multiply a tile's scores, and
// its value scales the softmax weights. Long contexts go in segments, merged through
// their softmax sums (ops/attention_scratch.hpp).
//
// Within a segment, every (head, position) score is one pair of FMA chains over d, in
// order, and every output element one FMA chain over positions, in order: a row's
// result does not depend on the group size, on the other query positions or on which
// rows run together, so any split of the heads and query positions between threads
// gives the same bits.

#ifndef GEMMA4_OPS_ATTENTION_INL_H_
#define GEMMA4_OPS_ATTENTION_INL_H_
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include "gemma4/ops/attention_scratch.hpp"
#include "gemma4/ops/kv_cache.hpp"
#include "gemma4/parallel/thread_pool.hpp"

namespace gemma4 {

// The query rows of one work item of attention: `tokens` consecutive query positions, token t
// seeing keys [first[t], last + t] (first never decreasing), with its group of query
// heads at q + t * stride and its output at out + t * stride.
struct QueryBlock {
  const float* q = nullptr;
  float* out = nullptr;
  int tokens = 1;
  std::size_t stride = 0;
  std::array<int, kQueryBlock> first{};
  int last = 0;
};

// One work item of AttendAllHeads: a query block against kv head `kv_head` of a cache.
struct AttentionItem {
  const KvCache& cache;
  int kv_head;
  QueryBlock block;
};

}  // namespace gemma4
#endif  // GEMMA4_OPS_ATTENTION_INL_H_

#if defined(GEMMA4_OPS_ATTENTION_TOGGLE) == defined(HWY_TARGET_TOGGLE)
#ifdef GEMMA4_OPS_ATTENTION_TOGGLE
#undef GEMMA4_OPS_ATTENTION_TOGGLE
#else
#define GEMMA4_OPS_ATTENTION_TOGGLE
#endif

#include "gemma4/ops/ops-inl.h"
#include "hwy/cache_control.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace gemma4 {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// At most one key tile per vector; narrower targets take several passes over a tile.
using DT = hn::CappedTag<float, kPositionTile>;
using VT = hn::Vec<DT>;

// Query tokens per register pass for kGroup heads: at most 8 rows, two accumulators each;
// being 1 or 2, it leaves at most one token of a block for a pass of its own.
template <size_t kGroup>
inline constexpr size_t kTokensPerPass = kGroup <= 4 ? 2 : 1;

// Bytes of a value chunk fetched ahead (the keys: one tile ahead). One core's own
// prefetchers stream a cache at 12-19 GB/s here, and a pass over several tokens waited
// on the read, then computed; fetching ahead overlaps the two (bench/README.md).
inline constexpr size_t kValuePrefetchBytes = 8192;

// kPositionTile-wide loads of a cache's elements (uint16_t: bf16 bits), widened to f32.
HWY_INLINE VT LoadWidened(DT dt, const float* HWY_RESTRICT p) { return hn::LoadU(dt, p); }
HWY_INLINE VT LoadWidened(DT dt, const uint16_t* HWY_RESTRICT p) {
  return hn::PromoteTo(dt, hn::LoadU(hn::Rebind<hwy::bfloat16_t, DT>(), reinterpret_cast<const hwy::bfloat16_t*>(p)));
}
HWY_INLINE VT LoadWidened(DT dt, const int8_t* HWY_RESTRICT p) {
  return hn::ConvertTo(dt, hn::PromoteTo(hn::Rebind<int32_t, DT>(), hn::LoadU(hn::Rebind<int8_t, DT>(), p)));
}

// Scores of tokens [t0, t0 + kT) of `block` for the key tile `keys`, into row (t, g) of
// `scores` at `tile_offset`; prefetches `next_keys`, the next tile, unless null.
// An int8 cache's `key_scales` of the tile's positions multiply the scores.
template <size_t kGroup, size_t kT, typename T>
HWY_INLINE void TileScores(const QueryBlock& block, size_t t0, size_t D, const T* HWY_RESTRICT keys, const T* next_keys,
                           const float* HWY_RESTRICT key_scales, float* HWY_RESTRICT scores, size_t span, size_t tile_offset) {
  const DT dt;
  const size_t NT = hn::Lanes(dt);
  const float* HWY_RESTRICT q[kT];
  HWY_UNROLL(2)
  for (size_t t = 0; t < kT; ++t) q[t] = block.q + (t0 + t) * block.stride;
  // Even and odd d in separate chains, so that a lone head still has two FMAs in flight.
  for (size_t lane = 0; lane < kPositionTile; lane += NT) {
    VT even[kT][kGroup], odd[kT][kGroup];
    HWY_UNROLL(2)
    for (size_t t = 0; t < kT; ++t) {
      HWY_UNROLL(8)
      for (size_t g = 0; g < kGroup; ++g) even[t][g] = odd[t][g] = hn::Zero(dt);
    }
    for (size_t d = 0; d < D; d += 2) {
      const VT k0 = LoadWidened(dt, keys + d * kPositionTile + lane);
      const VT k1 = LoadWidened(dt, keys + (d + 1) * kPositionTile + lane);
      if (next_keys != nullptr && lane == 0) {  // a cache line holds 64 / sizeof(T) / 16 rows
        hwy::Prefetch(next_keys + d * kPositionTile);
        if constexpr (sizeof(T) == 4) hwy::Prefetch(next_keys + (d + 1) * kPositionTile);
      }
      HWY_UNROLL(2)
      for (size_t t = 0; t < kT; ++t) {
        HWY_UNROLL(8)
        for (size_t g = 0; g < kGroup; ++g) {
          even[t][g] = hn::MulAdd(hn::Set(dt, q[t][g * D + d]), k0, even[t][g]);
          odd[t][g] = hn::MulAdd(hn::Set(dt, q[t][g * D + d + 1]), k1, odd[t][g]);
        }
      }
    }
    HWY_UNROLL(2)
    for (size_t t = 0; t < kT; ++t) {
      HWY_UNROLL(8)
      for (size_t g = 0; g < kGroup; ++g) {
        VT sum = hn::Add(even[t][g], odd[t][g]);
        if constexpr (std::is_same_v<T, int8_t>) sum = hn::Mul(sum, hn::LoadU(dt, key_scales + lane));
        hn::StoreU(sum, dt, scores + ((t0 + t) * kGroup + g) * span + tile_offset + lane);
      }
    }
  }
}

// Row (t, g) of `out` columns [i, i + 2 NT) = sum_p weight[t, g][p] v_p for tokens
// [t0, t0 + kT), over positions [first, last] (weight row (t, g) of `weights` at p - base),
// two vectors per row kept in registers over consecutive rows of the values' column
// chunk; prefetches that chunk's rows ahead when `prefetch`.
template <size_t kGroup, size_t kT, typename T>
HWY_INLINE void WeightedValues(const PartialRows& out, size_t t0, const KvCache& cache, int kv_head, size_t i, int base, int first,
                               int last, const float* HWY_RESTRICT weights, size_t span, bool prefetch) {
  constexpr size_t kPrefetchRows = kValuePrefetchBytes / (kValueChunk * sizeof(T));
  const DT dt;
  const size_t NT = hn::Lanes(dt);
  const T* HWY_RESTRICT chunk = cache.value_chunk<T>(kv_head, static_cast<int>(i / kValueChunk)) + i % kValueChunk;
  VT lo[kT][kGroup], hi[kT][kGroup];
  HWY_UNROLL(2)
  for (size_t t = 0; t < kT; ++t) {
    HWY_UNROLL(8)
    for (size_t g = 0; g < kGroup; ++g) lo[t][g] = hi[t][g] = hn::Zero(dt);
  }
  int slot = cache.slot(first);
  const size_t begin = static_cast<size_t>(first - base), end = last < first ? begin : static_cast<size_t>(last - base) + 1;
  for (size_t p = begin; p < end; ++p) {
    const T* HWY_RESTRICT row = chunk + static_cast<size_t>(slot) * kValueChunk;
    const VT v0 = LoadWidened(dt, row), v1 = LoadWidened(dt, row + NT);
    if (prefetch && p + kPrefetchRows < end) {
      int ahead = slot + static_cast<int>(kPrefetchRows);
      if (ahead >= cache.capacity()) ahead -= cache.capacity();
      const T* row_ahead = chunk + static_cast<size_t>(ahead) * kValueChunk;
      hwy::Prefetch(row_ahead);
      if constexpr (sizeof(T) == 4) hwy::Prefetch(row_ahead + kValueChunk / 2);  // a row of f32 is two cache lines
    }
    HWY_UNROLL(2)
    for (size_t t = 0; t < kT; ++t) {
      HWY_UNROLL(8)
      for (size_t g = 0; g < kGroup; ++g) {
        const VT weight = hn::Set(dt, weights[((t0 + t) * kGroup + g) * span + p]);
        lo[t][g] = hn::MulAdd(weight, v0, lo[t][g]);
        hi[t][g] = hn::MulAdd(weight, v1, hi[t][g]);
      }
    }
    if (++slot == cache.capacity()) slot = 0;
  }
  HWY_UNROLL(2)
  for (size_t t = 0; t < kT; ++t) {
    HWY_UNROLL(8)
    for (size_t g = 0; g < kGroup; ++g) {
      float* HWY_RESTRICT row = out.out + out.row(t0 + t, g) * out.head_dim;
      hn::StoreU(lo[t][g], dt, row + i);
      hn::StoreU(hi[t][g], dt, row + i + NT);
    }
  }
}

// Calls pass.operator()<kN>(t0) for tokens [t0, t0 + kN) of `tokens`: kN = kT while
// kT tokens are left, then 1.
template <size_t kT, class Pass>
HWY_INLINE void ForEachPass(size_t tokens, Pass&& pass) {
  size_t t0 = 0;
  for (; t0 + kT <= tokens; t0 += kT) pass.template operator()<kT>(t0);
  for (; t0 < tokens; ++t0) pass.template operator()<1>(t0);
}

// Segment `segment` of the attention of `block`'s tokens and their kGroup query heads q
// [kGroup, head_dim], which share kv head `kv_head`: for token t and head g, over the
// positions p of [first[t], last + t] in the segment,
//   row (t, g) of `result` = sum_p softmax_p(q[g] . k_p) v_p
// with the softmax's max and sum (scale 1.0: Gemma 4 normalises q and k); a token
// without positions there gets a sum of 0. scores needs kGroup * block.tokens *
// kAttentionSegment floats. The head dim must be a multiple of kValueChunk (a Session
// checks this for its variant).
//
// Tokens go through the kernels kT at a time, over the positions any of them sees; a
// row's weights outside its own positions are zero, and adding 0 * v to a sum leaves
// it unchanged (v finite), so a row gets the bits it would get alone. T is the cache's
// element type.
template <size_t kGroup, typename T>
HWY_NOINLINE void AttendSegment(const QueryBlock& block, int segment, const KvCache& cache, int kv_head, float* HWY_RESTRICT scores,
                                const PartialRows& result) {
  constexpr size_t kT = kTokensPerPass<kGroup>;
  const size_t D = static_cast<size_t>(cache.head_dim());
  const size_t tokens = static_cast<size_t>(block.tokens);
  // Token t's positions in the segment, [first[t], last[t]]: none when first > last.
  const int lowest = segment * kAttentionSegment, highest = lowest + kAttentionSegment - 1;
  std::array<int, kQueryBlock> first{}, last{};
  for (size_t t = 0; t < tokens; ++t) {
    first[t] = std::max(block.first[t], lowest);
    last[t] = std::min(block.last + static_cast<int>(t), highest);
  }
  const int newest = last[tokens - 1];
  const int base = first[0] - first[0] % kPositionTile;
  const size_t span = attention_score_span(first[0], newest);

  // Scores, a key tile at a time for all the tokens, while the next tile is fetched.
  // Lanes outside a token's positions are computed, then zeroed below.
  for (int tile = base; tile <= newest; tile += kPositionTile) {
    const T* HWY_RESTRICT keys = cache.key_tile<T>(tile, kv_head);
    const T* next_keys = tile + kPositionTile <= newest ? cache.key_tile<T>(tile + kPositionTile, kv_head) : nullptr;
    const float* key_scales = std::is_same_v<T, int8_t> ? cache.key_scales(tile, kv_head) : nullptr;
    const size_t offset = static_cast<size_t>(tile - base);
    ForEachPass<kT>(tokens, [&]<size_t kN>(size_t t0) {
      TileScores<kGroup, kN>(block, t0, D, keys, t0 == 0 ? next_keys : nullptr, key_scales, scores, span, offset);
    });
  }
  for (size_t t = 0; t < tokens; ++t) {
    const bool seen = first[t] <= last[t];
    const size_t begin = seen ? static_cast<size_t>(first[t] - base) : span, end = seen ? static_cast<size_t>(last[t] - base) + 1 : span;
    for (size_t g = 0; g < kGroup; ++g) {
      float* HWY_RESTRICT row = scores + (t * kGroup + g) * span;
      float* sums = result.sums + 2 * result.row(t, g);
      sums[0] = sums[1] = 0.0f;
      if (seen) {
        const SoftmaxSums softmax = Softmax(row + begin, end - begin);
        sums[0] = softmax.max;
        sums[1] = softmax.sum;
      }
      std::fill(row, row + begin, 0.0f);
      std::fill(row + end, row + span, 0.0f);
      if constexpr (std::is_same_v<T, int8_t>) {
        const float* value_scales = cache.value_scales(kv_head);
        int slot = cache.slot(base + static_cast<int>(begin));
        for (size_t p = begin; p < end; ++p) {
          row[p] *= value_scales[slot];
          if (++slot == cache.capacity()) slot = 0;
        }
      }
    }
  }

  for (size_t i = 0; i < D; i += 2 * hn::Lanes(DT())) {
    ForEachPass<kT>(tokens, [&]<size_t kN>(size_t t0) {
      WeightedValues<kGroup, kN, T>(result, t0, cache, kv_head, i, base, first[t0], last[t0 + kN - 1], scores, span, t0 == 0);
    });
  }
}

// Row (t, g) of `into` becomes the attention over its positions and those of the same
// row of `from` (a sum of 0: none), merged through their softmax sums. Into a row
// without positions, `from`'s row is copied: one segment keeps its bits.
HWY_INLINE void FoldRows(const PartialRows& into, const PartialRows& from, size_t tokens, size_t group) {
  const DF df;
  const size_t D = into.head_dim;
  for (size_t t = 0; t < tokens; ++t) {
    for (size_t g = 0; g < group; ++g) {
      float* HWY_RESTRICT out = into.out + into.row(t, g) * D;
      const float* HWY_RESTRICT other = from.out + from.row(t, g) * D;
      float* sums = into.sums + 2 * into.row(t, g);
      const float* other_sums = from.sums + 2 * from.row(t, g);
      if (other_sums[1] == 0.0f) continue;
      if (sums[1] == 0.0f) {
        std::copy_n(other, D, out);
        std::copy_n(other_sums, 2, sums);
        continue;
      }
      const float max = std::max(sums[0], other_sums[0]);
      const float own = sums[1] * std::exp(sums[0] - max), theirs = other_sums[1] * std::exp(other_sums[0] - max);
      const float sum = own + theirs;
      const VF own_weight = hn::Set(df, own / sum), their_weight = hn::Set(df, theirs / sum);
      for (size_t i = 0; i < D; i += hn::Lanes(df)) {
        hn::StoreU(hn::MulAdd(hn::LoadU(df, out + i), own_weight, hn::Mul(hn::LoadU(df, other + i), their_weight)), df, out + i);
      }
      sums[0] = max;
      sums[1] = sum;
    }
  }
}

// Marks rows (t, g) of `rows` as holding no positions.
HWY_INLINE void ClearRows(const PartialRows& rows, size_t tokens, size_t group) {
  for (size_t t = 0; t < tokens; ++t) {
    for (size_t g = 0; g < group; ++g) rows.sums[2 * rows.row(t, g) + 1] = 0.0f;
  }
}

// The segments of `block` from `first_segment` to `last_segment`, every `step`-th, each
// folded into partials(segment) in order; kGroup heads, a cache of element type T.
template <size_t kGroup, typename T, class Partials>
HWY_INLINE void AttendSegments(const QueryBlock& block, int first_segment, int last_segment, int step, const KvCache& cache,
                               int kv_head, float* HWY_RESTRICT scores, const PartialRows& segment, const Partials& partials) {
  for (int s = first_segment; s <= last_segment; s += step) {
    AttendSegment<kGroup, T>(block, s, cache, kv_head, scores, segment);
    FoldRows(partials(s), segment, static_cast<size_t>(block.tokens), kGroup);
  }
}

// f.template operator()<kGroup, T>() for `group` heads (a power of two up to kMax) and
// the cache's element type, chosen at run time.
template <int kMax, class F>
HWY_INLINE void ForGroupAndFormat(int group, KvFormat format, F&& f) {
  if constexpr (kMax > 1) {
    if (group < kMax) return ForGroupAndFormat<kMax / 2>(group, format, f);
  }
  switch (format) {
    case KvFormat::kF32: return f.template operator()<kMax, float>();
    case KvFormat::kBF16: return f.template operator()<kMax, uint16_t>();
    case KvFormat::kInt8: return f.template operator()<kMax, int8_t>();
  }
}

// The segments of the positions `block`'s tokens see.
struct Segments {
  int first, last;
};
inline Segments SegmentsOf(const QueryBlock& block) {
  return {block.first[0] / kAttentionSegment, (block.last + block.tokens - 1) / kAttentionSegment};
}

// Folds the partial results of `rows` rows per token into the first, then writes them
// to `block`'s output rows (t, g), g < group.
HWY_INLINE void FinishRows(const QueryBlock& block, size_t group, size_t head_dim, const std::array<PartialRows, kAttentionPartials>& partials) {
  const size_t tokens = static_cast<size_t>(block.tokens);
  for (int j = 1; j < kAttentionPartials; ++j) FoldRows(partials[0], partials[static_cast<size_t>(j)], tokens, group);
  for (size_t t = 0; t < tokens; ++t) {
    for (size_t g = 0; g < group; ++g) {
      std::copy_n(partials[0].out + partials[0].row(t, g) * head_dim, head_dim, block.out + t * block.stride + g * head_dim);
    }
  }
}

// The attention of `block` for its `group` heads (a power of two up to kMax) over all
// its positions, on one thread, with `thread`'s scratch: for each token t and head g,
//   out[t, g] = sum_p softmax_p(q[t, g] . k_p) v_p over p in [first[t], last + t].
template <int kMax>
void AttendHeads(int group, const QueryBlock& block, const KvCache& cache, int kv_head, AttentionScratch& scratch, int thread) {
  const size_t heads = static_cast<size_t>(group), D = static_cast<size_t>(cache.head_dim());
  std::array<PartialRows, kAttentionPartials> partials;
  for (int j = 0; j < kAttentionPartials; ++j) {
    partials[static_cast<size_t>(j)] = scratch.partial(thread, j, heads, D);
    ClearRows(partials[static_cast<size_t>(j)], static_cast<size_t>(block.tokens), heads);
  }
  const Segments segments = SegmentsOf(block);
  ForGroupAndFormat<kMax>(group, cache.format(), [&]<size_t kGroup, typename T>() {
    AttendSegments<kGroup, T>(block, segments.first, segments.last, 1, cache, kv_head, scratch.scores(thread),
                              scratch.segment(thread, kGroup, D), [&](int s) { return partials[static_cast<size_t>(s % kAttentionPartials)]; });
  });
  FinishRows(block, heads, D, partials);
}

// Attention for all kHeads heads of a layer over runs of consecutive query tokens, each
// run against its own cache (ops/kv_cache.hpp's AttentionRun: one run for a session's
// chunk or a draft step, one per sequence for a batch); token t of a run sees keys
// [first_visible(last + t), last + t]. The query heads of one kv head run together for up
// to kQueryBlock consecutive tokens of a run (one pass over its keys and values for all
// of them). When that leaves fewer work items than threads (decode, verification, a
// draft step, a small batch), an item's partial results over several segments go to
// different threads and are folded after; the heads are split too if still short of
// threads. `scratch` holds a thread's scores and partials for kHeads / kKvHeads *
// min(tokens, kQueryBlock) rows.
template <int kHeads, int kKvHeads, class FirstVisible>
void AttendAllHeads(ThreadPool& pool, std::span<const AttentionRun> runs, const FirstVisible& first_visible, AttentionScratch& scratch) {
  constexpr int kGroupHeads = kHeads / kKvHeads;
  const auto blocks_of = [](const AttentionRun& run) { return (run.tokens + kQueryBlock - 1) / kQueryBlock; };
  int blocks = 0;
  for (const AttentionRun& run : runs) blocks += blocks_of(run);
  const int items = blocks * kKvHeads;
  // Work item `item`'s cache, kv head and query block, from head `first_head` of the group.
  const auto item_block = [&](int item, int first_head) {
    int block_index = item / kKvHeads;
    const AttentionRun* run = runs.data();
    while (block_index >= blocks_of(*run)) block_index -= blocks_of(*run++);
    const int first_token = block_index * kQueryBlock;
    const int kv_head = item % kKvHeads;
    const std::size_t offset = (static_cast<std::size_t>(first_token) * kHeads + kv_head * kGroupHeads + first_head) * run->cache->head_dim();
    QueryBlock block{.q = run->q + offset,
                     .out = run->out + offset,
                     .tokens = std::min(kQueryBlock, run->tokens - first_token),
                     .stride = std::size_t{kHeads} * run->cache->head_dim(),
                     .last = run->last + first_token};
    for (int t = 0; t < block.tokens; ++t) block.first[t] = first_visible(block.last + t);
    return AttentionItem{*run->cache, kv_head, block};
  };
  // The pieces an item's segments are spread over: one per partial in use (one per
  // segment, up to all partials).
  const auto pieces_of = [&](int item) {
    const Segments segments = SegmentsOf(item_block(item, 0).block);
    return std::min(kAttentionPartials, segments.last - segments.first + 1);
  };
  int pieces = 0;
  if (items < pool.size()) {
    for (int item = 0; item < items; ++item) pieces += pieces_of(item);
  }
  int split = 1;
  if (pieces > items) {
    // Items by piece (and heads), piece i of n taking segments i, i + n, ... of its item:
    // one partial each. Item i's partials live in the scratch of thread i.
    while (split < kGroupHeads && pieces * split < pool.size()) split *= 2;
    const std::size_t group = kGroupHeads / static_cast<std::size_t>(split);
    for (int item = 0; item < items; ++item) {
      const AttentionItem work = item_block(item, 0);
      const std::size_t D = static_cast<std::size_t>(work.cache.head_dim());
      for (int j = 0; j < kAttentionPartials; ++j) ClearRows(scratch.partial(item, j, kGroupHeads, D), static_cast<std::size_t>(work.block.tokens), kGroupHeads);
    }
    pool.parallel_for(static_cast<std::size_t>(pieces) * split, [&](int thread, std::size_t begin, std::size_t end) {
      for (std::size_t piece = begin; piece < end; ++piece) {
        int index = static_cast<int>(piece) / split, item = 0;
        while (index >= pieces_of(item)) index -= pieces_of(item++);
        const int first_head = static_cast<int>(piece % static_cast<std::size_t>(split)) * static_cast<int>(group);
        const AttentionItem work = item_block(item, first_head);
        const std::size_t D = static_cast<std::size_t>(work.cache.head_dim());
        const Segments segments = SegmentsOf(work.block);
        ForGroupAndFormat<kGroupHeads>(static_cast<int>(group), work.cache.format(), [&]<size_t kGroup, typename T>() {
          AttendSegments<kGroup, T>(work.block, segments.first + index, segments.last, pieces_of(item), work.cache, work.kv_head,
                                    scratch.scores(thread), scratch.segment(thread, kGroup, D), [&](int s) {
                                      return scratch.partial(item, s % kAttentionPartials, kGroupHeads, D).from_head(static_cast<std::size_t>(first_head));
                                    });
        });
      }
    });
    pool.parallel_for(static_cast<std::size_t>(items), [&](int, std::size_t begin, std::size_t end) {
      for (std::size_t item = begin; item < end; ++item) {
        const AttentionItem work = item_block(static_cast<int>(item), 0);
        const std::size_t D = static_cast<std::size_t>(work.cache.head_dim());
        std::array<PartialRows, kAttentionPartials> partials;
        for (int j = 0; j < kAttentionPartials; ++j) partials[static_cast<std::size_t>(j)] = scratch.partial(static_cast<int>(item), j, kGroupHeads, D);
        FinishRows(work.block, kGroupHeads, D, partials);
      }
    });
    return;
  }
  // Items whole (the heads split if fewer than threads), each on one thread.
  while (split < kGroupHeads && items * split < pool.size()) split *= 2;
  const int group = kGroupHeads / split;
  pool.parallel_for(static_cast<std::size_t>(items) * split, [&](int thread, std::size_t begin, std::size_t end) {
    for (std::size_t piece = begin; piece < end; ++piece) {
      const AttentionItem work = item_block(static_cast<int>(piece) / split, static_cast<int>(piece % static_cast<std::size_t>(split)) * group);
      AttendHeads<kGroupHeads>(group, work.block, work.cache, work.kv_head, scratch, thread);
    }
  });
}

}  // namespace HWY_NAMESPACE
}  // namespace gemma4
HWY_AFTER_NAMESPACE();

#endif  // toggle

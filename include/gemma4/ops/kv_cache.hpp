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
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "gemma4/base/dtype.hpp"
#include "gemma4/error.hpp"

namespace gemma4 {

inline constexpr int kPositionTile = 16;
inline constexpr int kValueChunk = 32;  // elements; head dims are multiples of it

constexpr int round_up_to_tile(int positions) { return (positions + kPositionTile - 1) / kPositionTile * kPositionTile; }

// Query tokens whose attention runs together (ops/attention-inl.h): each key tile and
// value row is loaded once for all of them. Four covers a verification pass of three drafts.
inline constexpr int kQueryBlock = 4;

// Floats of scores one query head needs for keys [first, last]: whole tiles.
constexpr std::size_t attention_score_span(int first, int last) {
  return static_cast<std::size_t>(round_up_to_tile(last + 1) - (first - first % kPositionTile));
}

// How cached keys and values are stored: f32 as computed; bf16 rounded to nearest even
// (half the bytes); int8 with one f32 scale per position and kv head, max|x| / 127
// (about a quarter). Attention reads each format directly.
enum class KvFormat : std::uint8_t { kF32, kBF16, kInt8 };

constexpr std::string_view kv_format_name(KvFormat f) {
  switch (f) {
    case KvFormat::kF32: return "f32";
    case KvFormat::kBF16: return "bf16";
    case KvFormat::kInt8: return "int8";
  }
  return "?";
}

// Bytes of one cached key or value element (an int8 cache adds a f32 scale per position
// and kv head, for keys and for values).
constexpr std::size_t kv_element_bytes(KvFormat f) { return f == KvFormat::kF32 ? 4 : f == KvFormat::kBF16 ? 2 : 1; }

// What a session uses unless told otherwise: bf16 moved the toy pair's and the tiny
// models' logits by a KL of 2-3e-6 nats from f32 (int8: 1-4e-5), halves the cache and
// reads it faster at depth (README, "Long context").
inline constexpr KvFormat kDefaultKvFormat = KvFormat::kBF16;

constexpr std::optional<KvFormat> kv_format_from_name(std::string_view name) {
  for (KvFormat f : {KvFormat::kF32, KvFormat::kBF16, KvFormat::kInt8}) {
    if (kv_format_name(f) == name) return f;
  }
  return std::nullopt;
}

class KvCache {
  // Keys and values of one format; the variant's index is the KvFormat. bf16 is held as
  // its bits: this header stays free of Highway, whose kernels read them as bfloat16_t.
  template <typename T>
  struct Table {
    std::vector<T> k;  // [capacity / kPositionTile, kv_heads, head_dim, kPositionTile]
    std::vector<T> v;  // [kv_heads, head_dim / kValueChunk, capacity, kValueChunk]
  };
  using Tables = std::variant<Table<float>, Table<std::uint16_t>, Table<std::int8_t>>;

 public:
  // Room for at least `positions` positions, rounded up to whole tiles so that a tile's
  // positions are never split by the ring's wrap.
  KvCache(int positions, int kv_heads, int head_dim, KvFormat format = KvFormat::kF32)
      : capacity_(round_up_to_tile(positions)), kv_heads_(kv_heads), head_dim_(head_dim) {
    if (head_dim <= 0 || head_dim % kValueChunk != 0) fail(ErrorKind::kInvalidArgument, "KV cache: head dim {} is not a multiple of {}", head_dim, kValueChunk);
    const std::size_t elements = static_cast<std::size_t>(capacity_) * kv_heads * head_dim;
    const auto make = [&]<typename T>() { tables_.emplace<Table<T>>(Table<T>{std::vector<T>(elements), std::vector<T>(elements)}); };
    switch (format) {
      case KvFormat::kF32: make.operator()<float>(); break;
      case KvFormat::kBF16: make.operator()<std::uint16_t>(); break;
      case KvFormat::kInt8:
        make.operator()<std::int8_t>();
        key_scales_.resize(static_cast<std::size_t>(capacity_) * kv_heads);
        value_scales_.resize(key_scales_.size());
        break;
    }
  }

  int capacity() const { return capacity_; }
  int head_dim() const { return head_dim_; }
  KvFormat format() const { return static_cast<KvFormat>(tables_.index()); }
  std::size_t bytes() const {
    const std::size_t elements = 2 * static_cast<std::size_t>(capacity_) * kv_heads_ * head_dim_;
    return elements * kv_element_bytes(format()) + (key_scales_.size() + value_scales_.size()) * sizeof(float);
  }

  // Writes one position's keys and values, each [kv_heads, head_dim], in the cache's format.
  void store(int position, const float* keys, const float* values) {
    const int slot = position % capacity_;
    const std::size_t lane = static_cast<std::size_t>(slot % kPositionTile);
    const int tile_slot = slot - static_cast<int>(lane);
    std::visit(
        [&]<typename T>(Table<T>& t) {
          for (int h = 0; h < kv_heads_; ++h) {
            const float* key = keys + static_cast<std::size_t>(h) * head_dim_;
            const float* value = values + static_cast<std::size_t>(h) * head_dim_;
            float key_scale = 1.0f, value_scale = 1.0f;
            if constexpr (std::is_same_v<T, std::int8_t>) {
              key_scale = key_scales_[key_scale_offset(tile_slot, h) + lane] = int8_scale(key, head_dim_);
              value_scale = value_scales_[value_scale_offset(h) + static_cast<std::size_t>(slot)] = int8_scale(value, head_dim_);
            }
            T* tile = t.k.data() + key_tile_offset(tile_slot, h);
            for (int d = 0; d < head_dim_; ++d) tile[static_cast<std::size_t>(d) * kPositionTile + lane] = stored<T>(key[d], key_scale);
            for (int c = 0; c < head_dim_ / kValueChunk; ++c) {
              T* row = t.v.data() + value_chunk_offset(h, c) + static_cast<std::size_t>(slot) * kValueChunk;
              for (int i = 0; i < kValueChunk; ++i) row[i] = stored<T>(value[c * kValueChunk + i], value_scale);
            }
          }
        },
        tables_);
  }

  // One position as stored, for a prompt cache file (model/prompt_cache.hpp): its keys,
  // then its values (each [kv_heads, head_dim] elements of the format), then for int8
  // the key scales and the value scales ([kv_heads] floats each). copy_in() writes what
  // copy_out() read, bit for bit, to the slot of `position`.
  std::size_t position_bytes() const {
    return static_cast<std::size_t>(kv_heads_) * (2 * head_dim_ * kv_element_bytes(format()) + (key_scales_.empty() ? 0 : 2 * sizeof(float)));
  }
  void copy_out(int position, std::byte* out) const {
    for_each_stored(*this, position, [&](const void* element, std::size_t bytes) {
      std::memcpy(out, element, bytes);
      out += bytes;
    });
  }
  void copy_in(int position, const std::byte* in) {
    for_each_stored(*this, position, [&](void* element, std::size_t bytes) {
      std::memcpy(element, in, bytes);
      in += bytes;
    });
  }

  // The keys of positions [tile_start, tile_start + kPositionTile) for one kv head, as
  // [head_dim][kPositionTile] elements of the cache's format (T: float, std::uint16_t
  // for bf16, or std::int8_t); tile_start is a multiple of kPositionTile.
  template <typename T>
  const T* key_tile(int tile_start, int kv_head) const {
    return std::get<Table<T>>(tables_).k.data() + key_tile_offset(tile_start % capacity_, kv_head);
  }
  // The slot of `position`, and columns [kValueChunk * chunk, kValueChunk * (chunk + 1))
  // of one kv head's values, as [capacity][kValueChunk].
  int slot(int position) const { return position % capacity_; }
  template <typename T>
  const T* value_chunk(int kv_head, int chunk) const {
    return std::get<Table<T>>(tables_).v.data() + value_chunk_offset(kv_head, chunk);
  }
  // int8 only: the scales of a key tile's kPositionTile positions, and of the values
  // of one kv head by slot [capacity].
  const float* key_scales(int tile_start, int kv_head) const { return key_scales_.data() + key_scale_offset(tile_start % capacity_, kv_head); }
  const float* value_scales(int kv_head) const { return value_scales_.data() + value_scale_offset(kv_head); }

 private:
  // Calls move(element, bytes) for each element and scale of one position, in
  // position_bytes()' order; the elements are const when Self is.
  template <typename Self, typename Move>
  static void for_each_stored(Self& self, int position, Move&& move) {
    const int slot = position % self.capacity_;
    const std::size_t lane = static_cast<std::size_t>(slot % kPositionTile);
    const int tile_slot = slot - static_cast<int>(lane);
    std::visit(
        [&](auto& t) {
          constexpr std::size_t kBytes = sizeof(t.k[0]);
          for (int h = 0; h < self.kv_heads_; ++h) {
            auto* tile = t.k.data() + self.key_tile_offset(tile_slot, h);
            for (int d = 0; d < self.head_dim_; ++d) move(tile + static_cast<std::size_t>(d) * kPositionTile + lane, kBytes);
          }
          for (int h = 0; h < self.kv_heads_; ++h) {
            for (int c = 0; c < self.head_dim_ / kValueChunk; ++c) {
              move(t.v.data() + self.value_chunk_offset(h, c) + static_cast<std::size_t>(slot) * kValueChunk, kValueChunk * kBytes);
            }
          }
        },
        self.tables_);
    if (self.key_scales_.empty()) return;
    for (int h = 0; h < self.kv_heads_; ++h) move(self.key_scales_.data() + self.key_scale_offset(tile_slot, h) + lane, sizeof(float));
    for (int h = 0; h < self.kv_heads_; ++h) move(self.value_scales_.data() + self.value_scale_offset(h) + static_cast<std::size_t>(slot), sizeof(float));
  }

  static float int8_scale(const float* x, int n) {
    float max = 0.0f;
    for (int i = 0; i < n; ++i) max = std::max(max, std::fabs(x[i]));
    return max / 127.0f;
  }
  template <typename T>
  static T stored(float x, float int8_scale) {
    if constexpr (std::is_same_v<T, float>) {
      return x;
    } else if constexpr (std::is_same_v<T, std::uint16_t>) {
      return f32_to_bf16(x);
    } else {
      return static_cast<std::int8_t>(int8_scale > 0.0f ? std::clamp(std::nearbyint(x / int8_scale), -127.0f, 127.0f) : 0.0f);
    }
  }
  std::size_t value_chunk_offset(int kv_head, int chunk) const {
    return (static_cast<std::size_t>(kv_head) * (head_dim_ / kValueChunk) + chunk) * capacity_ * kValueChunk;
  }
  std::size_t key_tile_offset(int tile_slot, int kv_head) const { return key_scale_offset(tile_slot, kv_head) * head_dim_; }
  std::size_t key_scale_offset(int tile_slot, int kv_head) const {
    const std::size_t tile = static_cast<std::size_t>(tile_slot / kPositionTile);
    return (tile * kv_heads_ + kv_head) * kPositionTile;
  }
  std::size_t value_scale_offset(int kv_head) const { return static_cast<std::size_t>(kv_head) * capacity_; }

  int capacity_, kv_heads_, head_dim_;
  Tables tables_;
  std::vector<float> key_scales_;    // int8: [capacity / kPositionTile, kv_heads, kPositionTile]
  std::vector<float> value_scales_;  // int8: [kv_heads, capacity]
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

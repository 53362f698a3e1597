#pragma once
// A linear layer's weights quantized to int8 or int4 (layouts in quant/layout.hpp) and
// the reference quantizer that fills them: what the integer kernels
// (ops/quantized_matmul-inl.h) multiply, whether converted at load or viewed in a
// packed model directory.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>

#include "gemma4/base/aligned_array.hpp"
#include "gemma4/base/dtype.hpp"
#include "gemma4/error.hpp"
#include "gemma4/quant/layout.hpp"
#include "gemma4/quant/weight_format.hpp"

namespace gemma4 {

// A linear layer's weights [rows, cols] in int8 or int4, packed as described above.
// Its bytes live in storage the caller provides (the loader puts all matrices in one
// arena, so no per-matrix rounding to huge pages becomes resident), in its own, or in
// a read-only mapping of a packed model (weights/packed_model.hpp).
class QuantizedMatrix {
 public:
  // Bytes of storage a matrix needs (64-byte aligned parts).
  static std::size_t storage_bytes(WeightFormat format, std::size_t rows, std::size_t cols) {
    if (format == WeightFormat::kInt4) return rows / kRowBlock * Int4Layout::block_bytes(cols);
    return rows * cols + round64(rows * sizeof(float));  // weights, then the row scales
  }

  // storage: storage_bytes() bytes, 64-byte aligned, outliving the matrix; nullptr = own.
  QuantizedMatrix(WeightFormat format, std::size_t rows, std::size_t cols, std::byte* storage = nullptr)
      : format_(format), rows_(rows), cols_(cols) {
    if (format == WeightFormat::kBF16 || !packable(format, rows, cols)) {
      fail(ErrorKind::kInvalidArgument, "cannot pack a [{}, {}] matrix as {}", rows, cols, weight_format_name(format));
    }
    if (storage == nullptr) {
      owned_ = detail::aligned_array<std::byte>(storage_bytes(format, rows, cols));
      storage = owned_.get();
    }
    writable_ = storage;
    view(storage);
  }

  // A read-only view of bytes packed earlier: `packed` holds storage_bytes() bytes and
  // outlives the matrix. quantize_blocks() must not be called on it.
  QuantizedMatrix(WeightFormat format, std::size_t rows, std::size_t cols, std::span<const std::byte> packed)
      : format_(format), rows_(rows), cols_(cols) {
    if (format == WeightFormat::kBF16 || !packable(format, rows, cols) || packed.size() != storage_bytes(format, rows, cols)) {
      fail(ErrorKind::kInvalidArgument, "cannot view {} bytes as a [{}, {}] {} matrix", packed.size(), rows, cols, weight_format_name(format));
    }
    view(packed.data());
  }

  WeightFormat format() const { return format_; }
  std::size_t rows() const { return rows_; }
  std::size_t cols() const { return cols_; }
  const std::uint8_t* weights() const { return weights_; }  // int4: weights and scales
  // Where row block b's int4 weights and scales are, from weights().
  Int4Layout::Place int4_place(std::size_t block) const { return Int4Layout::place(block, rows_ / kRowBlock, cols_); }
  const float* row_scales() const { return row_scales_; }      // int8
  // All its storage_bytes(), as a packed model holds them.
  std::span<const std::byte> packed() const {
    return {reinterpret_cast<const std::byte*>(weights_), storage_bytes(format_, rows_, cols_)};
  }
  // Bytes a matmul reads: the packed weights and their scales.
  std::size_t bytes() const {
    return format_ == WeightFormat::kInt4 ? storage_bytes(format_, rows_, cols_) : rows_ * cols_ + rows_ * sizeof(float);
  }

  // Quantizes rows [16 * first_block, 16 * end_block) from `rows`, those rows row-major
  // (element type float or std::uint16_t bf16 bits). Blocks are independent, so
  // threads may fill disjoint block ranges.
  template <typename Source>
  void quantize_blocks(const Source* rows, std::size_t first_block, std::size_t end_block) {
    if (writable_ == nullptr) fail(ErrorKind::kInvalidArgument, "a [{}, {}] matrix viewed in packed bytes is read-only", rows_, cols_);
    for (std::size_t r = first_block * kRowBlock; r < end_block * kRowBlock; ++r) {
      const Source* row = rows + (r - first_block * kRowBlock) * cols_;
      if (format_ == WeightFormat::kInt8) {
        quantize_int8_row(row, r);
      } else {
        for (std::size_t g = 0; g < cols_ / kInt4Group; ++g) quantize_int4_group(row + g * kInt4Group, r, g);
      }
    }
  }

  // The first row in [first_row, end_row) with a scale that is not finite (or, int8,
  // negative): a packed file with such a scale is corrupt, and would turn logits into NaN.
  std::optional<std::size_t> first_invalid_scale(std::size_t first_row = 0, std::size_t end_row = SIZE_MAX) const {
    end_row = std::min(end_row, rows_);
    for (std::size_t row = first_row; row < end_row; ++row) {
      if (format_ == WeightFormat::kInt8) {
        if (!(std::isfinite(row_scales_[row]) && row_scales_[row] >= 0.0f)) return row;
        continue;
      }
      const Int4Layout::Place block = int4_place(row / kRowBlock);
      for (std::size_t g = 0; g < cols_ / kInt4Group; ++g) {
        std::uint16_t scale;
        std::memcpy(&scale, weights_ + block.scale(g, row % kRowBlock), 2);
        if ((scale & 0x7f80) == 0x7f80) return row;  // exponent all ones: inf or NaN
      }
    }
    return std::nullopt;
  }

  // Rows [first_row, first_row + count) as floats, row after row, the values the kernels
  // multiply by: a table lookup (the embedding or the PLE table of a packed model), and
  // the tests' reference.
  void dequantize_rows(std::size_t first_row, std::size_t count, float* out) const {
    for (std::size_t row = first_row; row < first_row + count; ++row, out += cols_) {
      const std::size_t lane = row % kRowBlock;
      if (format_ == WeightFormat::kInt8) {
        const std::uint8_t* tiles = weights_ + row / kRowBlock * kRowBlock * cols_ + lane * 4;
        const float scale = row_scales_[row];
        for (std::size_t c = 0; c < cols_; ++c) out[c] = static_cast<float>(int{tiles[c / 4 * 64 + c % 4]} - 128) * scale;
        continue;
      }
      const Int4Layout::Place block = int4_place(row / kRowBlock);
      for (std::size_t g = 0; g < cols_ / kInt4Group; ++g) {
        std::uint16_t scale_bits;
        std::memcpy(&scale_bits, weights_ + block.scale(g, lane), 2);
        const float scale = bf16_to_f32(scale_bits);
        const std::uint8_t* tiles = weights_ + block.tiles(g) + lane * 4;
        float* group = out + g * kInt4Group;
        for (std::size_t c = 0; c < kInt4Group; ++c) {
          const std::uint8_t byte = tiles[c / 8 * Int4Layout::kTileBytes + c % 4];
          group[c] = static_cast<float>((c % 8 < 4 ? byte & 0xf : byte >> 4) - 8) * scale;
        }
      }
    }
  }

 private:
  static float value(float v) { return v; }
  static float value(std::uint16_t bf16) { return bf16_to_f32(bf16); }
  // v rounded half away from zero after clamping to [lo, hi], kept in float: unlike
  // std::lrint this compiles to a few vector instructions (no libm call, no errno).
  static float round_clamped(float v, float lo, float hi) {
    v = std::clamp(v, lo, hi);
    return std::trunc(v + std::copysign(0.5f, v));
  }

  // A weight that is not finite would round to no level at all (a float-to-int cast of
  // NaN is undefined) and turn every logit into NaN: a corrupt checkpoint. The callers
  // name the tensor.
  template <typename Source>
  static void check_finite(const Source* values, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) {
      if (!std::isfinite(value(values[i]))) fail(ErrorKind::kBadFile, "a weight is {} (weights must be finite)", value(values[i]));
    }
  }

  // The loops below read only locals: stores through std::uint8_t* may alias anything,
  // and members read inside them would be reloaded on every element.
  template <typename Source>
  void quantize_int8_row(const Source* row, std::size_t r) {
    const std::size_t cols = cols_;
    check_finite(row, cols);
    float absmax = 0.0f;
    for (std::size_t c = 0; c < cols; ++c) absmax = std::max(absmax, std::fabs(value(row[c])));
    const float inverse = absmax > 0.0f ? 127.0f / absmax : 0.0f;
    reinterpret_cast<float*>(writable_ + rows_ * cols)[r] = absmax / 127.0f;
    std::uint8_t* tiles = reinterpret_cast<std::uint8_t*>(writable_) + (r / kRowBlock) * (cols / 4) * 64 + (r % kRowBlock) * 4;
    for (std::size_t c = 0; c < cols; c += 4) {
      std::uint8_t quad[4];
      for (std::size_t j = 0; j < 4; ++j) {
        quad[j] = static_cast<std::uint8_t>(round_clamped(value(row[c + j]) * inverse, -127.0f, 127.0f) + 128.0f);
      }
      std::memcpy(tiles + (c / 4) * 64, quad, 4);
    }
  }

  // The scale of the least squared error among 16 candidates: the element of largest
  // magnitude mapped to -7.25 ... -9 (-8 is llama.cpp's Q4_0) or to 6.25 ... 8 levels,
  // each candidate's rounding then refitted by least squares (as llama.cpp's k-quants
  // search). It takes a quarter to a third off int4's KL divergence on the toy pair and
  // 10-23% on the tiny models, for twice the conversion time. The products are exact in
  // double, so the sums, and the choice, are the same on every target with or without
  // FMA contraction: a model packed on one machine holds the bytes another converts at
  // load. The clamp is on integers, which the compilers vectorise across the candidates.
  static float int4_group_scale(const float (&w)[kInt4Group], float extreme) {
    float chosen = extreme / -8.0f;
    if (!std::isfinite(extreme) || std::fabs(extreme) < 1e-30f) return chosen;  // each |w * inverse| stays <= 9
    constexpr int kCandidates = 16;
    float inverse[kCandidates];
    for (int k = 0; k < kCandidates / 2; ++k) {
      inverse[k] = -(7.25f + 0.25f * k) / extreme;
      inverse[kCandidates / 2 + k] = (6.25f + 0.25f * k) / extreme;
    }
    double sum_wq[kCandidates] = {};
    float sum_qq[kCandidates] = {};
    for (const float x : w) {
      for (int k = 0; k < kCandidates; ++k) {
        const float v = x * inverse[k];
        const float q = static_cast<float>(std::clamp(static_cast<int>(v + std::copysign(0.5f, v)), -8, 7));
        sum_wq[k] += static_cast<double>(x) * q;
        sum_qq[k] += q * q;
      }
    }
    double best = 0.0;  // the squared error is sum(w^2) - sum_wq^2 / sum_qq at scale sum_wq / sum_qq
    for (int k = 0; k < kCandidates; ++k) {
      const double explained = sum_wq[k] * sum_wq[k] / sum_qq[k];
      if (explained > best) {
        best = explained;
        chosen = static_cast<float>(sum_wq[k] / sum_qq[k]);
      }
    }
    return chosen;
  }

  // The scale is rounded to bf16 before the weights are rounded to it.
  template <typename Source>
  void quantize_int4_group(const Source* group, std::size_t r, std::size_t g) {
    check_finite(group, kInt4Group);
    float w[kInt4Group];
    float extreme = 0.0f;
    for (std::size_t c = 0; c < kInt4Group; ++c) {
      w[c] = value(group[c]);
      if (std::fabs(w[c]) > std::fabs(extreme)) extreme = w[c];
    }
    const std::uint16_t scale_bits = f32_to_bf16(int4_group_scale(w, extreme));
    const float scale = bf16_to_f32(scale_bits);
    const float inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
    const std::size_t lane = r % kRowBlock;
    std::uint8_t* bytes = reinterpret_cast<std::uint8_t*>(writable_);
    const Int4Layout::Place block = int4_place(r / kRowBlock);
    std::memcpy(bytes + block.scale(g, lane), &scale_bits, 2);
    // An odd group count leaves the last scale word's high half unused: zero, so that
    // packing the same weights always gives the same bytes.
    if (g % 2 == 0 && g + 1 == cols_ / kInt4Group) std::memset(bytes + block.scale(g + 1, lane), 0, 2);
    std::uint8_t* tiles = bytes + block.tiles(g) + lane * 4;
    for (std::size_t c = 0; c < kInt4Group; c += 8) {
      std::uint8_t quad[4];
      for (std::size_t j = 0; j < 4; ++j) {
        const int low = static_cast<int>(round_clamped(w[c + j] * inverse, -8.0f, 7.0f)) + 8;
        const int high = static_cast<int>(round_clamped(w[c + 4 + j] * inverse, -8.0f, 7.0f)) + 8;
        quad[j] = static_cast<std::uint8_t>(low | high << 4);
      }
      std::memcpy(tiles + (c / 8) * 64, quad, 4);
    }
  }

  static std::size_t round64(std::size_t bytes) { return (bytes + 63) / 64 * 64; }

  void view(const std::byte* storage) {
    weights_ = reinterpret_cast<const std::uint8_t*>(storage);
    if (format_ == WeightFormat::kInt8) row_scales_ = reinterpret_cast<const float*>(storage + rows_ * cols_);
  }

  WeightFormat format_;
  std::size_t rows_, cols_;
  std::unique_ptr<std::byte[], detail::FreeDeleter> owned_;
  std::byte* writable_ = nullptr;  // null for a view of packed bytes
  const std::uint8_t* weights_ = nullptr;
  const float* row_scales_ = nullptr;  // int8
};

}  // namespace gemma4

#pragma once
// The byte layouts of int8 and int4 matrices (quant/quantized_matrix.hpp), the same for
// every SIMD target and in a packed model directory.
//
// Both layouts group 16 consecutive rows (output features) into a row block and store
// a row block's weights interleaved, 4 input columns of each of the 16 rows per 64
// bytes. One 64-byte load then feeds a 4-way byte dot product (AVX-512 VNNI) for 16
// rows against 4 activations broadcast to all lanes, so the kernels never reduce
// across lanes. The layout is the same for every SIMD target.
//
//   int8: byte = q + 128 (q in [-127, 127]), one f32 scale per row: w = q * scale.
//         Tile (block b, columns 4c..4c+3): bytes [(b * cols/4 + c) * 64, +64),
//         byte 4r + j = row 16b + r, column 4c + j.
//   int4: nibble = q + 8 (q in [-8, 7]), a bf16 scale per row per 32-column group:
//         w = q * scale. A tile (columns 8c..8c+7 of a block) is 64 bytes; byte 4r + j
//         holds column 8c + j in its low nibble and column 8c + 4 + j in its high one.
//         Row blocks are stored in panels of two (the last one alone if their count
//         is odd), a panel as a run of units, one per two groups: each block's 64-byte
//         line of their scales, then the even group's 4 tiles of each block, then the
//         odd group's (Int4Layout). The kernels take a panel's two blocks at a time and
//         so read one sequential stream, and use each activation they load for both
//         blocks: a pass over 4 tokens has half the broadcasts per weight byte. (Scales
//         in an array of their own were a second stream, which cost a quarter of the
//         decode speed; two blocks stored one after the other were two streams, which
//         lost what the shared broadcasts saved.) The scale line holds a 32-bit word
//         per row, the even group's bf16 in its low half and the odd group's in its
//         high half: one shift or one mask turns a word into an f32 scale.

#include <algorithm>
#include <bit>
#include <cstddef>

#include "gemma4/quant/weight_format.hpp"

namespace gemma4 {

// Byte offsets of an int4 matrix's parts (layout above).
struct Int4Layout {
  static constexpr std::size_t kTileBytes = 64;
  static constexpr std::size_t kTilesPerGroup = kInt4Group / 8;
  static constexpr std::size_t kGroupBytes = kTilesPerGroup * kTileBytes;
  static constexpr std::size_t kUnitBytes = kTileBytes + 2 * kGroupBytes;  // per block: scales + two groups
  static constexpr std::size_t kPanelBlocks = 2;

  // A row block's bytes; a panel holds its blocks' bytes.
  static constexpr std::size_t block_bytes(std::size_t cols) {
    const std::size_t groups = cols / kInt4Group;
    return groups * kGroupBytes + (groups + 1) / 2 * kTileBytes;
  }

  // Where one row block's parts are: `blocks` blocks in its panel (2, or 1 for an odd
  // count's last), `index` its place there, `panel` the panel's first byte.
  struct Place {
    std::size_t panel, blocks, index;
    // The scale line of groups g and g + 1 (g even); the bf16 scale of group g, row lane
    // (the low half of a word comes first in memory, as on every target gemma4 runs on).
    constexpr std::size_t scale_line(std::size_t g) const { return unit(g) + index * kTileBytes; }
    constexpr std::size_t scale(std::size_t g, std::size_t lane) const { return scale_line(g) + lane * 4 + g % 2 * 2; }
    // Group g's first tile; the panel's next block has its tiles kGroupBytes further.
    constexpr std::size_t tiles(std::size_t g) const { return unit(g) + blocks * kTileBytes + (g % 2 * blocks + index) * kGroupBytes; }
    // The unit of groups g and g + 1 (g even) of the whole panel.
    constexpr std::size_t unit(std::size_t g) const { return panel + g / 2 * blocks * kUnitBytes; }
  };
  static_assert(std::endian::native == std::endian::little);
  // Row block b of a matrix of `blocks` row blocks and `cols` columns.
  static constexpr Place place(std::size_t b, std::size_t blocks, std::size_t cols) {
    const std::size_t first = b - b % kPanelBlocks;
    return {first * block_bytes(cols), std::min(kPanelBlocks, blocks - first), b % kPanelBlocks};
  }
};

}  // namespace gemma4

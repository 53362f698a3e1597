#pragma once
// The int8/int4 matrices of a model, in one of two homes: converted at load time into
// one 2 MiB-aligned arena (one allocation, on huge pages: decode streams every byte of it
// per token), or used in place from a packed model's mapping (weights/packed_model.hpp).

#include <sys/mman.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "gemma4/base/mapped_file.hpp"
#include "gemma4/base/tensor.hpp"
#include "gemma4/quant/quantized_matrix.hpp"
#include "gemma4/parallel/thread_pool.hpp"
#include "gemma4/weights/checkpoint.hpp"
#include "gemma4/weights/load_options.hpp"
#include "gemma4/weights/packed_model.hpp"

namespace gemma4 {

class PackedMatrices {
 public:
  // One matrix to pack, from its dense elements; `source_mapped`: they are in the
  // checkpoint's mapping (not a widened copy), so their pages may be dropped once read.
  struct Source {
    PackedMatrixShape shape;
    TensorView elements;
    bool source_mapped;
  };

  // Packs every source, a slice of rows at a time; the source pages of each slice are
  // dropped from memory once packed, so the peak stays near the result. Errors name
  // `where` (the checkpoint) and the tensor.
  void convert(const std::vector<Source>& sources, ThreadPool& pool, std::string_view where) {
    std::size_t arena_bytes = 0;
    for (const Source& s : sources) arena_bytes += QuantizedMatrix::storage_bytes(s.shape.format, s.shape.rows, s.shape.cols);
    arena_ = detail::aligned_array<std::byte>(arena_bytes);
    std::byte* next = arena_.get();
    for (const Source& s : sources) {
      const PackedMatrixShape& m = s.shape;
      auto matrix = std::make_unique<QuantizedMatrix>(m.format, m.rows, m.cols, next);
      next += QuantizedMatrix::storage_bytes(m.format, m.rows, m.cols);
      try {
        for_each_slice(m.rows, s.elements, s.source_mapped, [&](std::size_t first, std::size_t end, const TensorView&) {
          quantize_blocks(*matrix, s.elements, first, end, pool);
        });
      } catch (const Error& e) {
        fail(e.kind(), "{}: {}: {}", where, m.name, e.what());
      }
      matrices_.emplace_back(m.name, std::move(matrix));
    }
  }

  // Uses `shapes` in place from a packed model, after checking their sizes; their names
  // are under `name_prefix` there (a model's checkpoint prefix; "" for an assistant's).
  void view(const Checkpoint& packed_model, const std::vector<PackedMatrixShape>& shapes, std::string_view name_prefix) {
    auto views = packed_matrix_views(packed_model, shapes, name_prefix);
    for (std::size_t i = 0; i < shapes.size(); ++i) matrices_.emplace_back(shapes[i].name, std::move(views[i]));
  }

  // Calls f(first, end, slice) for slices [first, end) of the row blocks of a [rows, ...]
  // matrix whose dense elements are `elements`, `slice` being the slice's elements, about
  // `slice_bytes` of them each; drops each slice's source pages once f is done with it
  // when `source_mapped` (in the checkpoint's mapping, not a widened copy). Slices hold
  // whole int4 panels, so a slice packed as a matrix of its own has the bytes it has in
  // the whole (a packed model is written so).
  template <typename F>
  static void for_each_slice(std::size_t rows, const TensorView& elements, bool source_mapped, F&& f,
                             std::size_t slice_bytes = kConversionSliceBytes) {
    constexpr std::size_t kPanel = Int4Layout::kPanelBlocks;
    const std::size_t cols = elements.size() / rows, block_bytes = elements.bytes().size() / rows * kRowBlock;
    const std::size_t blocks = rows / kRowBlock;
    const std::size_t slice = std::max(kPanel, slice_bytes / block_bytes / kPanel * kPanel);
    for (std::size_t first = 0; first < blocks; first += slice) {
      const std::size_t end = std::min(blocks, first + slice);
      const TensorView part{elements.data + first * block_bytes, elements.dtype,
                            {static_cast<std::int64_t>((end - first) * kRowBlock), static_cast<std::int64_t>(cols)}};
      f(first, end, part);
      if (source_mapped) advise(part.bytes(), MADV_DONTNEED);
    }
  }

  // Quantizes row blocks [first, end) of `matrix` from `elements`, whose first element is
  // that of the matrix's row 0. Blocks are independent: the pool splits them.
  static void quantize_blocks(QuantizedMatrix& matrix, const TensorView& elements, std::size_t first, std::size_t end, ThreadPool& pool) {
    const std::size_t block = kRowBlock * matrix.cols();
    pool.parallel_for(end - first, [&](int, std::size_t begin, std::size_t stop) {
      const std::size_t from = first + begin, to = first + stop;
      if (elements.dtype == DType::kBF16) {
        matrix.quantize_blocks(reinterpret_cast<const std::uint16_t*>(elements.data) + from * block, from, to);
      } else if (elements.dtype == DType::kF32) {
        matrix.quantize_blocks(reinterpret_cast<const float*>(elements.data) + from * block, from, to);
      } else {  // f16, left as stored in a table read by rows: widen block by block
        std::vector<float> widened(block);
        for (std::size_t b = from; b < to; ++b) {
          for (std::size_t i = 0; i < block; ++i) widened[i] = elements.at(b * block + i);
          matrix.quantize_blocks(widened.data(), b, b + 1);
        }
      }
    });
  }

  // (name, matrix) in the order they were packed or mapped.
  const std::vector<std::pair<std::string, std::unique_ptr<QuantizedMatrix>>>& matrices() const { return matrices_; }
  bool in_place() const { return arena_ == nullptr; }

  // Conversion reads about this many source bytes between two page drops.
  static constexpr std::size_t kConversionSliceBytes = std::size_t{16} << 20;

 private:
  std::unique_ptr<std::byte[], detail::FreeDeleter> arena_;  // converted matrices' bytes, or null: in place
  std::vector<std::pair<std::string, std::unique_ptr<QuantizedMatrix>>> matrices_;
};

// Points each planned slot's matmul form at its packed matrix, made or viewed in the
// order of `planned`, for a target model and an assistant alike, and counts them in
// `report`. A packed file's scales are checked here, where they are read at load anyway,
// except a table read by rows, whose rows are checked as they are used: a corrupt scale
// would turn logits into NaN. Errors name `file` and the tensor (`prefix` + its name).
inline void attach_packed(const std::vector<PlannedMatrix<MatrixView>>& planned, const PackedMatrices& packed, LoadReport& report,
                          const std::string& file, std::string_view prefix) {
  for (std::size_t i = 0; i < planned.size(); ++i) {
    const QuantizedMatrix* matrix = packed.matrices()[i].second.get();
    const PlannedMatrix<MatrixView>& m = planned[i];
    if (matrix->format() != report.format) report.kept_int8.push_back(m.shape.name);
    if (!m.read_by_rows) {
      report.quantized_bytes += matrix->bytes();
      if (const auto row = report.packed_model ? matrix->first_invalid_scale() : std::nullopt) {
        fail(ErrorKind::kBadFile, "{}: {}{}: row {} has an invalid scale (corrupt file)", file, prefix, m.shape.name, *row);
      }
    }
    m.slot->linear = matrix;
  }
}

}  // namespace gemma4

#pragma once
// The int8/int4 matrices of a model, in one of two homes: converted at load time into
// one 2 MiB-aligned arena (one allocation, on huge pages: decode streams every byte of it
// per token), or mapped from a converted file (weights/converted_file.hpp).

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
#include "gemma4/ops/packed_matrix.hpp"
#include "gemma4/parallel/thread_pool.hpp"
#include "gemma4/weights/converted_file.hpp"

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
  // dropped from memory once packed, so the peak stays near the result. Blocks of rows
  // are independent: the pool splits each slice between its threads.
  void convert(const std::vector<Source>& sources, ThreadPool& pool) {
    std::size_t arena_bytes = 0;
    for (const Source& s : sources) arena_bytes += QuantizedMatrix::storage_bytes(s.shape.format, s.shape.rows, s.shape.cols);
    arena_ = detail::aligned_array<std::byte>(arena_bytes);
    std::byte* next = arena_.get();
    for (const Source& s : sources) {
      const PackedMatrixShape& m = s.shape;
      auto matrix = std::make_unique<QuantizedMatrix>(m.format, m.rows, m.cols, next);
      next += QuantizedMatrix::storage_bytes(m.format, m.rows, m.cols);
      const std::size_t row_bytes = m.cols * dtype_size(s.elements.dtype);
      const std::size_t blocks = m.rows / kRowBlock;
      const std::size_t slice = std::max<std::size_t>(1, kConversionSliceBytes / (row_bytes * kRowBlock));
      for (std::size_t first = 0; first < blocks; first += slice) {
        const std::size_t end = std::min(blocks, first + slice);
        pool.parallel_for(end - first, [&](int, std::size_t begin, std::size_t stop) {
          if (s.elements.dtype == DType::kBF16) {
            matrix->quantize_blocks(reinterpret_cast<const std::uint16_t*>(s.elements.data), first + begin, first + stop);
          } else {
            matrix->quantize_blocks(reinterpret_cast<const float*>(s.elements.data), first + begin, first + stop);
          }
        });
        if (s.source_mapped) {
          advise({s.elements.data + first * kRowBlock * row_bytes, (end - first) * kRowBlock * row_bytes}, MADV_DONTNEED);
        }
      }
      matrices_.emplace_back(m.name, std::move(matrix));
    }
  }

  // Maps every matrix of `shapes` from a converted file, after checking it was written
  // for `identity` and holds exactly these matrices, every scale finite.
  void map(const std::filesystem::path& path, const ConvertedIdentity& identity, const std::filesystem::path& checkpoint_dir,
           const std::vector<PackedMatrixShape>& shapes) {
    const ConvertedFile& file = file_.emplace(path, identity, checkpoint_dir);
    auto views = file.matrices(shapes);
    for (std::size_t i = 0; i < shapes.size(); ++i) matrices_.emplace_back(shapes[i].name, std::move(views[i]));
  }

  // (name, matrix) in the order they were packed or mapped.
  const std::vector<std::pair<std::string, std::unique_ptr<QuantizedMatrix>>>& matrices() const { return matrices_; }
  bool mapped_from_file() const { return file_.has_value(); }

 private:
  // Conversion reads this many source bytes between two page drops.
  static constexpr std::size_t kConversionSliceBytes = std::size_t{16} << 20;

  std::unique_ptr<std::byte[], detail::FreeDeleter> arena_;  // converted matrices' bytes
  std::optional<ConvertedFile> file_;                         // or the file mapping them
  std::vector<std::pair<std::string, std::unique_ptr<QuantizedMatrix>>> matrices_;
};

}  // namespace gemma4

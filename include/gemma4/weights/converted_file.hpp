#pragma once
// A converted weights file: the int8/int4 matrices of one checkpoint, packed exactly as
// the kernels read them, so that loading maps them instead of converting (E2B: 5 s).
//
// It is a safetensors file, validated by the same parser: one U8 tensor per matrix,
// named as the checkpoint's tensor without its prefix ("layers.0.q_proj.weight"), of
// QuantizedMatrix::storage_bytes() bytes, the data section page-aligned so that every
// matrix starts on a 64-byte line. Its __metadata__ says what it holds:
//   format   "gemma4-converted"
//   layout   the packed layout's version (kConvertedLayout); a build that packs
//            differently refuses older files instead of misreading them
//   variant  the compiled variant, e.g. "e2b"
//   weights  "int8" or "int4" (int4 files hold int8 matrices where columns are not a
//            multiple of 32, as conversion makes them)
//   source   a fingerprint of the checkpoint tensors it was converted from
// The embedding lookup, the PLE table and the norms still come from the checkpoint,
// which must be the one the file was converted from.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "gemma4/error.hpp"
#include "gemma4/weights/checkpoint.hpp"
#include "gemma4/ops/packed_matrix.hpp"
#include "gemma4/weights/safetensors.hpp"
#include "gemma4/weights/safetensors_writer.hpp"

namespace gemma4 {

inline constexpr std::string_view kConvertedFormat = "gemma4-converted";
// Bump whenever quantize.hpp's packed layouts or rounding change.
inline constexpr std::string_view kConvertedLayout = "1";
// The data section starts on a page, so every matrix (64-byte multiples) starts on a line.
inline constexpr std::size_t kConvertedAlignment = 4096;

// One matrix a converted file holds.
struct PackedMatrixShape {
  std::string name;
  WeightFormat format;  // int8 also in int4 files, where columns are not a multiple of 32
  std::size_t rows, cols;
};

// What a converted file must have been made for.
struct ConvertedIdentity {
  std::string variant;
  WeightFormat format;
  std::string source;  // source_fingerprint()
};

// A cheap identity of the checkpoint tensors `names` (prefix added): their dtype, shape
// and eight 4 KiB windows spread over their bytes. Hashing every byte would cost about
// what converting does; a different checkpoint of the same shape (another fine-tune)
// differs in every window.
inline std::string source_fingerprint(const Checkpoint& checkpoint, const std::vector<std::string>& names) {
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  const auto mix = [&h](std::span<const std::byte> bytes) {
    for (std::byte b : bytes) h = (h ^ static_cast<std::uint8_t>(b)) * 0x100000001b3ull;
  };
  const auto mix_text = [&](std::string_view text) { mix(std::as_bytes(std::span(text.data(), text.size() + 1))); };
  for (const auto& name : names) {
    const std::string full = std::string(checkpoint.prefix()) + name;
    const TensorInfo* t = checkpoint.find(full);
    if (t == nullptr) fail(ErrorKind::kInvalidArgument, "{}: no tensor {} to fingerprint", checkpoint.dir().string(), full);
    mix_text(full);
    mix_text(t->dtype_name);
    for (std::int64_t d : t->shape) mix_text(std::to_string(d));
    constexpr std::size_t kWindow = 4096, kWindows = 8;
    const std::span<const std::byte> bytes = t->bytes;
    if (bytes.size() <= kWindow * kWindows) {
      mix(bytes);
      continue;
    }
    for (std::size_t i = 0; i < kWindows; ++i) mix(bytes.subspan(i * (bytes.size() - kWindow) / (kWindows - 1), kWindow));
  }
  return fmt::format("{:016x}", h);
}

// Writes `matrices` (name, matrix), in this order, as a converted file for `identity`.
inline void write_converted_file(const std::filesystem::path& path, const ConvertedIdentity& identity,
                                 const std::vector<std::pair<std::string, const QuantizedMatrix*>>& matrices) {
  std::vector<SafetensorsEntry> entries;
  for (const auto& [name, m] : matrices) {
    const std::size_t bytes = m->packed().size();
    entries.push_back({name, "U8", {static_cast<std::int64_t>(bytes)}, bytes});
  }
  SafetensorsWriter file(path,
                         {{"format", std::string(kConvertedFormat)},
                          {"layout", std::string(kConvertedLayout)},
                          {"variant", identity.variant},
                          {"weights", std::string(weight_format_name(identity.format))},
                          {"source", identity.source}},
                         entries, kConvertedAlignment);
  for (const auto& [name, m] : matrices) file.write(m->packed().data(), m->packed().size());
  file.finish();
}

// A converted file, mapped, its metadata checked against what the loader expects.
class ConvertedFile {
 public:
  ConvertedFile(const std::filesystem::path& path, const ConvertedIdentity& expected, const std::filesystem::path& checkpoint_dir)
      : file_(path), variant_(expected.variant) {
    const auto& meta = file_.metadata();
    const auto field = [&](const std::string& key) {
      const auto it = meta.find(key);
      return it == meta.end() ? std::string("(missing)") : it->second;
    };
    if (field("format") != kConvertedFormat) {
      fail(ErrorKind::kConfigMismatch, "{}: not a gemma4 converted weights file (__metadata__ format is '{}', expected '{}')", where(), field("format"),
           kConvertedFormat);
    }
    if (field("layout") != kConvertedLayout) {
      fail(ErrorKind::kConfigMismatch, "{}: packed with layout version {}, but this build reads version {}: convert the checkpoint again", where(),
           field("layout"), kConvertedLayout);
    }
    if (field("variant") != expected.variant) {
      fail(ErrorKind::kConfigMismatch, "{}: converted for variant {}, but the checkpoint is {}", where(), field("variant"), expected.variant);
    }
    const std::string weights(weight_format_name(expected.format));
    if (field("weights") != weights) fail(ErrorKind::kConfigMismatch, "{}: holds {} weights, but {} were asked for", where(), field("weights"), weights);
    if (field("source") != expected.source) {
      fail(ErrorKind::kConfigMismatch, "{}: converted from another checkpoint than {} (source fingerprint {}, this checkpoint's is {}): convert it again",
           where(), checkpoint_dir.string(), field("source"), expected.source);
    }
  }

  // Views of the file's matrices, one per entry of `wanted`, in that order, after
  // checking that the file holds exactly these, each of the size and alignment its
  // format needs and with finite scales; one error lists every problem.
  std::vector<std::unique_ptr<QuantizedMatrix>> matrices(const std::vector<PackedMatrixShape>& wanted) const {
    std::vector<std::string> problems;
    std::set<std::string> expected;
    for (const auto& m : wanted) {
      expected.insert(m.name);
      const TensorInfo* t = file_.find(m.name);
      if (t == nullptr) {
        problems.push_back(fmt::format("{}: missing", m.name));
        continue;
      }
      const std::size_t want = QuantizedMatrix::storage_bytes(m.format, m.rows, m.cols);
      if (t->dtype_name != "U8" || t->shape != std::vector<std::int64_t>{static_cast<std::int64_t>(want)}) {
        problems.push_back(fmt::format("{}: {} [{}], expected U8 [{}] (a [{}, {}] {} matrix)", m.name, t->dtype_name,
                                       fmt::join(t->shape, ", "), want, m.rows, m.cols, weight_format_name(m.format)));
      } else if (reinterpret_cast<std::uintptr_t>(t->bytes.data()) % 64 != 0) {
        problems.push_back(fmt::format("{}: data does not start on a 64-byte boundary", m.name));
      }
    }
    for (const TensorInfo& t : file_.tensors()) {
      if (!expected.contains(t.name)) problems.push_back(fmt::format("{}: not a matrix of this model", t.name));
    }
    if (!problems.empty()) fail(ErrorKind::kConfigMismatch, "{}: does not hold the matrices of {}:\n  {}", where(), variant_, fmt::join(problems, "\n  "));
    std::vector<std::unique_ptr<QuantizedMatrix>> views;
    for (const auto& m : wanted) {
      auto& view = views.emplace_back(std::make_unique<QuantizedMatrix>(m.format, m.rows, m.cols, file_.find(m.name)->bytes));
      if (const auto row = view->first_invalid_scale()) fail(ErrorKind::kBadFile, "{}: {}: row {} has an invalid scale (corrupt file)", where(), m.name, *row);
    }
    return views;
  }

 private:
  std::string where() const { return file_.path().string(); }

  SafetensorsFile file_;
  std::string variant_;
};

}  // namespace gemma4

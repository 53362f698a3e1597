#pragma once
// A packed model: a model directory that `gemma4 convert` (weights/convert.hpp) wrote
// from a checkpoint, which needs nothing else. Its config.json and tokenizer files are
// the checkpoint's; its model.safetensors holds every tensor the forward pass reads,
// under the checkpoint's names:
//   - every matrix, the embedding (also the tied LM head) included, as one U8 tensor of
//     its packed int8/int4 bytes (quant/quantized_matrix.hpp), used in place from the mapping;
//   - the per-layer embedding (PLE) table the same way, packed as [vocab * layers, P]:
//     a row per token and layer, so one token's lookup reads a few row blocks;
//   - norms and scalars as F32.
// Matrices come first and the data section starts on a page, so every matrix starts on a
// 64-byte line. Its __metadata__ says what it holds:
//   format           "gemma4-packed"
//   layout           the packed layout's version (kPackedLayout)
//   variant          e.g. "e2b"
//   weights          "int8" or "int4" (int4 models hold int8 matrices where columns are
//                    not a multiple of 32)
//   source           a fingerprint of the checkpoint tensors it was converted from
//   embedding_dtype  the checkpoint's embedding dtype, which rounds its sqrt(hidden) scale
//   head             the embedding's (the tied LM head's) format: "int8", or "int4" in an
//                    int4 model (head_format below); absent in files written before it: int8

#include <charconv>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "gemma4/base/dtype.hpp"
#include "gemma4/error.hpp"
#include "gemma4/quant/quantized_matrix.hpp"
#include "gemma4/weights/binding.hpp"
#include "gemma4/weights/checkpoint.hpp"
#include "gemma4/weights/model_weights.hpp"

namespace gemma4 {

inline constexpr std::string_view kPackedFormat = "gemma4-packed";
// Bump whenever quant/layout.hpp's layouts, quant/quantized_matrix.hpp's rounding, or what a packed model holds, change.
inline constexpr int kPackedLayout = 2;  // 2: int4 row blocks in panels of two
// The data section starts on a page, so every matrix (64-byte multiples) starts on a line.
inline constexpr std::size_t kPackedAlignment = 4096;

// What a packed model's __metadata__ says.
struct PackedModelInfo {
  std::string variant;
  WeightFormat format = WeightFormat::kInt8;
  std::string source;  // source_fingerprint() of the checkpoint
  DType embedding_dtype = DType::kBF16;
  WeightFormat head_format = WeightFormat::kInt8;
};

// The format of the embedding, which is also the tied LM head, in a model of `format`
// converted to int8/int4: int8 unless an int4 model asks for an int4 head. Its rows are
// looked up as well as multiplied: a packed int4 table adds 17% to int4's KL divergence on
// the trained toy, about 30% on the tiny models; an int4 head reads 177 MB less per E2B
// token (README, "The LM head's format").
inline WeightFormat head_format(WeightFormat format, std::optional<WeightFormat> asked) {
  if (!asked || *asked == WeightFormat::kInt8) return WeightFormat::kInt8;
  if (*asked != WeightFormat::kInt4 || format != WeightFormat::kInt4) {
    fail(ErrorKind::kInvalidArgument, "an LM head in {} needs int4 weights, not {} (the head is int8 or, in an int4 model, int4)",
         weight_format_name(*asked), weight_format_name(format));
  }
  return WeightFormat::kInt4;
}

inline std::map<std::string, std::string> packed_model_metadata(const PackedModelInfo& info) {
  return {{"format", std::string(kPackedFormat)},
          {"layout", std::to_string(kPackedLayout)},
          {"variant", info.variant},
          {"weights", std::string(weight_format_name(info.format))},
          {"source", info.source},
          {"embedding_dtype", std::string(dtype_name(info.embedding_dtype))},
          {"head", std::string(weight_format_name(info.head_format))}};
}

// The packed model a safetensors file's __metadata__ describes; nullopt when it is no
// packed model (a checkpoint). Errors name `where` and the field this build cannot read.
inline std::optional<PackedModelInfo> packed_model_info(const std::map<std::string, std::string>& metadata, std::string_view where) {
  const auto field = [&](const std::string& key) -> const std::string& {
    const auto it = metadata.find(key);
    if (it == metadata.end()) fail(ErrorKind::kBadFile, "{}: a packed model's __metadata__ lacks '{}'", where, key);
    return it->second;
  };
  const auto format = metadata.find("format");
  if (format == metadata.end() || format->second != kPackedFormat) return std::nullopt;
  const std::string& layout_text = field("layout");
  int layout = 0;
  const auto [end, error] = std::from_chars(layout_text.data(), layout_text.data() + layout_text.size(), layout);
  if (error != std::errc{} || end != layout_text.data() + layout_text.size()) {
    fail(ErrorKind::kBadFile, "{}: packed layout version '{}' is not a number", where, layout_text);
  }
  if (layout > kPackedLayout) {
    fail(ErrorKind::kConfigMismatch, "{}: written by a newer gemma4 (packed layout version {}, this build reads version {}): update gemma4",
         where, layout, kPackedLayout);
  }
  if (layout < kPackedLayout) {
    fail(ErrorKind::kConfigMismatch, "{}: packed with the older layout version {}, this build reads version {}: convert the checkpoint again",
         where, layout, kPackedLayout);
  }
  PackedModelInfo info{.variant = field("variant"), .source = field("source")};
  const auto weights = parse_weight_format(field("weights"));
  if (!weights || *weights == WeightFormat::kBF16) fail(ErrorKind::kBadFile, "{}: packed weights '{}' are neither int8 nor int4", where, field("weights"));
  info.format = *weights;
  const auto embedding = weight_dtype_from_name(field("embedding_dtype"));
  if (!embedding) fail(ErrorKind::kBadFile, "{}: embedding_dtype '{}' is not BF16, F16 or F32", where, field("embedding_dtype"));
  info.embedding_dtype = *embedding;
  if (metadata.contains("head")) {
    const auto head = parse_weight_format(field("head"));
    if (!head || *head == WeightFormat::kBF16 || (*head == WeightFormat::kInt4 && info.format != WeightFormat::kInt4)) {
      fail(ErrorKind::kBadFile, "{}: an LM head in '{}' in a packed {} model (it is int8, or int4 in an int4 model)", where, field("head"),
           weight_format_name(info.format));
    }
    info.head_format = *head;
  }
  return info;
}

// The packed model `checkpoint` is, if it is one.
inline std::optional<PackedModelInfo> packed_model_info(const Checkpoint& checkpoint) {
  std::optional<PackedModelInfo> info;
  for (const SafetensorsFile& file : checkpoint.files()) {
    auto here = packed_model_info(file.metadata(), file.path().string());
    if (here && checkpoint.files().size() > 1) fail(ErrorKind::kBadFile, "{}: a packed model is one file, not a shard", file.path().string());
    if (here) info = std::move(here);
  }
  return info;
}

// One matrix held packed: as conversion makes it and a packed model stores it.
struct PackedMatrixShape {
  std::string name;     // without the checkpoint prefix
  WeightFormat format;  // int8 also in int4 models, where columns are not a multiple of 32
  std::size_t rows, cols;
};

// A planned matrix and the slot it fills (const when read from a loaded source).
template <typename Slot>
struct PlannedMatrix {
  PackedMatrixShape shape;
  Slot* slot;
  bool read_by_rows;  // the PLE table: never a matmul, looked up a row per token
};

// The matrices to hold as int8/int4, in slot order: the embedding (the tied LM head) in
// `head` (head_format above), the others in `format`, int4 falling back to int8 where
// columns are not whole groups. `packed_model`: as a packed model holds them, with the
// PLE table, as [vocab * layers, P], so a token's lookup reads a few row blocks, and the
// embedding's rows looked up packed. Converting at load time leaves both tables' rows in
// the checkpoint.
template <Variant V, typename Global, typename Layers>
auto plan_packed(Global& global, Layers& layers, WeightFormat format, WeightFormat head, bool packed_model) {
  using Slot = std::conditional_t<std::is_const_v<Global>, const MatrixView, MatrixView>;
  std::vector<PlannedMatrix<Slot>> planned;
  for_each_slot<V>(global, layers, [&](auto& slot, const std::string& name, const LayerFacts& facts) {
    using S = std::remove_cvref_t<decltype(slot)>;
    if constexpr (std::is_base_of_v<MatrixView, S>) {
      constexpr bool kTable = S::residency == Residency::kOnDisk;
      if (kTable && !packed_model) return;
      const auto shape = expected_shape<S>(V::config, facts);
      const std::size_t per_row = kTable ? static_cast<std::size_t>(V::config.hidden_size_per_layer_input) : static_cast<std::size_t>(shape[1]);
      const std::size_t rows = static_cast<std::size_t>(shape[0] * shape[1]) / per_row, cols = per_row;
      const WeightFormat wanted = std::is_same_v<S, decltype(GlobalWeights::embed_tokens)> ? head : format;
      const WeightFormat f = wanted == WeightFormat::kInt4 && !packable(wanted, rows, cols) ? WeightFormat::kInt8 : wanted;
      if (!packable(f, rows, cols)) {
        fail(ErrorKind::kInvalidArgument, "{}: a [{}, {}] matrix cannot be stored as {}", name, rows, cols, weight_format_name(f));
      }
      planned.push_back({{name, f, rows, cols}, &slot, kTable});
    }
  });
  return planned;
}

// A cheap identity of the checkpoint tensors `names` (prefix added): their dtype, shape
// and eight 4 KiB windows spread over their bytes. Hashing every byte would cost about
// what converting does; a different checkpoint of the same shape (another fine-tune)
// differs in every window.
inline std::string source_fingerprint(const Checkpoint& checkpoint, const std::vector<std::string>& names, std::string_view name_prefix) {
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  const auto mix = [&h](std::span<const std::byte> bytes) {
    for (std::byte b : bytes) h = (h ^ static_cast<std::uint8_t>(b)) * 0x100000001b3ull;
  };
  const auto mix_text = [&](std::string_view text) { mix(std::as_bytes(std::span(text.data(), text.size() + 1))); };
  for (const auto& name : names) {
    const std::string full = std::string(name_prefix) + name;
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

// Views of a packed model's matrices, one per entry of `wanted`, in that order, after
// checking that each is a U8 tensor of the size its format needs, starting on a 64-byte
// line; one error lists every problem. A tensor of whole row blocks but the wrong count
// (an embedding or PLE table of another vocabulary) says how many rows it holds.
inline std::vector<std::unique_ptr<QuantizedMatrix>> packed_matrix_views(const Checkpoint& checkpoint,
                                                                          const std::vector<PackedMatrixShape>& wanted,
                                                                          std::string_view name_prefix) {
  std::vector<std::string> problems;
  const std::string prefix(name_prefix);
  for (const auto& m : wanted) {
    const TensorInfo* t = checkpoint.find(prefix + m.name);
    if (t == nullptr) {
      problems.push_back(fmt::format("{}{}: missing", prefix, m.name));
      continue;
    }
    const std::size_t want = QuantizedMatrix::storage_bytes(m.format, m.rows, m.cols);
    if (t->dtype_name != "U8" || t->shape != std::vector<std::int64_t>{static_cast<std::int64_t>(want)}) {
      std::string detail;
      const std::size_t per_block = QuantizedMatrix::storage_bytes(m.format, kRowBlock, m.cols);
      if (t->dtype_name == "U8" && t->shape.size() == 1 && t->bytes.size() % per_block == 0) {
        detail = fmt::format(": it holds {} rows where this model has {}", t->bytes.size() / per_block * kRowBlock, m.rows);
      }
      problems.push_back(fmt::format("{}{}: {} [{}], expected U8 [{}] (a [{}, {}] {} matrix with its scales){}", prefix, m.name, t->dtype_name,
                                     fmt::join(t->shape, ", "), want, m.rows, m.cols, weight_format_name(m.format), detail));
    } else if (reinterpret_cast<std::uintptr_t>(t->bytes.data()) % 64 != 0) {
      problems.push_back(fmt::format("{}{}: data does not start on a 64-byte boundary", prefix, m.name));
    }
  }
  if (!problems.empty()) {
    fail(ErrorKind::kConfigMismatch, "{}: does not hold the packed matrices of this model:\n  {}", checkpoint.dir().string(),
         fmt::join(problems, "\n  "));
  }
  std::vector<std::unique_ptr<QuantizedMatrix>> views;
  for (const auto& m : wanted) views.push_back(std::make_unique<QuantizedMatrix>(m.format, m.rows, m.cols, checkpoint.find(prefix + m.name)->bytes));
  return views;
}

}  // namespace gemma4

#pragma once
// Converting a checkpoint into a packed model directory (weights/packed_model.hpp): the
// deployment step, run once on a workstation; the directory is then all a device needs.
//
// It streams: each matrix is packed a slice of row blocks at a time and written at
// once, the source pages of each slice dropped again, so converting E2B holds a few
// tens of MB besides the mapped checkpoint. It is atomic: the weights are written under
// a temporary name renamed at the end, so an interrupted conversion leaves no file that
// loads.

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "gemma4/error.hpp"
#include "gemma4/weights/load.hpp"
#include "gemma4/weights/packed_model.hpp"
#include "gemma4/weights/packed_store.hpp"
#include "gemma4/weights/safetensors_writer.hpp"

namespace gemma4 {

struct ConvertOptions {
  WeightFormat format = WeightFormat::kInt4;
  ThreadPool* pool = nullptr;  // null: default_pool()
  // Called as matrices are packed, with source bytes done and total.
  std::function<void(std::size_t done, std::size_t total)> on_progress{};
};

struct ConvertReport {
  std::size_t bytes = 0;                // of the packed model's model.safetensors
  std::vector<std::string> kept_int8;   // int4 asked, int8 written: the embedding, and columns not a multiple of 32
  std::vector<std::string> copied;      // the checkpoint's other files copied alongside
};

// The files besides the weights a model directory may have; each present one is copied.
inline constexpr std::string_view kModelSideFiles[] = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                                       "special_tokens_map.json", "chat_template.jinja"};

// Writes the packed model of the checkpoint in `source` to the directory `out` (created
// if needed; it must not hold a model already). Errors: a source that is not a
// checkpoint of V (or is packed already), bf16 asked, an unwritable `out`.
template <Variant V>
ConvertReport convert_checkpoint(const std::filesystem::path& source, const std::filesystem::path& out, const ConvertOptions& options) {
  namespace fs = std::filesystem;
  if (options.format == WeightFormat::kBF16) fail(ErrorKind::kInvalidArgument, "convert to int8 or int4: bf16 is the checkpoint as stored");
  const Weights<V> weights(source, {.prefault = false});
  if (weights.report().packed_model) {
    fail(ErrorKind::kInvalidArgument, "{}: already a packed {} model; re-quantizing would compound the rounding: convert the original checkpoint",
         source.string(), weight_format_name(weights.report().format));
  }
  fs::create_directories(out);
  if (fs::equivalent(source, out)) fail(ErrorKind::kInvalidArgument, "{}: the output directory is the checkpoint's own", out.string());
  for (std::string_view name : {kSingleFileName, kIndexFileName}) {
    if (fs::exists(out / name)) fail(ErrorKind::kInvalidArgument, "{}: already holds a model ({}); choose a new directory", out.string(), name);
  }

  const auto planned = plan_packed<V>(weights.global, weights.layers, options.format, /*packed_model=*/true);
  const std::string prefix = weights.report().prefix;
  std::vector<SafetensorsEntry> entries;
  std::vector<std::string> names;
  std::size_t total = 0;
  ConvertReport report;
  for (const auto& m : planned) {
    const std::size_t bytes = QuantizedMatrix::storage_bytes(m.shape.format, m.shape.rows, m.shape.cols);
    entries.push_back({prefix + m.shape.name, "U8", {static_cast<std::int64_t>(bytes)}, bytes});
    names.push_back(m.shape.name);
    total += m.slot->bytes().size();
    if (m.shape.format != options.format) report.kept_int8.push_back(m.shape.name);
  }
  // Vectors after the matrices, which thus all start on 64-byte lines.
  std::vector<std::pair<std::string, const TensorView*>> vectors;
  for_each_slot<V>(weights.global, weights.layers, [&](const auto& slot, const std::string& name, const LayerFacts& facts) {
    using S = std::remove_cvref_t<decltype(slot)>;
    if constexpr (!std::is_base_of_v<MatrixView, S>) {
      entries.push_back({prefix + name, "F32", expected_shape<S>(V::config, facts), slot.size() * sizeof(float)});
      vectors.emplace_back(name, &slot);
    }
  });
  const PackedModelInfo info{.variant = std::string(V::name),
                             .format = options.format,
                             .source = source_fingerprint(weights.checkpoint(), names),
                             .embedding_dtype = weights.global.embed_tokens.dtype};

  for (std::string_view name : kModelSideFiles) {
    if (!fs::exists(source / name)) continue;
    fs::copy_file(source / name, out / name, fs::copy_options::overwrite_existing);
    report.copied.emplace_back(name);
  }
  const fs::path partial = out / (std::string(kSingleFileName) + ".partial");
  try {
    SafetensorsWriter file(partial, packed_model_metadata(info), entries, kPackedAlignment);
    ThreadPool& pool = options.pool != nullptr ? *options.pool : default_pool();
    std::size_t done = 0;
    for (const auto& m : planned) {
      const PackedMatrixShape& shape = m.shape;
      const TensorView& elements = *m.slot;
      std::vector<float> int8_scales;
      const std::size_t block_bytes = elements.bytes().size() / (shape.rows / kRowBlock);
      PackedMatrices::for_each_slice(shape.rows, elements, !weights.is_copy(elements), [&](std::size_t first, std::size_t end) {
        QuantizedMatrix slice(shape.format, (end - first) * kRowBlock, shape.cols);
        TensorView rows = elements;
        rows.data += first * block_bytes;
        PackedMatrices::quantize_blocks(slice, rows, 0, end - first, pool);
        if (shape.format == WeightFormat::kInt4) {
          file.write(slice.packed().data(), slice.packed().size());
        } else {  // the weights now, the row scales after all of them
          file.write(slice.weights(), slice.rows() * slice.cols());
          int8_scales.insert(int8_scales.end(), slice.row_scales(), slice.row_scales() + slice.rows());
        }
        done += (end - first) * block_bytes;
        if (options.on_progress) options.on_progress(done, total);
      });
      if (shape.format == WeightFormat::kInt8) {
        const std::size_t weight_bytes = shape.rows * shape.cols;  // then the scales, padded to a line
        int8_scales.resize((QuantizedMatrix::storage_bytes(shape.format, shape.rows, shape.cols) - weight_bytes) / sizeof(float));
        file.write(int8_scales.data(), int8_scales.size() * sizeof(float));
      }
    }
    for (const auto& [name, view] : vectors) {
      std::vector<float> values(view->size());
      for (std::size_t i = 0; i < values.size(); ++i) values[i] = view->at(i);
      file.write(values.data(), values.size() * sizeof(float));
    }
    file.finish(/*durable=*/true);
    fs::rename(partial, out / kSingleFileName);
  } catch (...) {
    std::error_code ignored;
    fs::remove(partial, ignored);
    throw;
  }
  report.bytes = fs::file_size(out / kSingleFileName);
  return report;
}

}  // namespace gemma4

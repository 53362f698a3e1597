#pragma once
// Converting a checkpoint, or an assistant, into a packed model directory
// (weights/packed_model.hpp): the deployment step, run once on a workstation; the
// directory is then all a device needs.
//
// It streams: each matrix is packed a slice of row blocks at a time and written at
// once, the source pages of each slice dropped again, so converting E2B holds a few
// tens of MB besides the mapped checkpoint. It is atomic: the weights are written under
// a temporary name renamed at the end, so an interrupted conversion leaves no file that
// loads.

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "gemma4/error.hpp"
#include "gemma4/weights/assistant_weights.hpp"
#include "gemma4/weights/load.hpp"
#include "gemma4/weights/packed_model.hpp"
#include "gemma4/weights/packed_store.hpp"
#include "gemma4/weights/safetensors_writer.hpp"

namespace gemma4 {

struct ConvertOptions {
  WeightFormat format = WeightFormat::kInt4;
  // The tied LM head's (the embedding's) format in an int4 model: int8 (unset) or int4
  // (weights/packed_model.hpp's head_format()). An assistant's head table is int8.
  std::optional<WeightFormat> head_format{};
  ThreadPool* pool = nullptr;  // null: default_pool()
  // Called as matrices are packed, with source bytes done and total.
  std::function<void(std::size_t done, std::size_t total)> on_progress{};
};

struct ConvertReport {
  std::size_t bytes = 0;                // of the packed model's model.safetensors
  std::vector<std::string> kept_int8;   // int4 asked, int8 written: the embedding (unless its head is int4), columns not a multiple of 32
  std::vector<std::string> copied;      // the checkpoint's other files copied alongside
};

// The files besides the weights a model directory may have; each present one is copied.
inline constexpr std::string_view kModelSideFiles[] = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                                       "special_tokens_map.json", "chat_template.jinja"};

// A tensor a packed model stores as it is, after the packed matrices: norms and scalars
// as F32, an assistant's token ordering as I64.
struct PlainTensor {
  std::string name;  // full name in the file
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> bytes;
};

// The F32 tensor of a vector's values, whatever its stored dtype.
inline PlainTensor f32_tensor(std::string name, const TensorView& view, std::vector<std::int64_t> shape) {
  std::vector<float> values(view.size());
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = view.at(i);
  const auto bytes = std::as_bytes(std::span(values));
  return {std::move(name), "F32", std::move(shape), {bytes.begin(), bytes.end()}};
}

namespace detail {

// Refuses an `out` that is the source or holds a model already; creates `out` and copies
// the source's side files into it.
inline void prepare_packed_dir(const std::filesystem::path& source, const std::filesystem::path& out, ConvertReport& report) {
  namespace fs = std::filesystem;
  fs::create_directories(out);
  if (fs::equivalent(source, out)) fail(ErrorKind::kInvalidArgument, "{}: the output directory is the checkpoint's own", out.string());
  for (std::string_view name : {kSingleFileName, kIndexFileName}) {
    if (fs::exists(out / name)) fail(ErrorKind::kInvalidArgument, "{}: already holds a model ({}); choose a new directory", out.string(), name);
  }
  for (std::string_view name : kModelSideFiles) {
    if (!fs::exists(source / name)) continue;
    fs::copy_file(source / name, out / name, fs::copy_options::overwrite_existing);
    report.copied.emplace_back(name);
  }
}

// Writes out/model.safetensors: `matrices` packed, named `prefix` + their name, then the
// plain tensors. Under a temporary name renamed at the end.
inline void write_packed_model(const std::filesystem::path& out, const PackedModelInfo& info, std::string_view prefix,
                               const std::vector<PackedMatrices::Source>& matrices, const std::vector<PlainTensor>& plain,
                               const ConvertOptions& options, ConvertReport& report) {
  namespace fs = std::filesystem;
  std::vector<SafetensorsEntry> entries;
  std::size_t total = 0;
  for (const auto& m : matrices) {
    const std::size_t bytes = QuantizedMatrix::storage_bytes(m.shape.format, m.shape.rows, m.shape.cols);
    entries.push_back({std::string(prefix) + m.shape.name, "U8", {static_cast<std::int64_t>(bytes)}, bytes});
    total += m.elements.bytes().size();
    if (m.shape.format != options.format) report.kept_int8.push_back(m.shape.name);
  }
  // Plain tensors after the matrices, which thus all start on 64-byte lines.
  for (const PlainTensor& t : plain) entries.push_back({t.name, t.dtype, t.shape, t.bytes.size()});
  const fs::path partial = out / (std::string(kSingleFileName) + ".partial");
  try {
    SafetensorsWriter file(partial, packed_model_metadata(info), entries, kPackedAlignment);
    ThreadPool& pool = pool_or_default(options.pool);
    std::size_t done = 0;
    for (const auto& m : matrices) {
      const PackedMatrixShape& shape = m.shape;
      std::vector<float> int8_scales;
      PackedMatrices::for_each_slice(shape.rows, m.elements, m.source_mapped, [&](std::size_t first, std::size_t end, const TensorView& rows) {
        QuantizedMatrix slice(shape.format, (end - first) * kRowBlock, shape.cols);
        try {
          PackedMatrices::quantize_blocks(slice, rows, 0, end - first, pool);
        } catch (const Error& e) {
          fail(e.kind(), "{}{}: {}", prefix, shape.name, e.what());
        }
        if (shape.format == WeightFormat::kInt4) {
          file.write(slice.packed().data(), slice.packed().size());
        } else {  // the weights now, the row scales after all of them
          file.write(slice.weights(), slice.rows() * slice.cols());
          int8_scales.insert(int8_scales.end(), slice.row_scales(), slice.row_scales() + slice.rows());
        }
        done += rows.bytes().size();
        if (options.on_progress) options.on_progress(done, total);
      });
      if (shape.format == WeightFormat::kInt8) {
        const std::size_t weight_bytes = shape.rows * shape.cols;  // then the scales, padded to a line
        int8_scales.resize((QuantizedMatrix::storage_bytes(shape.format, shape.rows, shape.cols) - weight_bytes) / sizeof(float));
        file.write(int8_scales.data(), int8_scales.size() * sizeof(float));
      }
    }
    for (const PlainTensor& t : plain) file.write(t.bytes.data(), t.bytes.size());
    file.finish(/*durable=*/true);
    file.leave_page_cache();  // the first load reads it in 2 MiB folios (SafetensorsWriter)
    fs::rename(partial, out / kSingleFileName);
  } catch (...) {
    std::error_code ignored;
    fs::remove(partial, ignored);
    throw;
  }
  report.bytes = fs::file_size(out / kSingleFileName);
}

}  // namespace detail

// Writes the packed model of the checkpoint in `source` to the directory `out` (created
// if needed; it must not hold a model already). Errors: a source that is not a
// checkpoint of V (or is packed already), bf16 asked, an unwritable `out`.
template <Variant V>
ConvertReport convert_checkpoint(const std::filesystem::path& source, const std::filesystem::path& out, const ConvertOptions& options) {
  if (options.format == WeightFormat::kBF16) fail(ErrorKind::kInvalidArgument, "convert to int8 or int4: bf16 is the checkpoint as stored");
  const WeightFormat head = head_format(options.format, options.head_format);
  const Weights<V> weights(source, {.prefault = false});
  if (weights.report().packed_model) {
    fail(ErrorKind::kInvalidArgument, "{}: already a packed {} model; re-quantizing would compound the rounding: convert the original checkpoint",
         source.string(), weight_format_name(weights.report().format));
  }
  ConvertReport report;
  detail::prepare_packed_dir(source, out, report);
  const std::string prefix = weights.report().prefix;
  std::vector<PackedMatrices::Source> matrices;
  for (const auto& m : plan_packed<V>(weights.global, weights.layers, options.format, head, /*packed_model=*/true)) {
    matrices.push_back({m.shape, *m.slot, !weights.is_copy(*m.slot)});
  }
  std::vector<PlainTensor> plain;
  for_each_slot<V>(weights.global, weights.layers, [&](const auto& slot, const std::string& name, const LayerFacts& facts) {
    using S = std::remove_cvref_t<decltype(slot)>;
    if constexpr (!std::is_base_of_v<MatrixView, S>) plain.push_back(f32_tensor(prefix + name, slot, expected_shape<S>(V::config, facts)));
  });
  const PackedModelInfo info{.variant = std::string(V::name),
                             .format = options.format,
                             .source = weights.fingerprint(),
                             .embedding_dtype = weights.global.embed_tokens.dtype,
                             .head_format = head};
  detail::write_packed_model(out, info, prefix, matrices, plain, options, report);
  return report;
}

// The same for an assistant directory: its matrices in the format asked, the head's
// table in centroid order (int8), norms as F32 and the token ordering as it was.
template <AssistantVariant A>
ConvertReport convert_assistant(const std::filesystem::path& source, const std::filesystem::path& out, const ConvertOptions& options) {
  if (options.format == WeightFormat::kBF16) fail(ErrorKind::kInvalidArgument, "convert to int8 or int4: bf16 is the checkpoint as stored");
  if (options.head_format && *options.head_format != WeightFormat::kInt8) {
    fail(ErrorKind::kInvalidArgument, "an assistant's head table is int8: leave out the head format ({} asked)", weight_format_name(*options.head_format));
  }
  Assistant<A> assistant(source);
  if (assistant.report().packed_model) {
    fail(ErrorKind::kInvalidArgument, "{}: already a packed {} assistant; re-quantizing would compound the rounding: convert the original",
         source.string(), weight_format_name(assistant.report().format));
  }
  ConvertReport report;
  detail::prepare_packed_dir(source, out, report);
  std::vector<PackedMatrices::Source> matrices;
  std::vector<std::string> names;
  for (const auto& m : assistant.plan_packed(options.format)) {
    matrices.push_back({m.shape, *m.slot, false});  // 12 M weights besides the copied table: no pages dropped as it goes
    names.push_back(m.slot == &assistant.ordered_embeddings ? std::string(kTextOnlyPrefix) + "embed_tokens.weight" : m.shape.name);
  }
  std::vector<PlainTensor> plain;
  for_each_slot<A>(assistant.global, assistant.layers, [&](const auto& slot, const std::string& name, const LayerFacts& facts) {
    using S = std::remove_cvref_t<decltype(slot)>;
    if constexpr (!std::is_base_of_v<MatrixView, S>) plain.push_back(f32_tensor(std::string(kTextOnlyPrefix) + name, slot, expected_shape<S>(A::config, facts)));
  });
  std::vector<std::int64_t> ordering(assistant.token_ordering.begin(), assistant.token_ordering.end());
  const auto ordering_bytes = std::as_bytes(std::span(ordering));
  plain.push_back({std::string(kTokenOrderingName), "I64", {static_cast<std::int64_t>(ordering.size())}, {ordering_bytes.begin(), ordering_bytes.end()}});
  const PackedModelInfo info{.variant = std::string(A::name),
                             .format = options.format,
                             .source = source_fingerprint(assistant.checkpoint(), names, ""),
                             .embedding_dtype = assistant.global.embed_tokens.dtype};
  detail::write_packed_model(out, info, "", matrices, plain, options, report);
  return report;
}

}  // namespace gemma4

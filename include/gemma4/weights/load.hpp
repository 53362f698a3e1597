#pragma once
// Loading a model directory, a checkpoint or a packed model (weights/packed_model.hpp),
// into the weights of one compiled variant. Each job has its own home: config.json is
// compared with the variant field by field (config/config_json.hpp); tensors are bound
// to their slots, checked and used in place from the mapping (weights/binding.hpp);
// int8/int4 matrices are converted, or used in place from a packed model
// (weights/packed_store.hpp); pages are faulted in and released (weights/residency.hpp).
// The per-layer embedding table is never touched at load time: only the rows of tokens
// seen are read.

#include <array>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "gemma4/config/config_json.hpp"
#include "gemma4/config/topology.hpp"
#include "gemma4/error.hpp"
#include "gemma4/weights/binding.hpp"
#include "gemma4/weights/checkpoint.hpp"
#include "gemma4/weights/packed_model.hpp"
#include "gemma4/weights/load_options.hpp"
#include "gemma4/weights/model_weights.hpp"
#include "gemma4/weights/packed_store.hpp"
#include "gemma4/weights/residency.hpp"

namespace gemma4 {

// HF scales embeddings by sqrt(hidden_size) cast to the weights' dtype (39.25 for E2B in bf16).
inline float embedding_scale(int hidden_size, DType stored) {
  const float scale = std::sqrt(static_cast<float>(hidden_size));
  if (stored == DType::kBF16) return bf16_to_f32(f32_to_bf16(scale));
  if (stored == DType::kF16) return f16_to_f32(f32_to_f16(scale));
  return scale;
}

// The weights of variant V from one checkpoint directory. Owns the mappings; the views
// stay valid as long as this object lives (it may be moved).
// Errors: gemma4::Error listing every mismatching config field, or every missing or
// misshapen tensor, or naming the unreadable file. Read-only after construction: any
// number of Sessions on any threads may share one Weights.
template <Variant V>
class Weights : public ModelWeights<V> {
 public:
  static constexpr const ModelConfig& config = V::config;
  using ModelWeights<V>::global;
  using ModelWeights<V>::layers;

  explicit Weights(const std::filesystem::path& dir, const LoadOptions& options = {}) : checkpoint_(dir) {
    const auto mismatches = compare_config(V::config, text_config_of(checkpoint_.config()));
    if (!mismatches.empty()) {
      fail(ErrorKind::kConfigMismatch, "{}: config.json does not describe {}; mismatching fields:\n{}",
           (dir / "config.json").string(), V::name, format_mismatches(mismatches));
    }
    report_.prefix = std::string(checkpoint_.prefix());
    const std::optional<PackedModelInfo> packed = packed_model_info(checkpoint_);
    if (packed) check_packed(*packed, options);
    report_.packed_model = packed.has_value();
    report_.format = packed ? packed->format : options.format.value_or(WeightFormat::kBF16);
    const WeightFormat head = packed ? packed->head_format : head_format(report_.format, options.head_format);
    report_.int4_head = report_.format == WeightFormat::kInt4 && head == WeightFormat::kInt4;
    bind_checkpoint<V>(checkpoint_, global, layers, copies_, residency_, report_, packed.has_value());
    this->embedding_scale = gemma4::embedding_scale(V::config.hidden_size,
                                                    packed ? packed->embedding_dtype : *checkpoint_.find(report_.prefix + "embed_tokens.weight")->dtype);
    const std::vector<Planned> planned =
        report_.format != WeightFormat::kBF16 ? plan_packed<V>(global, layers, report_.format, head, packed.has_value()) : std::vector<Planned>{};
    std::vector<PackedMatrixShape> shapes;
    for (const Planned& m : planned) shapes.push_back(m.shape);
    if (packed) {
      packed_.view(checkpoint_, shapes, checkpoint_.prefix());
    } else if (!planned.empty()) {
      std::vector<PackedMatrices::Source> sources;
      for (const Planned& m : planned) sources.push_back({m.shape, *m.slot, !copies_.is_copy(*m.slot)});
      packed_.convert(sources, pool_or_default(options.pool), checkpoint_.dir().string());
    }
    use_packed(planned);
    fingerprint_ = packed ? packed->source : source_fingerprint_of_checkpoint();
    for_each_in_memory([&](MatrixView* matrix, const TensorView& view) {
      const QuantizedMatrix* quantized = matrix != nullptr ? quantized_matrix(matrix->linear) : nullptr;
      report_.bytes_per_token += quantized != nullptr ? quantized->bytes() : view.bytes().size();
    });
    if (options.prefault) PageResidency::fault_in(matmul_ranges(), options.on_progress);
    // Every read at load maps up to 16 pages around it (the kernel's fault-around): the
    // fingerprint's windows, prefaulting the small tensors kept as stored. They mapped
    // about 1 GB of E2B's tables and converted sources, which would stay resident until a
    // pass releases them.
    residency_.release_rows();
  }

  const LoadReport& report() const { return report_; }
  const Checkpoint& checkpoint() const { return checkpoint_; }
  // The identity of the checkpoint the weights come from: what a packed model records
  // (weights/packed_model.hpp), or the same computed from a checkpoint's matrices, so that
  // a packed model and its checkpoint converted at load share it. Computed once at load:
  // a prompt cache checks it at every save and restore.
  const std::string& fingerprint() const { return fingerprint_; }

  // Whether `view` is an f32 copy made at load (f16, or misaligned in the file), not
  // the file's mapped bytes.
  bool is_copy(const TensorView& view) const { return copies_.is_copy(view); }

  // Which pages stay resident: a pass drops the pages of tables read a few rows per
  // token every so often (weights/residency.hpp).
  const PageResidency& residency() const { return residency_; }

  // Fails, naming the file and token, if a row `tokens` will look up in a packed table
  // read by rows (the PLE table) has an invalid scale. Such rows are checked when first
  // needed: checking them all at load would read the whole table.
  void check_looked_up_rows(std::span<const int> tokens) const {
    const QuantizedMatrix* table = quantized_matrix(global.embed_tokens_per_layer.linear);
    if (!report_.packed_model || table == nullptr) return;
    const std::size_t rows_per_token = table->rows() / static_cast<std::size_t>(V::config.vocab_size_per_layer_input);
    for (const int token : tokens) {
      const std::size_t first = static_cast<std::size_t>(token) * rows_per_token;
      if (table->first_invalid_scale(first, first + rows_per_token)) {
        fail(ErrorKind::kBadFile, "{}: {}{}: the row of token {} has an invalid scale (corrupt file)", checkpoint_.files().front().path().string(),
             report_.prefix, decltype(global.embed_tokens_per_layer)::name, token);
      }
    }
  }

 private:
  using Planned = PlannedMatrix<MatrixView>;

  // A packed model is loaded as it was packed, for the variant it was packed for.
  void check_packed(const PackedModelInfo& packed, const LoadOptions& options) const {
    const std::string where = checkpoint_.files().front().path().string();
    if (packed.variant != V::name) {
      fail(ErrorKind::kConfigMismatch, "{}: packed for variant {}, but config.json describes {}", where, packed.variant, V::name);
    }
    if (const auto asked = options.format; asked && *asked != packed.format) {
      fail(ErrorKind::kInvalidArgument, "{}: a packed {} model cannot be loaded as {}: convert the original checkpoint to {}", where,
           weight_format_name(packed.format), weight_format_name(*asked), weight_format_name(*asked));
    }
    if (const auto head = options.head_format; head && *head != packed.head_format) {
      fail(ErrorKind::kInvalidArgument, "{}: a packed model with an {} LM head cannot be loaded with an {} head: convert the original checkpoint with it",
           where, weight_format_name(packed.head_format), weight_format_name(*head));
    }
  }

  // Calls f(matrix or null, view) for every slot kept in memory (not the PLE table).
  template <typename F>
  void for_each_in_memory(F&& f) {
    for_each_slot<V>(global, layers, [&](auto& slot, const std::string&, const LayerFacts&) {
      using S = std::remove_cvref_t<decltype(slot)>;
      if constexpr (S::residency == Residency::kInMemory) {
        if constexpr (std::is_base_of_v<MatrixView, S>) {
          f(static_cast<MatrixView*>(&slot), static_cast<const TensorView&>(slot));
        } else {
          f(static_cast<MatrixView*>(nullptr), static_cast<const TensorView&>(slot));
        }
      }
    });
  }

  // Matmuls (and a packed model's lookups) read the packed matrices from now on. The
  // dense elements of a converted matrix whose source stays mapped are only looked up by
  // rows (the embedding) from now on.
  void use_packed(const std::vector<Planned>& planned) {
    attach_packed(planned, packed_, report_, checkpoint_.files().front().path().string(), report_.prefix);
    for (const Planned& m : planned) {
      if (m.slot->data != nullptr && !copies_.is_copy(*m.slot)) residency_.read_by_rows(m.slot->bytes());
    }
  }

  // What matmuls read: weights kept as stored, and the matrices of a packed model. A
  // converted matrix's source is no longer read by matmuls: it stays on disk.
  std::vector<std::span<const std::byte>> matmul_ranges() {
    std::vector<std::span<const std::byte>> ranges;
    for_each_in_memory([&](MatrixView* matrix, const TensorView& view) {
      const QuantizedMatrix* quantized = matrix != nullptr ? quantized_matrix(matrix->linear) : nullptr;
      if (quantized == nullptr) {
        ranges.push_back(view.bytes());
      } else if (packed_.in_place()) {
        ranges.push_back(quantized->packed());
      }
    });
    return ranges;
  }

  std::string source_fingerprint_of_checkpoint() {
    std::vector<std::string> names;
    for (const auto& m : plan_packed<V>(global, layers, WeightFormat::kInt8, WeightFormat::kInt8, /*packed_model=*/true)) names.push_back(m.shape.name);
    return source_fingerprint(checkpoint_, names, report_.prefix);
  }

  Checkpoint checkpoint_;
  LoadReport report_;
  std::string fingerprint_;
  WidenedCopies copies_;
  PackedMatrices packed_;
  PageResidency residency_;
};

// Calls f.template operator()<V>() for the one variant among Vs whose config matches
// config.json; if none does, the error lists for each variant the fields that differ.
template <Variant... Vs, typename F>
void with_matching_variant(const nlohmann::json& config_json, F&& f) {
  const nlohmann::json& text = text_config_of(config_json);
  bool found = false;
  std::string differences;
  (
      [&] {
        if (found) return;
        const auto mismatches = compare_config(Vs::config, text);
        if (mismatches.empty()) {
          found = true;
          f.template operator()<Vs>();
        } else {
          differences += fmt::format("  {}:\n{}", Vs::name, format_mismatches(mismatches));
        }
      }(),
      ...);
  if (!found) fail(ErrorKind::kConfigMismatch, "config.json matches none of the compiled variants; fields that differ:\n{}", differences);
}

}  // namespace gemma4

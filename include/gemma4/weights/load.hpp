#pragma once
// Loading a checkpoint directory into the weights of one compiled variant. Each job has
// its own home: config.json is compared with the variant field by field
// (config/config_json.hpp); tensors are bound to their slots, checked and used in place
// from the mapping (weights/binding.hpp); int8/int4 matrices are converted or mapped
// from a converted file (weights/packed_store.hpp); pages are faulted in and released
// (weights/residency.hpp). The per-layer embedding table is never touched at load
// time: only the rows of tokens seen are read.

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
#include "gemma4/weights/converted_file.hpp"
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
class Weights {
 public:
  static constexpr const ModelConfig& config = V::config;

  GlobalWeights global;
  std::array<LayerWeights, kNumLayers<V>> layers;

  explicit Weights(const std::filesystem::path& dir, const LoadOptions& options = {}) : checkpoint_(dir) {
    const auto mismatches = compare_config(V::config, text_config_of(checkpoint_.config()));
    if (!mismatches.empty()) {
      fail(ErrorKind::kConfigMismatch, "{}: config.json does not describe {}; mismatching fields:\n{}",
           (dir / "config.json").string(), V::name, format_mismatches(mismatches));
    }
    report_.prefix = std::string(checkpoint_.prefix());
    report_.format = options.format;
    bind_checkpoint<V>(checkpoint_, global, layers, copies_, residency_, report_);
    embedding_scale_ = gemma4::embedding_scale(V::config.hidden_size, *checkpoint_.find(report_.prefix + "embed_tokens.weight")->dtype);
    const std::vector<Planned> planned = options.format != WeightFormat::kBF16 ? plan(options.format) : std::vector<Planned>{};
    for (const Planned& m : planned) packed_shapes_.push_back(m.shape);
    if (!options.converted_file.empty()) {
      if (options.format == WeightFormat::kBF16) {
        fail(ErrorKind::kInvalidArgument, "{}: a converted file holds int8 or int4 weights; ask for one of them",
             options.converted_file.string());
      }
      packed_.map(options.converted_file, identity(), checkpoint_.dir(), packed_shapes_);
      report_.converted_file = options.converted_file;
    } else if (options.format != WeightFormat::kBF16) {
      std::vector<PackedMatrices::Source> sources;
      for (const Planned& m : planned) sources.push_back({m.shape, *m.slot, !copies_.is_copy(*m.slot)});
      packed_.convert(sources, options.pool != nullptr ? *options.pool : default_pool());
    }
    attach_packed(planned);
    for_each_in_memory([&](MatrixView* matrix, const TensorView& view) {
      const QuantizedMatrix* packed = matrix != nullptr ? packed_matrix(matrix->linear) : nullptr;
      report_.bytes_per_token += packed != nullptr ? packed->bytes() : view.bytes().size();
    });
    if (options.prefault) PageResidency::fault_in(matmul_ranges(), options.on_progress);
  }

  const LoadReport& report() const { return report_; }
  const Checkpoint& checkpoint() const { return checkpoint_; }
  // sqrt(hidden_size) as the checkpoint's dtype rounds it: the embedding's scale.
  float embedding_scale() const { return embedding_scale_; }

  // Drops the pages of tables read a few rows per token (weights/residency.hpp).
  void release_looked_up_rows() const { residency_.release_rows(); }

  // Writes the int8/int4 matrices to `path` (weights/converted_file.hpp), for
  // LoadOptions::converted_file to map at the next load.
  void save_converted(const std::filesystem::path& path) const {
    if (report_.format == WeightFormat::kBF16) {
      fail(ErrorKind::kInvalidArgument, "{}: only int8 or int4 weights can be saved converted", path.string());
    }
    std::vector<std::pair<std::string, const QuantizedMatrix*>> matrices;
    for (const auto& [name, matrix] : packed_.matrices()) matrices.emplace_back(name, matrix.get());
    write_converted_file(path, identity(), matrices);
  }

 private:
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

  // Each matrix to hold as int8/int4, in a fixed order: what conversion makes and a
  // converted file holds. int4 falls back to int8 where columns are not whole groups.
  struct Planned {
    PackedMatrixShape shape;
    MatrixView* slot;
  };
  std::vector<Planned> plan(WeightFormat format) {
    std::vector<Planned> planned;
    for_each_slot<V>(global, layers, [&](auto& slot, const std::string& name, const LayerFacts&) {
      using S = std::remove_cvref_t<decltype(slot)>;
      if constexpr (S::residency == Residency::kInMemory && std::is_base_of_v<MatrixView, S>) {
        const auto rows = static_cast<std::size_t>(slot.shape[0]), cols = static_cast<std::size_t>(slot.shape[1]);
        const WeightFormat f = format == WeightFormat::kInt4 && !packable(format, rows, cols) ? WeightFormat::kInt8 : format;
        if (!packable(f, rows, cols)) {
          fail(ErrorKind::kInvalidArgument, "{}: a [{}, {}] matrix cannot be stored as {}", name, rows, cols, weight_format_name(f));
        }
        planned.push_back({{name, f, rows, cols}, &slot});
      }
    });
    return planned;
  }
  // What a converted file of these matrices must have been made for.
  ConvertedIdentity identity() const {
    std::vector<std::string> names;
    for (const PackedMatrixShape& m : packed_shapes_) names.push_back(m.name);
    return {std::string(V::name), report_.format, source_fingerprint(checkpoint_, names)};
  }

  // Matmuls read the packed matrices (made or mapped in the order of `planned`) from now
  // on; the dense elements of a matrix whose source stays mapped are only looked up by
  // rows (the embedding) from now on.
  void attach_packed(const std::vector<Planned>& planned) {
    for (std::size_t i = 0; i < planned.size(); ++i) {
      const QuantizedMatrix* matrix = packed_.matrices()[i].second.get();
      MatrixView& slot = *planned[i].slot;
      if (matrix->format() != report_.format) report_.kept_int8.push_back(planned[i].shape.name);
      report_.quantized_bytes += matrix->bytes();
      slot.linear = matrix;
      if (!copies_.is_copy(slot)) residency_.read_by_rows(slot.bytes());
    }
  }

  // What matmuls read: weights kept as stored, and matrices mapped from a converted
  // file. A converted matrix's source is no longer read by matmuls: it stays on disk.
  std::vector<std::span<const std::byte>> matmul_ranges() {
    std::vector<std::span<const std::byte>> ranges;
    for_each_in_memory([&](MatrixView* matrix, const TensorView& view) {
      if (matrix == nullptr || packed_matrix(matrix->linear) == nullptr) ranges.push_back(view.bytes());
    });
    if (packed_.mapped_from_file()) {
      for (const auto& [name, matrix] : packed_.matrices()) ranges.push_back(matrix->packed());
    }
    return ranges;
  }

  Checkpoint checkpoint_;
  LoadReport report_;
  float embedding_scale_ = 1.0f;
  std::vector<PackedMatrixShape> packed_shapes_;  // plan(format), for int8/int4
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

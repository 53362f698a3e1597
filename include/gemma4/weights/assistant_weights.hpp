#pragma once
// An assistant (MTP drafter) directory as published (spec gemma4-assistant.md sections
// 1-2): config.json with the head fields at the top and the decoder under text_config,
// and 50 tensors: the decoder under "model." (its layers query only: no k/v
// projections), the pre/post projections and the centroid head at the top level, and
// the int64 token ordering, checked to be a permutation of the vocabulary. Held as
// stored (bf16 in the published files), memory-mapped, or converted to int8/int4 at
// load, the head's table copied into centroid order; or a packed assistant (gemma4
// convert, weights/convert.hpp) used in place.

#include <sys/mman.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/pfr.hpp>

#include "gemma4/base/mapped_file.hpp"
#include "gemma4/config/assistant.hpp"
#include "gemma4/config/config_json.hpp"
#include "gemma4/error.hpp"
#include "gemma4/weights/binding.hpp"
#include "gemma4/weights/checkpoint.hpp"
#include "gemma4/weights/model_weights.hpp"
#include "gemma4/weights/packed_model.hpp"
#include "gemma4/weights/packed_store.hpp"

namespace gemma4 {

// A matrix outside the decoder: its shape comes from the head fields.
template <detail::FixedString kName>
struct HeadMatrix : MatrixView {
  static constexpr std::string_view name = kName.view();
  static constexpr Residency residency = Residency::kInMemory;
};

// The decoder's tensors outside its layers, under the "model." prefix.
struct AssistantGlobalWeights {
  Weight<"embed_tokens.weight", Dim::kVocab, Dim::kHidden> embed_tokens;  // its own, the tied head; never its input
  Weight<"norm.weight", Dim::kHidden> norm;
};

inline constexpr std::string_view kAssistantModelType = "gemma4_assistant";
inline constexpr std::string_view kTokenOrderingName = "masked_embedding.token_ordering";

// The text_config fields an assistant's computation depends on: the others (ids, the
// context length, ...) are not read, and a published file may say anything there.
inline constexpr std::array<std::string_view, 16> kAssistantTextFields = {
    "vocab_size",      "hidden_size",          "intermediate_size", "num_hidden_layers",          "num_attention_heads",
    "num_key_value_heads", "head_dim",         "global_head_dim",   "layer_types",                "sliding_window",
    "num_kv_shared_layers", "rms_norm_eps",    "hidden_activation", "hidden_size_per_layer_input", "final_logit_softcapping",
    "rope_parameters"};

// Every field of assistant A that `config` (a whole assistant config.json) contradicts,
// or an error if it is not an assistant's config at all.
template <AssistantVariant A>
std::vector<FieldMismatch> compare_assistant_config(const nlohmann::json& config) {
  if (!config.is_object()) fail(ErrorKind::kBadFile, "config.json: not a JSON object");
  const auto type = config.find("model_type");
  if (type == config.end() || *type != kAssistantModelType) {
    fail(ErrorKind::kConfigMismatch, "config.json: model_type is {}, expected \"{}\": not a Gemma 4 assistant",
         type == config.end() ? std::string("absent") : type->dump(), kAssistantModelType);
  }
  const auto text = config.find("text_config");
  if (text == config.end() || !text->is_object()) fail(ErrorKind::kBadFile, "config.json: an assistant's config needs a text_config object");
  std::vector<FieldMismatch> mismatches;
  boost::pfr::for_each_field(A::head, [&](const auto& field) {
    const nlohmann::json want = field.value;
    const auto found = config.find(std::string(field.name));
    if (found == config.end() || !detail::json_equal(want, *found)) {
      mismatches.push_back({std::string(field.name), want.dump(), found == config.end() ? "absent" : found->dump()});
    }
  });
  for (FieldMismatch& m : compare_config(A::config, *text)) {
    if (std::find(kAssistantTextFields.begin(), kAssistantTextFields.end(), m.field) != kAssistantTextFields.end()) {
      m.field = "text_config." + m.field;
      mismatches.push_back(std::move(m));
    }
  }
  return mismatches;
}

// How an assistant's matrices are held: as stored (bf16 in the published files), or
// converted at load to int8/int4 like its target's (gemma4 run uses the target's
// format). The centroid head's table is int8 for int4 too, as a target's embedding is.
struct AssistantOptions {
  // What a published assistant's matrices are converted to; a packed assistant runs in
  // the format it was packed in, whatever this says (a drafter's format changes only
  // which drafts it proposes, never the output).
  WeightFormat format = WeightFormat::kBF16;
  ThreadPool* pool = nullptr;  // threads converting; null: the process-wide default_pool()
};

// A packed assistant (gemma4 convert) holds the head's table in centroid order under
// this name, and no model.embed_tokens.weight.
inline constexpr std::string_view kOrderedTableName = "masked_embedding.ordered_embed_tokens";

// The weights of assistant A from its directory. Owns the mapping; read-only after
// construction, shareable by any number of drafters.
// Errors: gemma4::Error listing every mismatching config field or every missing,
// misshapen or unexpected tensor, or a token ordering that is not a permutation.
template <AssistantVariant A>
class Assistant {
 public:
  static constexpr const ModelConfig& config = A::config;
  static constexpr int kLayerCount = kNumLayers<A>;

  AssistantGlobalWeights global;
  std::array<LayerWeights, kLayerCount> layers;
  HeadMatrix<"pre_projection.weight"> pre_projection;             // [hidden, 2 * backbone]
  HeadMatrix<"post_projection.weight"> post_projection;           // [backbone, hidden]
  HeadMatrix<"masked_embedding.centroids.weight"> centroids;      // [num_centroids, hidden]
  std::vector<int> token_ordering;                                // [vocab]: centroid c's ids at [c * vocab / num_centroids, ...)
  // embed_tokens' rows in token_ordering's order, the only form of the table a draft step
  // reads: the centroid head reads a chosen centroid's ids as one block of rows instead
  // of rows scattered over the whole table, which cost most of a draft step (a memory
  // and TLB miss per row). A packed assistant stores it so, and no embed_tokens.
  MatrixView ordered_embeddings;                                  // [vocab, hidden]

  explicit Assistant(const std::filesystem::path& dir, const AssistantOptions& options = {}) : checkpoint_(dir) {
    const std::string config_file = (dir / "config.json").string();
    const auto mismatches = compare_assistant_config<A>(checkpoint_.config());
    if (!mismatches.empty()) {
      fail(ErrorKind::kConfigMismatch, "{}: config.json does not describe {}; mismatching fields:\n{}", config_file, A::name,
           format_mismatches(mismatches));
    }
    const std::optional<PackedModelInfo> packed = packed_model_info(checkpoint_);
    if (packed && packed->variant != A::name) {
      fail(ErrorKind::kConfigMismatch, "{}: packed for {}, but config.json describes {}", checkpoint_.files().front().path().string(),
           packed->variant, A::name);
    }
    report_.packed_model = packed.has_value();
    report_.format = packed ? packed->format : options.format;
    report_.prefix = std::string(kTextOnlyPrefix);
    SlotBinder binder(checkpoint_, copies_, residency_, report_);
    for_each_slot<A>(global, layers, [&](auto& slot, const std::string& name, const LayerFacts& facts) {
      using S = std::remove_cvref_t<decltype(slot)>;
      binder.bind(slot, report_.prefix + name, expected_shape<S>(A::config, facts), packed.has_value());
    });
    const std::int64_t hidden = A::config.hidden_size, backbone = A::head.backbone_hidden_size;
    binder.bind(pre_projection, std::string(pre_projection.name), {hidden, 2 * backbone}, packed.has_value());
    binder.bind(post_projection, std::string(post_projection.name), {backbone, hidden}, packed.has_value());
    binder.bind(centroids, std::string(centroids.name), {A::head.num_centroids, hidden}, packed.has_value());
    static_cast<TensorView&>(ordered_embeddings) = {nullptr, DType::kF32, {A::config.vocab_size, hidden}};
    read_token_ordering(binder);
    for (const SafetensorsFile& file : checkpoint_.files()) {
      for (const TensorInfo& t : file.tensors()) {
        if (binder.used(t.name) || t.name == kTokenOrderingName || (packed && t.name == kOrderedTableName)) continue;
        if (t.name.find("k_proj") != std::string::npos || t.name.find("v_proj") != std::string::npos) {
          binder.add_problem(fmt::format("{}: an assistant's layers only query (no k/v projections): is this a target model?", t.name));
        } else {
          report_.unknown.push_back(t.name);
        }
      }
    }
    binder.finish(A::name);
    if (packed) {
      view_packed();
    } else {
      order_embeddings();
      if (report_.format != WeightFormat::kBF16) quantize(pool_or_default(options.pool));
    }
  }

  // The matrices a draft step multiplies by, in the order a packed assistant stores them,
  // with their shapes in `format` (full names; the head's table in int8): the plan a
  // target's plan_packed (weights/packed_model.hpp) makes for its own matrices.
  std::vector<PlannedMatrix<MatrixView>> plan_packed(WeightFormat format) {
    std::vector<PlannedMatrix<MatrixView>> planned;
    const auto add = [&](MatrixView& slot, std::string name, WeightFormat f) {
      planned.push_back({{std::move(name), f, static_cast<std::size_t>(slot.shape[0]), static_cast<std::size_t>(slot.shape[1])}, &slot,
                         /*read_by_rows=*/false});
    };
    for_each_slot<A>(global, layers, [&](auto& slot, const std::string& name, const LayerFacts&) {
      using S = std::remove_cvref_t<decltype(slot)>;
      if constexpr (std::is_base_of_v<MatrixView, S> && !std::is_same_v<S, decltype(AssistantGlobalWeights::embed_tokens)>) {
        add(slot, std::string(kTextOnlyPrefix) + name, format);
      }
    });
    add(pre_projection, std::string(pre_projection.name), format);
    add(post_projection, std::string(post_projection.name), format);
    add(centroids, std::string(centroids.name), format);
    add(ordered_embeddings, std::string(kOrderedTableName), WeightFormat::kInt8);
    return planned;
  }

  const LoadReport& report() const { return report_; }
  const Checkpoint& checkpoint() const { return checkpoint_; }

 private:
  void read_token_ordering(SlotBinder& binder) {
    const TensorInfo* t = checkpoint_.find(std::string(kTokenOrderingName));
    const std::int64_t vocab = A::config.vocab_size;
    if (t == nullptr) return binder.add_problem(fmt::format("{}: missing (expected I64 [{}])", kTokenOrderingName, vocab));
    if (t->dtype_name != "I64" || t->shape != std::vector<std::int64_t>{vocab}) {
      return binder.add_problem(fmt::format("{}: {} {}, expected I64 [{}]", kTokenOrderingName, t->dtype_name, detail::shape_string(t->shape), vocab));
    }
    token_ordering.resize(static_cast<std::size_t>(vocab));
    std::vector<bool> seen(static_cast<std::size_t>(vocab), false);
    for (std::size_t i = 0; i < token_ordering.size(); ++i) {
      std::int64_t id;  // little-endian in the file, as on every target this library builds for
      std::memcpy(&id, t->bytes.data() + i * sizeof id, sizeof id);
      if (id < 0 || id >= vocab || seen[static_cast<std::size_t>(id)]) {
        return binder.add_problem(fmt::format("{}: entry {} is {}: {} (it must be a permutation of the {} token ids)", kTokenOrderingName, i, id,
                                              id < 0 || id >= vocab ? "outside the vocabulary" : "a repeat", vocab));
      }
      seen[static_cast<std::size_t>(id)] = true;
      token_ordering[i] = static_cast<int>(id);
    }
    report_.weight_bytes += t->bytes.size();
    ++report_.tensors_used;
  }

  // The copy is the only table a draft step reads, so the mapped table's pages are
  // dropped from this process.
  void order_embeddings() {
    const TensorView& table = global.embed_tokens;
    const std::size_t row_bytes = static_cast<std::size_t>(table.shape[1]) * dtype_size(table.dtype);
    ordered_bytes_.resize(table.bytes().size());
    for (std::size_t i = 0; i < token_ordering.size(); ++i) {
      std::memcpy(ordered_bytes_.data() + i * row_bytes, table.data + static_cast<std::size_t>(token_ordering[i]) * row_bytes, row_bytes);
    }
    static_cast<TensorView&>(ordered_embeddings) = {ordered_bytes_.data(), table.dtype, table.shape};
    ordered_embeddings.linear = static_cast<const TensorView&>(ordered_embeddings);
    if (!copies_.is_copy(table)) advise(table.bytes(), MADV_DONTNEED);
  }

  // Every matrix, the head's table included, used in place from the mapping.
  void view_packed() {
    const auto planned = plan_packed(report_.format);
    std::vector<PackedMatrixShape> shapes;
    for (const auto& m : planned) shapes.push_back(m.shape);
    packed_.view(checkpoint_, shapes, "");
    attach_packed(planned, packed_, report_, checkpoint_.files().front().path().string(), "");
    if (const TensorInfo* t = checkpoint_.find(std::string(kOrderedTableName))) report_.weight_bytes += t->bytes.size();
  }

  // Every matrix a draft step multiplies by, packed in report_.format; the ordered copy is
  // freed once packed.
  void quantize(ThreadPool& pool) {
    const auto planned = plan_packed(report_.format);
    std::vector<PackedMatrices::Source> sources;
    for (const auto& m : planned) sources.push_back({m.shape, *m.slot, m.slot != &ordered_embeddings && !copies_.is_copy(*m.slot)});
    packed_.convert(sources, pool, checkpoint_.dir().string());
    attach_packed(planned, packed_, report_, checkpoint_.files().front().path().string(), "");
    ordered_embeddings.data = nullptr;
    ordered_bytes_ = {};
  }

  Checkpoint checkpoint_;
  LoadReport report_;
  WidenedCopies copies_;
  PageResidency residency_;
  std::vector<std::byte> ordered_bytes_;
  PackedMatrices packed_;
};

}  // namespace gemma4

#pragma once
// Binding a checkpoint's tensors to the slots of one compiled variant (model_weights.hpp):
// every expected tensor is checked for presence, dtype and shape and used in place from
// the mapping; f16 and misaligned tensors are widened into f32 copies. Every other tensor
// is sorted into skipped (vision/audio towers, the unused k/v of KV-shared layers) or
// unknown. An error lists every problem at once.

#include <array>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include <boost/pfr.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "gemma4/config/topology.hpp"
#include "gemma4/error.hpp"
#include "gemma4/weights/checkpoint.hpp"
#include "gemma4/weights/load_options.hpp"
#include "gemma4/weights/model_weights.hpp"
#include "gemma4/weights/residency.hpp"

namespace gemma4 {

namespace detail {

inline bool is_multimodal_tensor(std::string_view name) {
  for (std::string_view p : {"model.vision_tower.", "model.audio_tower.", "model.embed_vision.", "model.embed_audio."}) {
    if (name.starts_with(p)) return true;
  }
  return false;
}

inline std::string shape_string(const std::vector<std::int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

}  // namespace detail

// f32 copies of tensors that cannot be used in place: f16 ones, and any misaligned in
// the file.
class WidenedCopies {
 public:
  TensorView widen(const TensorView& source) {
    const std::size_t n = source.size();
    auto& copy = copies_.emplace_back(new float[n]);
    for (std::size_t i = 0; i < n; ++i) copy[i] = source.at(i);
    bytes_ += n * sizeof(float);
    return {reinterpret_cast<const std::byte*>(copy.get()), DType::kF32, source.shape};
  }
  // Whether `view` is one of these copies (and not in the checkpoint's mapping).
  bool is_copy(const TensorView& view) const {
    for (const auto& copy : copies_) {
      if (view.data == reinterpret_cast<const std::byte*>(copy.get())) return true;
    }
    return false;
  }
  std::size_t bytes() const { return bytes_; }

 private:
  std::vector<std::unique_ptr<float[]>> copies_;
  std::size_t bytes_ = 0;
};

// Calls f(slot, name, facts) for every slot of V that its layer holds, globals first;
// names are the checkpoint's, without the prefix.
template <Variant V, typename Global, typename Layers, typename F>
void for_each_slot(Global& global, Layers& layers, F&& f) {
  const LayerFacts no_layer{};
  boost::pfr::for_each_field(global, [&](auto& slot) { f(slot, std::string(slot.name), no_layer); });
  for (int l = 0; l < kNumLayers<V>; ++l) {
    boost::pfr::for_each_field(layers[l], [&](auto& slot) {
      using S = std::remove_cvref_t<decltype(slot)>;
      if (holds<S>(kLayers<V>[l])) f(slot, layer_tensor_name(l, S::name), kLayers<V>[l]);
    });
  }
}

// Binds tensors of a checkpoint to slots one at a time, collecting every problem so
// that finish() can report them all at once.
class SlotBinder {
 public:
  SlotBinder(const Checkpoint& checkpoint, WidenedCopies& copies, PageResidency& residency, LoadReport& report)
      : checkpoint_(checkpoint), copies_(copies), residency_(residency), report_(report) {}

  // Points `slot` at tensor `full` of shape `want`. `packed_matrices` (a packed model):
  // a matrix is packed bytes, which PackedMatrices checks and views; its slot gets no
  // dense elements (data null), only its shape.
  template <typename S>
  void bind(S& slot, const std::string& full, const std::vector<std::int64_t>& want, bool packed_matrices) {
    const TensorInfo* t = checkpoint_.find(full);
    if constexpr (std::is_base_of_v<MatrixView, S>) {
      if (packed_matrices) {
        static_cast<TensorView&>(slot) = {nullptr, DType::kF32, {want[0], want[1]}};
        if (t == nullptr) return;  // PackedMatrices lists it
        count(slot, *t);
        return;
      }
    }
    if (t == nullptr) return problems_.push_back(fmt::format("{}: missing (expected {})", full, detail::shape_string(want)));
    if (!t->dtype) return problems_.push_back(fmt::format("{}: dtype {}, expected BF16, F16 or F32", full, t->dtype_name));
    if (t->shape != want) {
      return problems_.push_back(fmt::format("{}: shape {}, expected {}", full, detail::shape_string(t->shape), detail::shape_string(want)));
    }
    TensorView& view = slot;
    view = {t->bytes.data(), *t->dtype, {want[0], want.size() == 2 ? want[1] : 1}};
    count(slot, *t);
    if constexpr (S::residency == Residency::kInMemory) {
      const bool misaligned = reinterpret_cast<std::uintptr_t>(view.data) % dtype_size(view.dtype) != 0;
      if (view.dtype == DType::kF16 || misaligned) view = copies_.widen(view);
    }
    if constexpr (std::is_base_of_v<MatrixView, S>) slot.linear = view;
  }

  // A problem found outside bind(), reported with the others.
  void add_problem(std::string problem) { problems_.push_back(std::move(problem)); }
  bool used(const std::string& full) const { return used_.contains(full); }

  // Fails listing every problem, if there were any.
  void finish(std::string_view variant) {
    report_.copied_bytes = copies_.bytes();
    if (problems_.empty()) return;
    constexpr std::size_t kShown = 40;
    std::string list;
    for (std::size_t i = 0; i < problems_.size() && i < kShown; ++i) list += "  " + problems_[i] + "\n";
    if (problems_.size() > kShown) list += fmt::format("  ... and {} more\n", problems_.size() - kShown);
    fail(ErrorKind::kConfigMismatch, "{}: checkpoint does not match {} ({} problems):\n{}", checkpoint_.dir().string(), variant,
         problems_.size(), list);
  }

 private:
  template <typename S>
  void count(const S&, const TensorInfo& t) {
    used_.insert(t.name);
    report_.weight_bytes += t.bytes.size();
    ++report_.tensors_used;
    if constexpr (S::residency == Residency::kOnDisk) {
      residency_.read_by_rows(t.bytes);
      report_.ple_table_bytes += t.bytes.size();
    }
  }

  const Checkpoint& checkpoint_;
  WidenedCopies& copies_;
  PageResidency& residency_;
  LoadReport& report_;
  std::vector<std::string> problems_;
  std::set<std::string> used_;
};

// Points every slot of global and layers at its tensor in `checkpoint`, or fails listing
// every missing or misshapen one. Tables read by rows are registered with `residency`.
// `packed_matrices`: a packed model (SlotBinder::bind).
template <Variant V>
void bind_checkpoint(const Checkpoint& checkpoint, GlobalWeights& global, std::array<LayerWeights, kNumLayers<V>>& layers,
                     WidenedCopies& copies, PageResidency& residency, LoadReport& report, bool packed_matrices) {
  SlotBinder binder(checkpoint, copies, residency, report);
  for_each_slot<V>(global, layers, [&](auto& slot, const std::string& name, const LayerFacts& facts) {
    using S = std::remove_cvref_t<decltype(slot)>;
    binder.bind(slot, report.prefix + name, expected_shape<S>(V::config, facts), packed_matrices);
  });
  binder.finish(V::name);

  // Every tensor not bound is expected to be there unused, or unknown.
  std::set<std::string> unused_kv;
  for (int l = first_kv_shared_layer(V::config); l < kNumLayers<V>; ++l) {
    boost::pfr::for_each_field(layers[l], [&](auto& slot) {
      using S = std::remove_cvref_t<decltype(slot)>;
      if (!holds<S>(kLayers<V>[l])) unused_kv.insert(report.prefix + layer_tensor_name(l, S::name));
    });
  }
  for (const SafetensorsFile& file : checkpoint.files()) {
    for (const TensorInfo& t : file.tensors()) {
      if (binder.used(t.name)) continue;
      const bool expected = detail::is_multimodal_tensor(t.name) || unused_kv.contains(t.name);
      (expected ? report.skipped : report.unknown).push_back(t.name);
    }
  }
}

}  // namespace gemma4

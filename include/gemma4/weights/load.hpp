#pragma once
// Loading a checkpoint directory into the weights of one compiled variant: config.json
// is compared with the variant field by field, every expected tensor is checked for
// presence, dtype and shape, and tensors are used in place from the memory mapping.
// Only F16 tensors (widened to F32) and misaligned ones are copied. The per-layer
// embedding table is never touched at load time: only the rows of tokens seen are read.

#include <sys/mman.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <boost/pfr.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "gemma4/config/config_json.hpp"
#include "gemma4/config/topology.hpp"
#include "gemma4/error.hpp"
#include "gemma4/weights/checkpoint.hpp"
#include "gemma4/weights/model_weights.hpp"

namespace gemma4 {

struct LoadOptions {
  // Fault all weights except the PLE table into memory during load, so the first
  // token does not pay for page faults and the resident size is known up front.
  bool prefault = true;
  // Called as prefaulting goes, with bytes done and total: a front end's progress bar.
  std::function<void(std::size_t done, std::size_t total)> on_progress;
};

struct LoadReport {
  std::string prefix;                 // checkpoint name prefix in use
  std::size_t tensors_used = 0;
  std::size_t weight_bytes = 0;       // all weights used, PLE table included
  std::size_t ple_table_bytes = 0;    // Residency::kOnDisk tensors (the PLE table): left on disk
  std::size_t copied_bytes = 0;       // F16 widened to F32, or realigned
  std::vector<std::string> skipped;   // vision/audio tensors and unused k/v of KV-shared layers
  std::vector<std::string> unknown;   // other tensors the text model does not use
};

namespace detail {

inline bool is_multimodal_tensor(std::string_view name) {
  for (std::string_view p : {"model.vision_tower.", "model.audio_tower.", "model.embed_vision.", "model.embed_audio."}) {
    if (name.starts_with(p)) return true;
  }
  return false;
}

inline std::string shape_string(const std::vector<std::int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

}  // namespace detail

// The weights of variant V from one checkpoint directory. Owns the mappings; the
// TensorViews stay valid as long as this object lives (it may be moved).
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
      fail("{}: config.json does not describe {}; mismatching fields:\n{}", (dir / "config.json").string(), V::name,
           format_mismatches(mismatches));
    }
    report_.prefix = std::string(checkpoint_.prefix());
    bind_all();
    if (options.prefault) prefault_all(options.on_progress);
  }

  const LoadReport& report() const { return report_; }
  const Checkpoint& checkpoint() const { return checkpoint_; }

 private:
  // What binding collects across all tensors: problems to report, names used.
  struct Binding {
    std::vector<std::string> problems;
    std::set<std::string> used;
  };

  template <typename S>
  void bind(S& slot, const std::string& name, const LayerFacts& facts, Binding& binding) {
    const std::string full = report_.prefix + name;
    const auto want = expected_shape<S>(V::config, facts);
    const TensorInfo* t = checkpoint_.find(full);
    if (t == nullptr) {
      binding.problems.push_back(fmt::format("{}: missing (expected {})", full, detail::shape_string(want)));
      return;
    }
    binding.used.insert(full);
    if (!t->dtype) {
      binding.problems.push_back(fmt::format("{}: dtype {}, expected BF16, F16 or F32", full, t->dtype_name));
      return;
    }
    if (t->shape != want) {
      binding.problems.push_back(fmt::format("{}: shape {}, expected {}", full, detail::shape_string(t->shape), detail::shape_string(want)));
      return;
    }
    slot.shape = {want[0], want.size() == 2 ? want[1] : 1};
    slot.dtype = *t->dtype;
    slot.stored_dtype = *t->dtype;
    slot.data = t->bytes.data();
    report_.weight_bytes += t->bytes.size();
    ++report_.tensors_used;
    if constexpr (S::residency == Residency::kOnDisk) {
      // Read a few rows per token, at random: readahead would only waste memory.
      advise(t->bytes, MADV_RANDOM);
      report_.ple_table_bytes += t->bytes.size();
      return;
    }
    const bool misaligned = reinterpret_cast<std::uintptr_t>(t->bytes.data()) % dtype_size(slot.dtype) != 0;
    if (slot.dtype == DType::kF16 || misaligned) copy_to_f32(slot, *t);
  }

  void copy_to_f32(TensorView& slot, const TensorInfo& t) {
    const std::size_t n = slot.size();
    auto& copy = copies_.emplace_back(new float[n]);
    for (std::size_t i = 0; i < n; ++i) copy[i] = load_element(t.bytes.data(), slot.dtype, i);
    slot.data = reinterpret_cast<const std::byte*>(copy.get());
    slot.dtype = DType::kF32;
    report_.copied_bytes += n * sizeof(float);
  }

  void bind_all() {
    Binding binding;
    const LayerFacts no_layer{};
    boost::pfr::for_each_field(global, [&](auto& slot) { bind(slot, std::string(slot.name), no_layer, binding); });
    for (int l = 0; l < kNumLayers<V>; ++l) {
      const LayerFacts& facts = kLayers<V>[l];
      boost::pfr::for_each_field(layers[l], [&](auto& slot) {
        using S = std::remove_cvref_t<decltype(slot)>;
        if (holds<S>(facts)) bind(slot, layer_tensor_name(l, S::name), facts, binding);
      });
    }
    const auto& problems = binding.problems;
    if (!problems.empty()) {
      constexpr std::size_t kShown = 40;
      std::string list;
      for (std::size_t i = 0; i < problems.size() && i < kShown; ++i) list += "  " + problems[i] + "\n";
      if (problems.size() > kShown) list += fmt::format("  ... and {} more\n", problems.size() - kShown);
      fail("{}: checkpoint does not match {} ({} problems):\n{}", checkpoint_.dir().string(), V::name, problems.size(), list);
    }
    classify_unused(binding.used);
  }

  // Every tensor not bound is either expected to be there unused, or unknown.
  void classify_unused(const std::set<std::string>& used) {
    std::set<std::string> unused_kv;
    for (int l = first_kv_shared_layer(V::config); l < kNumLayers<V>; ++l) {
      boost::pfr::for_each_field(layers[l], [&](auto& slot) {
        using S = std::remove_cvref_t<decltype(slot)>;
        if (!holds<S>(kLayers<V>[l])) unused_kv.insert(report_.prefix + layer_tensor_name(l, S::name));
      });
    }
    for (const SafetensorsFile& file : checkpoint_.files()) {
      for (const TensorInfo& t : file.tensors()) {
        if (used.contains(t.name)) continue;
        const bool expected = detail::is_multimodal_tensor(t.name) || unused_kv.contains(t.name);
        (expected ? report_.skipped : report_.unknown).push_back(t.name);
      }
    }
  }

  void prefault_all(const std::function<void(std::size_t, std::size_t)>& on_progress) {
    std::size_t total = 0, done = 0;
    const auto for_each_in_memory = [&](auto&& f) {
      const auto visit = [&](const auto& slot) {
        if constexpr (std::remove_cvref_t<decltype(slot)>::residency == Residency::kInMemory) {
          if (slot.data != nullptr) f(slot.bytes());
        }
      };
      boost::pfr::for_each_field(global, visit);
      for (auto& layer : layers) boost::pfr::for_each_field(layer, visit);
    };
    for_each_in_memory([&](std::span<const std::byte> bytes) { total += bytes.size(); });
    for_each_in_memory([&](std::span<const std::byte> bytes) {
      prefault(bytes);
      done += bytes.size();
      if (on_progress) on_progress(done, total);
    });
  }

  Checkpoint checkpoint_;
  LoadReport report_;
  std::vector<std::unique_ptr<float[]>> copies_;
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
  if (!found) fail("config.json matches none of the compiled variants; fields that differ:\n{}", differences);
}

}  // namespace gemma4

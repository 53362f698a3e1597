#pragma once
// Loading a checkpoint directory into the weights of one compiled variant: config.json
// is compared with the variant field by field, every expected tensor is checked for
// presence, dtype and shape, and tensors are used in place from the memory mapping.
// Only F16 tensors (widened to F32) and misaligned ones are copied. The per-layer
// embedding table is never touched at load time: only the rows of tokens seen are read.
// int8/int4 matrices are converted from the checkpoint, or mapped from a converted file
// saved earlier (weights/converted_file.hpp).

#include <sys/mman.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
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
#include "gemma4/weights/converted_file.hpp"
#include "gemma4/parallel/thread_pool.hpp"
#include "gemma4/weights/model_weights.hpp"
#include "gemma4/ops/packed_matrix.hpp"

namespace gemma4 {

struct LoadOptions {
  // Format of the linear layers (the tied LM head included). int8 and int4 are
  // converted from the checkpoint at load time; the embedding lookup and the PLE table
  // keep reading the checkpoint's rows.
  WeightFormat format = WeightFormat::kBF16;
  // A file that save_converted() wrote for this checkpoint and format: its int8/int4
  // matrices are mapped instead of converted. Empty: convert at load time.
  std::filesystem::path converted_file{};
  // Threads converting to int8/int4; null: the process-wide default_pool().
  ThreadPool* pool = nullptr;
  // Fault all weights except the PLE table into memory during load, so the first
  // token does not pay for page faults and the resident size is known up front.
  bool prefault = true;
  // Called as prefaulting goes, with bytes done and total: a front end's progress bar.
  std::function<void(std::size_t done, std::size_t total)> on_progress{};
};

struct LoadReport {
  std::string prefix;                 // checkpoint name prefix in use
  std::size_t tensors_used = 0;
  std::size_t weight_bytes = 0;       // all weights used, PLE table included
  std::size_t ple_table_bytes = 0;    // Residency::kOnDisk tensors (the PLE table): left on disk
  std::size_t copied_bytes = 0;       // F16 widened to F32, or realigned
  WeightFormat format = WeightFormat::kBF16;
  std::size_t quantized_bytes = 0;    // int8/int4 weights and scales, converted or mapped
  std::filesystem::path converted_file;  // where they were mapped from, if not converted
  // Weights kept in memory, every one read once per token (the PLE table and the
  // embedding rows looked up are not counted): what decode streams from memory.
  std::size_t bytes_per_token = 0;
  std::vector<std::string> kept_int8; // int4 requested, int8 used: columns not a multiple of 32
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
      fail(ErrorKind::kConfigMismatch, "{}: config.json does not describe {}; mismatching fields:\n{}", (dir / "config.json").string(), V::name,
           format_mismatches(mismatches));
    }
    report_.prefix = std::string(checkpoint_.prefix());
    report_.format = options.format;
    bind_all();
    if (!options.converted_file.empty()) {
      use_converted_file(options.converted_file, options.format);
    } else if (options.format != WeightFormat::kBF16) {
      convert_all(options.format, options.pool != nullptr ? *options.pool : default_pool());
    }
    for_each_in_memory([&](TensorView& slot, const std::string&) {
      report_.bytes_per_token += slot.quantized != nullptr ? slot.quantized->bytes() : slot.bytes().size();
    });
    if (options.prefault) prefault_all(options.on_progress);
  }

  const LoadReport& report() const { return report_; }

  // Drops from this process the pages of tables read a few rows per token (the PLE
  // table, and the embedding when the LM head was quantized): the kernel maps pages
  // around each row read, and without this the resident size would grow with every
  // new token seen, up to the tables' full 4.7 GB (E2B). Other readers just refault.
  void release_looked_up_rows() const {
    for (std::span<const std::byte> table : looked_up_tables_) advise(table, MADV_DONTNEED);
  }
  const Checkpoint& checkpoint() const { return checkpoint_; }

  // Writes the int8/int4 matrices to `path` (weights/converted_file.hpp), for
  // LoadOptions::converted_file to map at the next load.
  void save_converted(const std::filesystem::path& path) const {
    if (report_.format == WeightFormat::kBF16) fail(ErrorKind::kInvalidArgument, "{}: only int8 or int4 weights can be saved converted", path.string());
    std::vector<std::pair<std::string, const QuantizedMatrix*>> matrices;
    std::vector<std::string> names;
    for (const auto& [name, matrix] : quantized_) {
      matrices.emplace_back(name, matrix.get());
      names.push_back(name);
    }
    write_converted_file(path, identity(report_.format, names), matrices);
  }

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
      looked_up_tables_.push_back(t->bytes);
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
      fail(ErrorKind::kConfigMismatch, "{}: checkpoint does not match {} ({} problems):\n{}", checkpoint_.dir().string(), V::name, problems.size(), list);
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

  // Calls f(slot, name) for every tensor slot that is bound and kept in memory.
  template <typename F>
  void for_each_in_memory(F&& f) {
    const auto visit = [&](auto& slot, const std::string& name) {
      if constexpr (std::remove_cvref_t<decltype(slot)>::residency == Residency::kInMemory) {
        if (slot.data != nullptr) f(static_cast<TensorView&>(slot), name);
      }
    };
    boost::pfr::for_each_field(global, [&](auto& slot) { visit(slot, std::string(slot.name)); });
    for (int l = 0; l < kNumLayers<V>; ++l) {
      boost::pfr::for_each_field(layers[l], [&](auto& slot) { visit(slot, layer_tensor_name(l, slot.name)); });
    }
  }

  // Each matrix to hold as int8/int4, in a fixed order: what conversion makes and a
  // converted file holds.
  struct PlannedMatrix : PackedMatrixShape {
    TensorView* slot;
  };
  std::vector<PlannedMatrix> plan_matrices(WeightFormat format) {
    std::vector<PlannedMatrix> plan;
    for_each_in_memory([&](TensorView& slot, const std::string& name) {
      const auto rows = static_cast<std::size_t>(slot.shape[0]), cols = static_cast<std::size_t>(slot.shape[1]);
      if (cols == 1) return;  // a vector: norms and scalars stay as stored
      const WeightFormat f = format == WeightFormat::kInt4 && !packable(format, rows, cols) ? WeightFormat::kInt8 : format;
      if (!packable(f, rows, cols)) fail(ErrorKind::kInvalidArgument, "{}: a [{}, {}] matrix cannot be stored as {}", name, rows, cols, weight_format_name(f));
      plan.push_back({{name, f, rows, cols}, &slot});
    });
    return plan;
  }

  ConvertedIdentity identity(WeightFormat format, const std::vector<std::string>& names) const {
    return {std::string(V::name), format, source_fingerprint(checkpoint_, names)};
  }

  // Converts every matrix to `format`, a slice of rows at a time; each slice's source
  // pages are dropped from memory once converted, so the peak stays near the result.
  void convert_all(WeightFormat format, ThreadPool& pool) {
    const auto plan = plan_matrices(format);
    std::size_t arena_bytes = 0;
    for (const auto& m : plan) arena_bytes += QuantizedMatrix::storage_bytes(m.format, m.rows, m.cols);
    arena_ = detail::aligned_array<std::byte>(arena_bytes);  // one arena for all
    std::byte* next = arena_.get();
    for (const auto& m : plan) {
      TensorView& slot = *m.slot;
      auto matrix = std::make_unique<QuantizedMatrix>(m.format, m.rows, m.cols, next);
      QuantizedMatrix& q = *matrix;
      next += QuantizedMatrix::storage_bytes(m.format, m.rows, m.cols);
      const std::size_t row_bytes = m.cols * dtype_size(slot.dtype);
      const std::size_t blocks = m.rows / kRowBlock;
      const std::size_t slice = std::max<std::size_t>(1, (std::size_t{16} << 20) / (row_bytes * kRowBlock));
      const bool mapped = slot.dtype == slot.stored_dtype;  // not a widened copy
      for (std::size_t first = 0; first < blocks; first += slice) {
        const std::size_t end = std::min(blocks, first + slice);
        pool.parallel_for(end - first, [&](int, std::size_t begin, std::size_t stop) {
          if (slot.dtype == DType::kBF16) {
            q.quantize_blocks(reinterpret_cast<const std::uint16_t*>(slot.data), first + begin, first + stop);
          } else {
            q.quantize_blocks(reinterpret_cast<const float*>(slot.data), first + begin, first + stop);
          }
        });
        if (mapped) advise({slot.data + first * kRowBlock * row_bytes, (end - first) * kRowBlock * row_bytes}, MADV_DONTNEED);
      }
      attach(m, std::move(matrix));
    }
  }

  // Maps every matrix from a file save_converted() wrote, after checking that it was
  // written for this variant, format and checkpoint and holds exactly the planned
  // matrices, every scale finite.
  void use_converted_file(const std::filesystem::path& path, WeightFormat format) {
    if (format == WeightFormat::kBF16) fail(ErrorKind::kInvalidArgument, "{}: a converted file holds int8 or int4 weights; ask for one of them", path.string());
    const auto plan = plan_matrices(format);
    std::vector<std::string> names;
    for (const auto& m : plan) names.push_back(m.name);
    const ConvertedFile& file = converted_.emplace(path, identity(format, names), checkpoint_.dir());
    auto views = file.matrices({plan.begin(), plan.end()});
    for (std::size_t i = 0; i < plan.size(); ++i) attach(plan[i], std::move(views[i]));
    report_.converted_file = path;
  }

  // Matmuls use `matrix` for m's slot from now on; the checkpoint's copy is only looked up.
  void attach(const PlannedMatrix& m, std::unique_ptr<QuantizedMatrix> matrix) {
    TensorView& slot = *m.slot;
    if (m.format != report_.format) report_.kept_int8.push_back(m.name);
    report_.quantized_bytes += matrix->bytes();
    slot.quantized = matrix.get();
    if (slot.dtype == slot.stored_dtype) looked_up_tables_.push_back(slot.bytes());
    quantized_.emplace_back(m.name, std::move(matrix));
  }

  void prefault_all(const std::function<void(std::size_t, std::size_t)>& on_progress) {
    // What matmuls read: weights kept as stored, and matrices mapped from a converted
    // file. A converted matrix's source is no longer read by matmuls: it stays on disk.
    std::vector<std::span<const std::byte>> ranges;
    for_each_in_memory([&](TensorView& slot, const std::string&) {
      if (slot.quantized == nullptr) ranges.push_back(slot.bytes());
    });
    if (converted_) {
      for (const auto& [name, matrix] : quantized_) ranges.push_back(matrix->packed());
    }
    std::size_t total = 0, done = 0;
    for (const auto& range : ranges) total += range.size();
    for (const auto& range : ranges) {
      prefault(range);
      done += range.size();
      if (on_progress) on_progress(done, total);
    }
  }

  Checkpoint checkpoint_;
  LoadReport report_;
  std::vector<std::unique_ptr<float[]>> copies_;
  std::unique_ptr<std::byte[], detail::FreeDeleter> arena_;  // converted matrices' bytes
  std::optional<ConvertedFile> converted_;                    // or the file mapping them
  std::vector<std::pair<std::string, std::unique_ptr<QuantizedMatrix>>> quantized_;
  std::vector<std::span<const std::byte>> looked_up_tables_;  // mapped ranges read by row
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

#pragma once
// What a caller asks of loading, and what loading reports back.

#include <cstddef>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "gemma4/parallel/thread_pool.hpp"
#include "gemma4/quant/weight_format.hpp"

namespace gemma4 {

struct LoadOptions {
  // Format of the linear layers (the tied LM head included) of a checkpoint: int8 and
  // int4 are converted at load time, and the embedding lookup and the PLE table keep
  // reading the checkpoint's rows. Unset: as stored (bf16 for a published checkpoint;
  // a packed model's own format, the only one it can be loaded in).
  std::optional<WeightFormat> format{};
  // Format of the tied LM head (the embedding) when `format` is int4: int8 (unset) or
  // int4, as weights/packed_model.hpp's head_format() says. A packed model's is as it was
  // packed; asking for another is an error.
  std::optional<WeightFormat> head_format{};
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
  bool int4_head = false;             // an int4 model's LM head in int4 (LoadOptions::head_format)
  std::size_t quantized_bytes = 0;    // int8/int4 weights and scales, converted or in place
  bool packed_model = false;          // a directory `gemma4 convert` wrote: nothing converted at load
  // Weights kept in memory, every one read once per token (the PLE table and the
  // embedding rows looked up are not counted): what decode streams from memory.
  std::size_t bytes_per_token = 0;
  std::vector<std::string> kept_int8; // int4 requested, int8 used: columns not a multiple of 32, the embedding unless its head is int4
  std::vector<std::string> skipped;   // vision/audio tensors and unused k/v of KV-shared layers
  std::vector<std::string> unknown;   // other tensors the text model does not use
};

}  // namespace gemma4

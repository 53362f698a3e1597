#pragma once
// A Hugging Face model directory: config.json plus either model.safetensors or shards
// listed by model.safetensors.index.json. Finds every tensor by name across the
// shards and works out which name prefix the checkpoint uses (spec section 5).
// Errors: gemma4::Error naming the missing or malformed file (config.json, the index, a
// shard) or the tensor stored twice. Immutable after construction; shareable across threads.

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "gemma4/base/json.hpp"
#include "gemma4/error.hpp"
#include "gemma4/weights/safetensors.hpp"

namespace gemma4 {

inline constexpr std::string_view kMultimodalPrefix = "model.language_model.";
inline constexpr std::string_view kTextOnlyPrefix = "model.";
inline constexpr std::string_view kSingleFileName = "model.safetensors";
inline constexpr std::string_view kIndexFileName = "model.safetensors.index.json";

class Checkpoint {
 public:
  explicit Checkpoint(const std::filesystem::path& dir) : dir_(dir) {
    config_ = read_model_config(dir);
    if (std::filesystem::exists(dir / kIndexFileName)) {
      open_shards(read_json_file(dir / kIndexFileName));
    } else if (std::filesystem::exists(dir / kSingleFileName)) {
      add_file(kSingleFileName);
    } else {
      fail(ErrorKind::kMissingFile, "{}: no {} and no {}", dir.string(), kSingleFileName, kIndexFileName);
    }
    prefix_ = find(std::string(kMultimodalPrefix) + "embed_tokens.weight") != nullptr ? kMultimodalPrefix : kTextOnlyPrefix;
  }

  const std::filesystem::path& dir() const { return dir_; }
  const nlohmann::json& config() const { return config_; }
  // "model.language_model." (multimodal checkpoint) or "model." (text-only).
  std::string_view prefix() const { return prefix_; }
  const std::vector<SafetensorsFile>& files() const { return files_; }

  const TensorInfo* find(const std::string& full_name) const {
    const auto it = by_name_.find(full_name);
    return it == by_name_.end() ? nullptr : it->second.info;
  }

 private:
  void open_shards(const nlohmann::json& index) {
    const std::string where = (dir_ / kIndexFileName).string();
    const auto map = index.find("weight_map");
    if (!index.is_object() || map == index.end() || !map->is_object()) fail(ErrorKind::kBadFile, "{}: no \"weight_map\" object", where);
    std::set<std::string> shards;
    for (const auto& [tensor, shard] : map->items()) {
      if (!shard.is_string()) fail(ErrorKind::kBadFile, "{}: weight_map entry for '{}' is not a file name", where, tensor);
      const auto name = shard.get<std::string>();
      // Shards live next to the index; a path elsewhere is a broken or hostile index.
      if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
        fail(ErrorKind::kBadFile, "{}: shard name '{}' for tensor '{}' is not a plain file name", where, name, tensor);
      }
      shards.insert(name);
    }
    for (const auto& shard : shards) {
      if (!std::filesystem::exists(dir_ / shard)) fail(ErrorKind::kMissingFile, "{}: shard '{}' listed in the index is missing", where, shard);
      add_file(shard);
    }
    for (const auto& [tensor, shard] : map->items()) {
      const auto it = by_name_.find(tensor);
      if (it == by_name_.end() || files_[it->second.file].path().filename() != shard.get<std::string>()) {
        fail(ErrorKind::kBadFile, "{}: index puts tensor '{}' in shard '{}', which does not hold it", where, tensor, shard.get<std::string>());
      }
    }
  }

  void add_file(std::string_view name) {
    files_.emplace_back(dir_ / name);
    const std::size_t file = files_.size() - 1;
    for (const TensorInfo& t : files_.back().tensors()) {
      const auto [it, added] = by_name_.emplace(t.name, Located{&t, file});
      if (!added) {
        fail(ErrorKind::kBadFile, "{}: tensor '{}' is stored twice (also in {})", (dir_ / name).string(), t.name,
             files_[it->second.file].path().filename().string());
      }
    }
  }

  std::filesystem::path dir_;
  nlohmann::json config_;
  std::vector<SafetensorsFile> files_;
  struct Located {
    const TensorInfo* info;
    std::size_t file;  // index into files_
  };
  std::unordered_map<std::string, Located> by_name_;
  std::string_view prefix_;
};

}  // namespace gemma4

#pragma once
// One safetensors file, mapped and validated: an 8-byte little-endian header length,
// a JSON header {name: {dtype, shape, data_offsets}}, then the data section. Every
// offset, size and shape is checked before any tensor byte is handed out, so a
// truncated or lying file is an Error, never a read outside the mapping.
// Immutable after construction; safe to share across threads.

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "gemma4/base/json.hpp"
#include "gemma4/error.hpp"
#include "gemma4/base/dtype.hpp"
#include "gemma4/base/mapped_file.hpp"

namespace gemma4 {

struct TensorInfo {
  std::string name;
  std::string dtype_name;              // as written in the header, e.g. "BF16"
  std::optional<DType> dtype;          // set when it is a weight dtype we accept
  std::vector<std::int64_t> shape;
  std::span<const std::byte> bytes;    // inside the mapping, length checked against shape
};

class SafetensorsFile {
 public:
  // The safetensors reference implementation refuses headers above 100 MB.
  static constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

  explicit SafetensorsFile(const std::filesystem::path& path) : file_(path) {
    const std::span<const std::byte> all = file_.bytes();
    if (all.size() < 8) fail(ErrorKind::kBadFile, "{}: truncated: {} bytes, but a safetensors file starts with an 8-byte header length", where(), all.size());
    std::uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<std::uint8_t>(all[i]);
    if (header_len > all.size() - 8) {
      fail(ErrorKind::kBadFile, "{}: header length {} runs past the end of the file ({} bytes): truncated or not a safetensors file", where(),
           header_len, all.size());
    }
    if (header_len > kMaxHeaderBytes) fail(ErrorKind::kBadFile, "{}: header length {} exceeds the {} byte limit", where(), header_len, kMaxHeaderBytes);
    const auto header_chars = reinterpret_cast<const char*>(all.data() + 8);
    data_ = all.subspan(8 + header_len);
    parse_header(std::string_view(header_chars, header_len));
  }

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::filesystem::path& path() const { return file_.path(); }
  // The header's "__metadata__": free-form strings such as {"format": "pt"}.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  const TensorInfo* find(std::string_view name) const {
    const auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }

 private:
  std::string where() const { return file_.path().string(); }

  void parse_header(std::string_view text) {
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      fail(ErrorKind::kBadFile, "{}: header is not valid JSON: {}", where(), e.what());
    }
    if (!header.is_object()) fail(ErrorKind::kBadFile, "{}: header is not a JSON object", where());

    struct Range {
      std::uint64_t begin, end;
      std::size_t tensor;
    };
    std::vector<Range> ranges;
    for (const auto& [name, entry] : header.items()) {
      if (name == "__metadata__") {
        parse_metadata(entry);
        continue;
      }
      TensorInfo info = parse_entry(name, entry);
      const auto begin = static_cast<std::uint64_t>(info.bytes.data() - data_.data());
      if (!info.bytes.empty()) ranges.push_back({begin, begin + info.bytes.size(), tensors_.size()});
      index_.emplace(name, tensors_.size());
      tensors_.push_back(std::move(info));
    }
    std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.begin < b.begin; });
    for (std::size_t i = 1; i < ranges.size(); ++i) {
      if (ranges[i].begin < ranges[i - 1].end) {
        fail(ErrorKind::kBadFile, "{}: tensors '{}' and '{}' overlap in the data section (bytes [{}, {}) and [{}, {}))", where(),
             tensors_[ranges[i - 1].tensor].name, tensors_[ranges[i].tensor].name, ranges[i - 1].begin,
             ranges[i - 1].end, ranges[i].begin, ranges[i].end);
      }
    }
  }

  // As the reference implementation, which reads it as a map of strings to strings.
  void parse_metadata(const nlohmann::json& entry) {
    if (!entry.is_object()) fail(ErrorKind::kBadFile, "{}: __metadata__ is not an object", where());
    for (const auto& [key, value] : entry.items()) {
      if (!value.is_string()) fail(ErrorKind::kBadFile, "{}: __metadata__ '{}' is {}, not a string", where(), key, value.dump());
      metadata_.emplace(key, value.get<std::string>());
    }
  }

  TensorInfo parse_entry(const std::string& name, const nlohmann::json& entry) const {
    if (!entry.is_object()) fail(ErrorKind::kBadFile, "{}: tensor '{}': header entry is not an object", where(), name);
    const auto dtype_it = entry.find("dtype");
    const auto shape_it = entry.find("shape");
    const auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) fail(ErrorKind::kBadFile, "{}: tensor '{}': missing or non-string 'dtype'", where(), name);
    if (shape_it == entry.end() || !shape_it->is_array()) fail(ErrorKind::kBadFile, "{}: tensor '{}': missing or non-array 'shape'", where(), name);
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
      fail(ErrorKind::kBadFile, "{}: tensor '{}': 'data_offsets' must be an array [begin, end]", where(), name);
    }

    TensorInfo info;
    info.name = name;
    info.dtype_name = dtype_it->get<std::string>();
    info.dtype = weight_dtype_from_name(info.dtype_name);
    const std::size_t element_size = safetensors_dtype_size(info.dtype_name);
    if (element_size == 0) fail(ErrorKind::kBadFile, "{}: tensor '{}': unknown dtype '{}'", where(), name, info.dtype_name);

    // Element count with an overflow check: a lying shape must not wrap around.
    std::uint64_t count = 1;
    for (const auto& dim : *shape_it) {
      const auto d = json_integer<std::uint64_t>(dim, fmt::format("{}: tensor '{}': shape {}: each dimension", where(), name, shape_it->dump()));
      if (d != 0 && count > std::numeric_limits<std::uint64_t>::max() / element_size / d) {
        fail(ErrorKind::kBadFile, "{}: tensor '{}': shape {} is too large", where(), name, shape_it->dump());
      }
      count *= d;
      info.shape.push_back(static_cast<std::int64_t>(d));
    }
    const auto& offsets = *offsets_it;
    const std::string what = fmt::format("{}: tensor '{}': each of data_offsets {}", where(), name, offsets.dump());
    const auto begin = json_integer<std::uint64_t>(offsets[0], what);
    const auto end = json_integer<std::uint64_t>(offsets[1], what);
    if (begin > end || end > data_.size()) {
      fail(ErrorKind::kBadFile, "{}: tensor '{}': data_offsets [{}, {}] lie outside the data section of {} bytes", where(), name, begin, end,
           data_.size());
    }
    if (end - begin != count * element_size) {
      fail(ErrorKind::kBadFile, "{}: tensor '{}': shape {} of {} needs {} bytes, but data_offsets [{}, {}] hold {}", where(), name,
           shape_it->dump(), info.dtype_name, count * element_size, begin, end, end - begin);
    }
    info.bytes = data_.subspan(begin, end - begin);
    return info;
  }

  MappedFile file_;
  std::span<const std::byte> data_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace gemma4

#pragma once
// Writes safetensors files, streaming each tensor's values from a generator so that a
// 10 GB checkpoint never has to exist in memory.

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gemma4/error.hpp"
#include "gemma4/weights/dtype.hpp"

namespace gemma4 {

struct TensorToWrite {
  std::string name;
  std::vector<std::int64_t> shape;
  DType dtype;
  // Fills `out` with elements [first, first + out.size()) in row-major order.
  std::function<void(std::size_t first, std::span<float> out)> values;

  std::size_t count() const {
    std::size_t n = 1;
    for (auto d : shape) n *= static_cast<std::size_t>(d);
    return n;
  }
  std::size_t byte_size() const { return count() * dtype_size(dtype); }
};

inline void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors) {
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  std::size_t offset = 0;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.byte_size()}}};
    offset += t.byte_size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps tensor data 8-byte aligned

  const std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!file) fail("cannot create {}", path.string());
  auto write = [&](const void* data, std::size_t n) {
    if (std::fwrite(data, 1, n, file.get()) != n) fail("{}: write failed (disk full?)", path.string());
  };
  std::uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(text.size()) >> (8 * i));
  write(length, 8);
  write(text.data(), text.size());

  constexpr std::size_t kChunk = 1 << 20;
  std::vector<float> values(kChunk);
  std::vector<std::uint16_t> narrow(kChunk);
  for (const auto& t : tensors) {
    const std::size_t n = t.count();
    for (std::size_t first = 0; first < n; first += kChunk) {
      const std::span<float> chunk(values.data(), std::min(kChunk, n - first));
      t.values(first, chunk);
      if (t.dtype == DType::kF32) {
        write(chunk.data(), chunk.size() * 4);
        continue;
      }
      for (std::size_t i = 0; i < chunk.size(); ++i) {
        narrow[i] = t.dtype == DType::kBF16 ? f32_to_bf16(chunk[i]) : f32_to_f16(chunk[i]);
      }
      write(narrow.data(), chunk.size() * 2);
    }
  }
  if (std::fflush(file.get()) != 0) fail("{}: write failed (disk full?)", path.string());
}

}  // namespace gemma4

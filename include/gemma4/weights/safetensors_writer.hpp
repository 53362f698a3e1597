#pragma once
// Writes safetensors files, streaming each tensor's values from a generator so that a
// 10 GB checkpoint never has to exist in memory.

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gemma4/error.hpp"
#include "gemma4/base/dtype.hpp"

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

// One tensor of a file being written: its bytes follow the previous tensor's.
struct SafetensorsEntry {
  std::string name;
  std::string_view dtype;  // as the header spells it: "BF16", "U8", ...
  std::vector<std::int64_t> shape;
  std::size_t bytes;
};

// A safetensors file written front to back: the constructor writes the header, then
// write() takes the tensors' bytes in the order of `entries`, and finish() checks that
// all of them were written and reached the file.
class SafetensorsWriter {
 public:
  // The header is padded with spaces so that the data section starts at a multiple of
  // `alignment` bytes from the start of the file (8 keeps every element aligned).
  SafetensorsWriter(const std::filesystem::path& path, const std::map<std::string, std::string>& metadata,
                    const std::vector<SafetensorsEntry>& entries, std::size_t alignment = 8)
      : path_(path), file_(std::fopen(path.c_str(), "wb"), &std::fclose) {
    if (!file_) fail(ErrorKind::kIo, "cannot create {}", path.string());
    // The stream's buffer is one 2 MiB block, so every write is whole blocks at 2 MiB
    // offsets: memory allowing, Linux then caches the file in 2 MiB folios, which a
    // mapping reads through huge pages. Written 8 KiB at a time, a file was cached in no
    // such folio and its mapping read 23% slower on one thread (12.1 against 15.7 GB/s).
    if (std::setvbuf(file_.get(), buffer_.get(), _IOFBF, kBlock) != 0) fail(ErrorKind::kIo, "{}: cannot set its write buffer", path.string());
    nlohmann::ordered_json header;
    header["__metadata__"] = metadata;
    for (const auto& e : entries) {
      header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {expected_, expected_ + e.bytes}}};
      expected_ += e.bytes;
    }
    std::string text = header.dump();
    text.append((alignment - (8 + text.size()) % alignment) % alignment, ' ');
    std::uint8_t length[8];
    for (int i = 0; i < 8; ++i) length[i] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(text.size()) >> (8 * i));
    put(length, 8);
    put(text.data(), text.size());
  }

  void write(const void* data, std::size_t n) {
    put(data, n);
    written_ += n;
  }

  // `durable`: also waits until the bytes are on the disk, so that a file renamed into
  // place afterwards is never seen empty after a crash.
  void finish(bool durable = false) {
    if (written_ != expected_) fail(ErrorKind::kInvalidArgument, "{}: {} bytes of tensor data written, the header announced {}", path_.string(), written_, expected_);
    if (std::fflush(file_.get()) != 0) fail(ErrorKind::kIo, "{}: write failed (disk full?)", path_.string());
    if (durable && ::fsync(::fileno(file_.get())) != 0) fail(ErrorKind::kIo, "{}: write failed (fsync)", path_.string());
  }

  // After finish(true): drops the file from the page cache, so that its next reader reads
  // it from the disk. Which folios writing leaves cached depends on the free memory: a
  // packed E2B written with 14 GB of cache in use was 70% in 2 MiB folios, and E4B int4
  // then decoded at 0.91x the speed of the same weights in memory. Read back, a file
  // mapping gets 2 MiB folios where memory allows (98-100% here), as on a device the
  // model was copied to. A hint: a cache kept is only slower.
  void leave_page_cache() { ::posix_fadvise(::fileno(file_.get()), 0, 0, POSIX_FADV_DONTNEED); }

 private:
  void put(const void* data, std::size_t n) {
    if (std::fwrite(data, 1, n, file_.get()) != n) fail(ErrorKind::kIo, "{}: write failed (disk full?)", path_.string());
  }

  static constexpr std::size_t kBlock = std::size_t{2} << 20;
  std::filesystem::path path_;
  std::unique_ptr<char[]> buffer_ = std::make_unique_for_overwrite<char[]>(kBlock);  // outlives file_
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file_;
  std::size_t expected_ = 0, written_ = 0;
};

// A tensor given as its bytes, in a dtype that is not a weight's (an assistant's int64
// token ordering).
struct RawTensor {
  SafetensorsEntry entry;
  std::vector<std::byte> bytes;
};

// Writes `tensors`, then `raw` after them.
inline void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors, const std::vector<RawTensor>& raw = {}) {
  std::vector<SafetensorsEntry> entries;
  for (const auto& t : tensors) entries.push_back({t.name, dtype_name(t.dtype), t.shape, t.byte_size()});
  for (const auto& r : raw) entries.push_back(r.entry);
  SafetensorsWriter file(path, {{"format", "pt"}}, entries);
  constexpr std::size_t kChunk = 1 << 20;
  std::vector<float> values(kChunk);
  std::vector<std::uint16_t> narrow(kChunk);
  for (const auto& t : tensors) {
    const std::size_t n = t.count();
    for (std::size_t first = 0; first < n; first += kChunk) {
      const std::span<float> chunk(values.data(), std::min(kChunk, n - first));
      t.values(first, chunk);
      if (t.dtype == DType::kF32) {
        file.write(chunk.data(), chunk.size() * 4);
        continue;
      }
      for (std::size_t i = 0; i < chunk.size(); ++i) {
        narrow[i] = t.dtype == DType::kBF16 ? f32_to_bf16(chunk[i]) : f32_to_f16(chunk[i]);
      }
      file.write(narrow.data(), chunk.size() * 2);
    }
  }
  for (const auto& r : raw) file.write(r.bytes.data(), r.bytes.size());
  file.finish();
}

}  // namespace gemma4

// libFuzzer target: any byte string as a safetensors file must parse or raise
// gemma4::Error, never crash or read outside the mapping; so must a packed model's
// __metadata__, and reading the scales and rows of its packed tensors.

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "gemma4/weights/packed_model.hpp"
#include "gemma4/weights/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const int fd = ::memfd_create("gemma4-fuzz", 0);
  if (fd < 0 || ::ftruncate(fd, 0) != 0) return 0;
  if (size > 0 && ::pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) return 0;
  try {
    const gemma4::SafetensorsFile file("/proc/self/fd/" + std::to_string(fd));
    volatile std::byte sink{};
    for (const auto& t : file.tensors()) {
      for (std::byte b : t.bytes) sink = b;  // every byte handed out must be inside the mapping
    }
    (void)sink;
    if (const auto packed = gemma4::packed_model_info(file.metadata(), "fuzz")) {
      // Each U8 tensor of whole row blocks and on a line, as a [rows, 32] matrix.
      const std::size_t block = gemma4::QuantizedMatrix::storage_bytes(packed->format, gemma4::kRowBlock, 32);
      for (const auto& t : file.tensors()) {
        if (t.dtype_name != "U8" || t.bytes.empty() || t.bytes.size() % block != 0 || reinterpret_cast<std::uintptr_t>(t.bytes.data()) % 64 != 0) continue;
        const gemma4::QuantizedMatrix m(packed->format, t.bytes.size() / block * gemma4::kRowBlock, 32, t.bytes);
        float row[32];
        if (!m.first_invalid_scale()) m.dequantize_rows(m.rows() - 1, 1, row);
      }
    }
  } catch (const gemma4::Error&) {
  }
  return 0;
}

// libFuzzer target: any byte string as a safetensors file must parse or raise
// gemma4::Error, never crash or read outside the mapping.

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>

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
  } catch (const gemma4::Error&) {
  }
  return 0;
}

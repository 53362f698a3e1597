#pragma once
// Arrays aligned for streaming: 64-byte aligned, and large ones on huge pages.

#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <memory>

#include "gemma4/error.hpp"

namespace gemma4 {

namespace detail {
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
// 64-byte aligned storage, so every tile is one aligned cache line. Large arrays are
// 2 MiB aligned and asked to live on huge pages: decode streams every weight once per
// token, and with 4 KiB pages it would also walk page tables for every 4 KiB.
template <typename T>
std::unique_ptr<T[], FreeDeleter> aligned_array(std::size_t count) {
  constexpr std::size_t kHugePage = std::size_t{2} << 20;
  const std::size_t alignment = count * sizeof(T) >= kHugePage ? kHugePage : 64;
  const std::size_t bytes = std::max<std::size_t>(1, (count * sizeof(T) + alignment - 1) / alignment) * alignment;
  void* p = std::aligned_alloc(alignment, bytes);
  if (p == nullptr) fail(ErrorKind::kIo, "out of memory allocating {} bytes for quantized weights", bytes);
  if (alignment == kHugePage) ::madvise(p, bytes, MADV_HUGEPAGE);  // a hint: no huge pages is fine
  return std::unique_ptr<T[], FreeDeleter>(static_cast<T*>(p));
}
}  // namespace detail

}  // namespace gemma4

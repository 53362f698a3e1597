#pragma once
// A read-only memory mapping of a whole file (POSIX). Checkpoint tensors are used in
// place from it, so the page cache, not the heap, holds the weights.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <span>
#include <utility>

#include "gemma4/error.hpp"

namespace gemma4 {

class MappedFile {
 public:
  explicit MappedFile(const std::filesystem::path& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(ErrorKind::kMissingFile, "cannot open {}: {}", path.string(), std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      fail(ErrorKind::kIo, "cannot stat {}: {}", path.string(), std::strerror(err));
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        fail(ErrorKind::kIo, "cannot map {}: {}", path.string(), std::strerror(err));
      }
      data_ = static_cast<const std::byte*>(p);
    }
    ::close(fd);
  }

  MappedFile(MappedFile&& other) noexcept
      : path_(std::move(other.path_)), data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  MappedFile& operator=(MappedFile&& other) noexcept {
    std::swap(path_, other.path_);
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    return *this;
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
    if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
  }

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

// Page-granular hints for a mapped range; harmless no-ops where unsupported.
inline void advise(std::span<const std::byte> range, int advice) {
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<std::uintptr_t>(range.data()) & ~(page - 1);
  const auto end = reinterpret_cast<std::uintptr_t>(range.data() + range.size());
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, advice);
}

// Faults every page of `range` into memory now, so the first token does not pay for it.
inline void prefault(std::span<const std::byte> range) {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  volatile std::byte sink{};
  for (std::size_t i = 0; i < range.size(); i += page) sink = range[i];
  if (!range.empty()) sink = range.back();
  (void)sink;
}

}  // namespace gemma4

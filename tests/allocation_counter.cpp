// Replaces the global operator new of the test binary to count allocations. In its own
// translation unit so the compiler never pairs these with inlined callers.

#include <atomic>
#include <cstdlib>
#include <new>

namespace gemma4::test {
std::atomic<long> g_allocations{0};
}

void* operator new(std::size_t size) {
  ++gemma4::test::g_allocations;
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

// libFuzzer target: any byte string as a prompt cache file (model/prompt_cache.hpp) is
// restored into a tiny-e2b session or refused with gemma4::Error, never a crash or a read
// outside the mapping; a session that took a file runs its next token. The corpus holds
// a valid file for this session's model (the synthetic tiny-e2b of seed 1, bf16, with a
// bf16 KV cache), so that mutations reach past the identity checks.

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "gemma4/model/prompt_cache.hpp"
#include "gemma4/weights/synthetic_checkpoint.hpp"
#include "gemma4/tiny.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace gemma4;
  static const std::filesystem::path dir = [] {
    const auto d = std::filesystem::temp_directory_path() / fmt::format("gemma4-prompt-cache-fuzz-{}", ::getpid());
    write_synthetic_checkpoint(TinyE2B::config, d, {.seed = 1});
    return d;
  }();
  static const Weights<TinyE2B> weights(dir);
  static const bool removed = std::filesystem::remove_all(dir) > 0;  // the mapping stays readable
  (void)removed;
  static Session<TinyE2B> session(weights, {.max_context = 64});
  static const int fd = ::memfd_create("gemma4-fuzz", 0);
  if (fd < 0 || ::ftruncate(fd, 0) != 0) return 0;
  if (size > 0 && ::pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) return 0;
  try {
    restore_prompt_cache(session, "/proc/self/fd/" + std::to_string(fd));
    if (session.position() < session.max_context()) {
      std::vector<float> logits(TinyE2B::config.vocab_size);
      const int token = 2;
      session.forward(std::span(&token, 1), Logits::kLast, logits);
    }
  } catch (const Error&) {
  }
  return 0;
}

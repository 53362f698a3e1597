#pragma once
// Helpers shared by the tests: scratch directories, raw file writing, comparing results.

#include <atomic>
#include <bit>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <unistd.h>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "gemma4/error.hpp"
#include "source_dir.hpp"
#include "gemma4/tokenizer/tokenizer.hpp"

namespace gemma4::test {

inline const std::filesystem::path kSourceDir = checkout::kSourceDir;
inline const std::filesystem::path kTestData = kSourceDir / "tests/data";

// The trained toy pair the first command runs (examples/data).
inline const std::filesystem::path kToyTarget = kSourceDir / "examples/data/toy-e2b";
inline const std::filesystem::path kToyAssistant = kSourceDir / "examples/data/toy-e2b-assistant";

// A fresh directory under the system temp dir, removed when the test ends.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = std::filesystem::temp_directory_path() /
            ("gemma4-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// examples/data/demo-tokenizer.json: the real Gemma vocabulary cut to the tiny models' size,
// with Gemma 4's control tokens.
inline const Tokenizer& demo_tokenizer() {
  static const Tokenizer tokenizer = Tokenizer::from_file(kSourceDir / "examples/data/demo-tokenizer.json");
  return tokenizer;
}

inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// `path` with the first occurrence of `from` replaced by `to`, of the same length.
inline void patch_file(const std::filesystem::path& path, const std::string& from, const std::string& to) {
  std::string bytes = read_file(path);
  const std::size_t at = bytes.find(from);
  if (from.size() != to.size() || at == std::string::npos) {
    throw std::invalid_argument(fmt::format("patch_file: '{}' is not in {}, or '{}' is not of its length", from, path.string(), to));
  }
  bytes.replace(at, from.size(), to);
  write_file(path, bytes);
}

// A safetensors file from a header text and a data section, with a given header length field.
inline std::string safetensors_bytes(const std::string& header, const std::string& data, std::uint64_t length_field) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(length_field >> (8 * i));
  return bytes + header + data;
}

inline std::string safetensors_bytes(const std::string& header, const std::string& data) {
  return safetensors_bytes(header, data, header.size());
}

// Where two float arrays first differ in their bits, or "" if nowhere: a short failure
// message (Catch prints every element of vectors compared with ==, which for a model's
// logits takes longer than the test).
inline std::string first_difference(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size()) return fmt::format("sizes {} and {}", a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i])) {
      return fmt::format("element {}: {} and {}", i, a[i], b[i]);
    }
  }
  return "";
}

// n values from N(0, stddev^2).
inline std::vector<float> normal_values(std::size_t n, unsigned seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// <bos> and then count - 1 ids drawn uniformly from the vocabulary.
inline std::vector<int> random_tokens(int count, int vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> id(0, vocab - 1);
  std::vector<int> tokens{2};  // <bos>
  while (static_cast<int>(tokens.size()) < count) tokens.push_back(id(rng));
  return tokens;
}

}  // namespace gemma4::test

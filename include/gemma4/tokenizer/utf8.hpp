#pragma once
// UTF-8 helpers for the tokenizer: validation with an error that says where the input
// breaks, and splitting valid text into characters.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "gemma4/error.hpp"

namespace gemma4::utf8 {

// Length of the well-formed UTF-8 sequence starting at s[i], or 0 if there is none
// (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF).
inline std::size_t sequence_length(std::string_view s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<std::uint8_t>(s[i + k]); };
  const auto continuation = [&](std::size_t k, std::uint8_t lo = 0x80, std::uint8_t hi = 0xBF) {
    return i + k < s.size() && byte(k) >= lo && byte(k) <= hi;
  };
  const std::uint8_t b0 = byte(0);
  if (b0 < 0x80) return 1;
  if (b0 >= 0xC2 && b0 <= 0xDF) return continuation(1) ? 2 : 0;
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    const std::uint8_t lo = b0 == 0xE0 ? 0xA0 : 0x80;
    const std::uint8_t hi = b0 == 0xED ? 0x9F : 0xBF;
    return continuation(1, lo, hi) && continuation(2) ? 3 : 0;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    const std::uint8_t lo = b0 == 0xF0 ? 0x90 : 0x80;
    const std::uint8_t hi = b0 == 0xF4 ? 0x8F : 0xBF;
    return continuation(1, lo, hi) && continuation(2) && continuation(3) ? 4 : 0;
  }
  return 0;
}

// Byte offset of the first ill-formed sequence, or s.size() if s is valid UTF-8.
inline std::size_t first_invalid(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const std::size_t n = sequence_length(s, i);
    if (n == 0) return i;
    i += n;
  }
  return i;
}

inline bool is_valid(std::string_view s) { return first_invalid(s) == s.size(); }

// Throws an Error naming `what` and the byte offset where s stops being UTF-8.
inline void require_valid(std::string_view s, std::string_view what) {
  const std::size_t bad = first_invalid(s);
  if (bad != s.size()) {
    fail(ErrorKind::kInvalidText, "{} is not valid UTF-8: byte {} (0x{:02X}) does not start a well-formed character", what, bad,
         static_cast<unsigned>(static_cast<std::uint8_t>(s[bad])));
  }
}

// Code point of the valid sequence of length n at s[i].
inline char32_t decode(std::string_view s, std::size_t i, std::size_t n) {
  const auto b = [&](std::size_t k) { return static_cast<char32_t>(static_cast<std::uint8_t>(s[i + k])); };
  switch (n) {
    case 1: return b(0);
    case 2: return (b(0) & 0x1F) << 6 | (b(1) & 0x3F);
    case 3: return (b(0) & 0x0F) << 12 | (b(1) & 0x3F) << 6 | (b(2) & 0x3F);
    default: return (b(0) & 0x07) << 18 | (b(1) & 0x3F) << 12 | (b(2) & 0x3F) << 6 | (b(3) & 0x3F);
  }
}

}  // namespace gemma4::utf8

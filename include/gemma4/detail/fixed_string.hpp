#pragma once
// A string literal usable as a template argument, so a config field or a tensor
// slot carries its Hugging Face name in its type (Boost.PFR 1.81 has no field names).

#include <algorithm>
#include <cstddef>
#include <string_view>

namespace gemma4::detail {

template <std::size_t N>
struct FixedString {
  char chars[N] = {};

  constexpr FixedString(const char (&literal)[N]) { std::copy_n(literal, N, chars); }
  constexpr std::string_view view() const { return {chars, N - 1}; }
};

}  // namespace gemma4::detail

#pragma once
// Every compiled variant, for front ends that accept whichever model a directory holds.
// An embedded user includes just the one variant header it needs (e2b.hpp or e4b.hpp).

#include <array>
#include <string_view>

#include <fmt/ranges.h>

#include "gemma4/e2b.hpp"
#include "gemma4/e4b.hpp"
#include "gemma4/tiny.hpp"

namespace gemma4 {

template <Variant... Vs>
struct VariantSet {
  static constexpr std::array<std::string_view, sizeof...(Vs)> names = {Vs::name...};

  // Calls f.template operator()<V>() for the variant matching config.json.
  template <typename F>
  static void with_matching(const nlohmann::json& config_json, F&& f) {
    with_matching_variant<Vs...>(config_json, std::forward<F>(f));
  }

  // The config of the variant called `name` ("e2b", "tiny-e4b", ...).
  static const ModelConfig& config(std::string_view name) {
    const ModelConfig* found = nullptr;
    ((found = (name == Vs::name ? &Vs::config : found)), ...);
    if (found == nullptr) fail(ErrorKind::kInvalidArgument, "unknown variant '{}'; compiled variants: {}", name, fmt::join(names, ", "));
    return *found;
  }
};

using CompiledVariants = VariantSet<E2B, E4B, TinyE2B, TinyE4B>;

}  // namespace gemma4

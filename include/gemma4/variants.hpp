#pragma once
// Every compiled variant, for front ends that accept whichever model a directory holds.
// An embedded user includes just the one variant header it needs (e2b.hpp or e4b.hpp).

#include <array>
#include <string_view>

#include <fmt/ranges.h>

#include "gemma4/config/assistant.hpp"
#include "gemma4/e2b.hpp"
#include "gemma4/e4b.hpp"
#include "gemma4/tiny.hpp"
#include "gemma4/weights/assistant_weights.hpp"

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

template <AssistantVariant... As>
struct AssistantSet {
  static constexpr std::array<std::string_view, sizeof...(As)> names = {As::name...};

  // Calls f.template operator()<A>() for the assistant that config.json (an assistant's)
  // describes; if none, the error lists for each assistant the fields that differ.
  template <typename F>
  static void with_any_matching(const nlohmann::json& config_json, F&& f) {
    std::string differences;
    const bool found = ([&] {
      const auto mismatches = compare_assistant_config<As>(config_json);
      if (mismatches.empty()) {
        f.template operator()<As>();
        return true;
      }
      differences += fmt::format("  {}:\n{}", As::name, format_mismatches(mismatches));
      return false;
    }() || ...);
    if (!found) fail(ErrorKind::kConfigMismatch, "config.json describes none of the compiled assistants; fields that differ:\n{}", differences);
  }

  // The same for an assistant of target V: one of another target is an error naming both.
  template <Variant V, typename F>
  static void with_matching(const nlohmann::json& config_json, F&& f) {
    with_any_matching(config_json, [&]<AssistantVariant A>() {
      if constexpr (std::is_same_v<typename A::Target, V>) {
        f.template operator()<A>();
      } else {
        fail(ErrorKind::kConfigMismatch, "this is the {} assistant, which drafts for {}; the model is {}", A::name, A::Target::name, V::name);
      }
    });
  }
};

using CompiledAssistants = AssistantSet<E2BAssistant, E4BAssistant, TinyE2BAssistant, TinyE4BAssistant>;

}  // namespace gemma4

// libFuzzer target: any text as config.json must select a variant or raise
// gemma4::Error, never crash, hang or allocate without bound.

#include <cstdint>
#include <string_view>

#include "gemma4/variants.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto json = nlohmann::json::parse(std::string_view(reinterpret_cast<const char*>(data), size), nullptr,
                                          /*allow_exceptions=*/false);
  if (json.is_discarded()) return 0;
  try {
    gemma4::CompiledVariants::with_matching(json, []<typename V>() {});
  } catch (const gemma4::Error&) {
  }
  return 0;
}

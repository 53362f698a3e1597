#include <gemma4/e2b.hpp>

#include <fmt/format.h>

static_assert(gemma4::kv_donor(gemma4::E2B::config, 20) == 13);

int main() {
  fmt::print("{}: {} layers, {} own a KV cache\n", gemma4::E2B::name, gemma4::E2B::config.num_hidden_layers.value,
             gemma4::num_kv_caches(gemma4::E2B::config));
}

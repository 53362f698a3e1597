// The README's embedding example: E2B's forward pass, specialised at compile time.
//   embed_e2b MODEL_DIR   prints the id of the most likely token after a short prompt
#include <gemma4/e2b.hpp>

#include <algorithm>
#include <vector>

int main(int argc, char** argv) try {
  const gemma4::Weights<gemma4::E2B> weights(argc > 1 ? argv[1] : "gemma-4-E2B-it");  // throws gemma4::Error
  gemma4::Session<gemma4::E2B> session(weights, {.max_context = 4096});
  const std::vector<int> prompt = {2, 105, 2364, 107};  // token ids
  std::vector<float> logits(gemma4::E2B::config.vocab_size);
  session.forward(prompt, gemma4::Logits::kLast, logits);  // prefill; then one id per step
  fmt::print("next token: {}\n", std::max_element(logits.begin(), logits.end()) - logits.begin());
} catch (const gemma4::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}

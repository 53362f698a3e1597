// The README's embedding example: chat with Gemma 4 E2B, its forward pass specialised
// at compile time.   embed_e2b MODEL_DIR ["question"]
#include <gemma4/e2b.hpp>

int main(int argc, char** argv) try {
  const std::filesystem::path dir = argc > 1 ? argv[1] : "gemma-4-E2B-it";
  // Weights (validated, memory-mapped, int8 matrices), tokenizer and generation defaults.
  const gemma4::Model<gemma4::E2B> model(dir, {.format = gemma4::WeightFormat::kInt8});
  gemma4::Session<gemma4::E2B> session(model.weights, {.max_context = 4096});
  gemma4::Conversation<gemma4::E2B> chat(session, model.tokenizer, model.generation, {});
  chat.ask(argc > 2 ? argv[2] : "Why is the sky blue?", [](std::string_view text, bool is_thought) {
    if (!is_thought) fmt::print("{}", text);  // streamed as it is generated
  });
} catch (const gemma4::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}

// The README's embedding example: chat with Gemma 4 E2B, its forward pass specialised
// at compile time.   embed_e2b MODEL_DIR ["question"]
#include <gemma4/e2b.hpp>

int main(int argc, char** argv) try {
  const std::filesystem::path dir = argc > 1 ? argv[1] : "gemma-4-E2B-it";
  const gemma4::Weights<gemma4::E2B> weights(dir);  // validated, memory-mapped; throws gemma4::Error
  const gemma4::Tokenizer tokenizer = gemma4::load_tokenizer(dir);
  gemma4::Session<gemma4::E2B> session(weights, {.max_context = 4096});
  gemma4::Conversation<gemma4::E2B> chat(session, tokenizer, gemma4::read_generation_config(dir), {});
  chat.ask(argc > 2 ? argv[2] : "Why is the sky blue?", [](std::string_view text, bool is_thought) {
    if (!is_thought) fmt::print("{}", text);  // streamed as it is generated
  });
} catch (const gemma4::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}

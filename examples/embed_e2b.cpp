// The README's embedding example: chat with Gemma 4 E2B, its forward pass specialised
// at compile time.   embed_e2b MODEL_DIR ["question"]
// MODEL_DIR: what `gemma4 convert --model gemma-4-E2B-it --weights int4 e2b-it-int4`
// wrote on a workstation, copied to the device (2.8 GB).
#include <gemma4/e2b.hpp>

int main(int argc, char** argv) try {
  const std::filesystem::path dir = argc > 1 ? argv[1] : "e2b-it-int4";
  // Weights (validated, memory-mapped, used in place), tokenizer and generation defaults.
  // A Hugging Face checkpoint loads too: add {.format = gemma4::WeightFormat::kInt8} to
  // convert it at load time.
  const gemma4::Model<gemma4::E2B> model(dir);
  gemma4::Session<gemma4::E2B> session(model.weights, {.max_context = 4096});
  gemma4::Conversation<gemma4::E2B> chat(session, model, {});  // the directory's chat template, tokenizer, defaults
  chat.ask(argc > 2 ? argv[2] : "Why is the sky blue?", [](std::string_view text, bool is_thought) {
    if (!is_thought) fmt::print("{}", text);  // streamed as it is generated
  });
} catch (const gemma4::Error& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}

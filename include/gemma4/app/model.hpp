#pragma once
// Everything an application needs from one model directory, loaded in one call:
// the weights, the tokenizer, the generation defaults and the chat template's revision,
// checked against each other.
//
//   const gemma4::Model<gemma4::E2B> model(dir, {.format = gemma4::WeightFormat::kInt8});
//   gemma4::Session<gemma4::E2B> session(model.weights);
//   gemma4::Conversation<gemma4::E2B> chat(session, model, {});
//
// Errors: gemma4::Error from each part (see Weights, Tokenizer, read_generation_config),
// and for a tokenizer that can produce an id the model has no embedding for.

#include <filesystem>

#include "gemma4/chat/chat_template.hpp"
#include "gemma4/error.hpp"
#include "gemma4/sampling/sampling_options.hpp"
#include "gemma4/tokenizer/tokenizer.hpp"
#include "gemma4/weights/load.hpp"

namespace gemma4 {

// Every id `tokenizer` can produce, its added tokens included, must have a row in a
// vocabulary of `vocab_size`: otherwise a prompt holding such a token's text would fail
// in the middle of a run instead of at load.
inline void check_vocabulary(const Tokenizer& tokenizer, int vocab_size, const std::filesystem::path& tokenizer_file) {
  if (tokenizer.piece_count() > vocab_size) {
    fail(ErrorKind::kConfigMismatch, "{}: model.vocab has {} pieces, more than the model's vocabulary of {}", tokenizer_file.string(), tokenizer.piece_count(),
         vocab_size);
  }
  for (int id = vocab_size; id < tokenizer.vocab_size(); ++id) {
    if (const AddedToken* t = tokenizer.added_token(id)) {
      fail(ErrorKind::kConfigMismatch, "{}: added token {} \"{}\" lies outside the model's vocabulary of {} ids: this tokenizer.json is not the model's",
           tokenizer_file.string(), id, t->content, vocab_size);
    }
  }
}

template <Variant V>
struct Model {
  Weights<V> weights;
  Tokenizer tokenizer;
  GenerationConfig generation;  // generation_config.json's sampling defaults and stop ids
  ChatTemplate chat_template;   // which revision of the chat template the directory carries (warning set if unknown)

  explicit Model(const std::filesystem::path& dir, const LoadOptions& options = {})
      : weights(dir, options), tokenizer(load_tokenizer(dir)), generation(read_generation_config(dir)), chat_template(chat_template_of(dir)) {
    check_vocabulary(tokenizer, V::config.vocab_size, dir / "tokenizer.json");
  }
};

}  // namespace gemma4

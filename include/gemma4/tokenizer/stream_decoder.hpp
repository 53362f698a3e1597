#pragma once
// Turns ids into text one at a time, for printing while generating. The concatenated
// output equals Tokenizer::decode of all the ids: a run of byte-fallback pieces (one
// character split over several ids) is held back until the run ends, and only then
// becomes text, exactly as the batch decoder groups it.
//
//   gemma4::StreamDecoder stream(tokenizer, {.skip_special = true});
//   for (int id : generated) std::fputs(stream.push(id).c_str(), stdout);
//   std::fputs(stream.finish().c_str(), stdout);
//
// Errors: push() throws gemma4::Error for an id outside the vocabulary. One decoder per
// stream; not for concurrent use (the Tokenizer it reads may be shared).

#include <string>

#include "gemma4/tokenizer/tokenizer.hpp"

namespace gemma4 {

class StreamDecoder {
 public:
  // `tokenizer` must outlive the decoder.
  explicit StreamDecoder(const Tokenizer& tokenizer, DecodeOptions options = {}) : tokenizer_(tokenizer), options_(options) {}
  explicit StreamDecoder(const Tokenizer&&, DecodeOptions = {}) = delete;  // would dangle

  // The text that `id` completes (often empty while a byte run is open).
  std::string push(int id) {
    std::string text;
    tokenizer_.append_decoded(id, options_, text, pending_bytes_);
    return text;
  }

  // Ends the stream: the text of a byte run still open.
  std::string finish() {
    std::string text;
    Tokenizer::flush_bytes(text, pending_bytes_);
    return text;
  }

 private:
  const Tokenizer& tokenizer_;
  DecodeOptions options_;
  std::string pending_bytes_;
};

}  // namespace gemma4

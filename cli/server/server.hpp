#pragma once
// `gemma4 serve`: the OpenAI API over HTTP (cpp-httplib), on the library's public API.
// One engine thread owns the model and --parallel sessions (slots); each pass decodes
// every active slot at once (model/batch_generator.hpp). HTTP threads render prompts,
// queue them and turn the tokens that come back into responses and stream chunks.

#include <cstddef>
#include <optional>
#include <string>

#include "gemma4/ops/kv_cache.hpp"
#include "gemma4/weights/load_options.hpp"

namespace gemma4::server {

struct ServeOptions {
  std::string model{};               // model directory
  std::string alias{};               // the model's name in the API; empty: the directory's name
  std::string host = "127.0.0.1";    // loopback unless asked
  int port = 8080;                   // 0: any free port (the address line says which)
  int parallel = 4;                  // slots: sequences decoded at once, each with its own KV cache
  int max_queue = 16;                // requests waiting for a slot; more get 503
  int max_context = 4096;            // per slot
  int prefill_rows = 32;             // prompt tokens a pass runs beside the decoding slots; 0: a
                                     // new prompt runs at once while the other slots wait
  int threads = 0;                   // 0: all usable CPUs
  std::size_t max_body_bytes = std::size_t{4} << 20;
  std::string api_key{};             // non-empty: every /v1 request needs "Authorization: Bearer KEY"
  std::optional<WeightFormat> format{};  // of a checkpoint's linear layers; unset: int8 (a packed model as packed)
  std::optional<WeightFormat> head_format{};  // of an int4 checkpoint's LM head (LoadOptions::head_format)
  KvFormat kv_format = kDefaultKvFormat;
  std::string prompt_cache{};        // a prompt cache file (model/prompt_cache.hpp) every slot starts from
  std::string draft{};               // an assistant directory: one slot, decoded speculatively
  int draft_max = 3;                 // tokens drafted per target pass
};

// Serves until SIGINT or SIGTERM; returns the exit status.
int serve(const ServeOptions& options);

}  // namespace gemma4::server

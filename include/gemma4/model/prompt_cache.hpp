#pragma once
// Prompt caches: a session's tokens and KV caches written to a file and read back into a
// fresh session, so that a long fixed prefix (a system prompt, tool declarations) is
// prefilled once across launches. Restoring maps the file and copies the stored rows as
// they are: no prefill, and the continuation gives the bits it would have without the
// round trip.
//
// The file, little-endian: "GEMMA4PC", a u32 n, n bytes of JSON header, the tokens as
// i32, then for each cache slot (model/pass_state.hpp) its stored positions
// [first, tokens) in order, each as KvCache::copy_out() writes it. The header:
//   {"layout": 1, "variant": "e2b", "weights": "int4", "checkpoint": "<fingerprint>",
//    "kv_format": "bf16", "tokens": N, "caches": [{"first": f, "position_bytes": b}, ...]}
// A full layer's cache holds every position (first 0); a sliding layer's ring its newest.
// The file is written under a temporary name and renamed, so a reader never sees half.

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <unistd.h>

#include "gemma4/base/json.hpp"
#include "gemma4/base/mapped_file.hpp"
#include "gemma4/error.hpp"
#include "gemma4/model/session.hpp"

namespace gemma4 {

inline constexpr std::string_view kPromptCacheMagic = "GEMMA4PC";
inline constexpr int kPromptCacheLayout = 1;

template <Variant V>
struct PromptCacheFile {
  static_assert(std::endian::native == std::endian::little, "gemma4: prompt cache files are little-endian, as written from memory");
  static constexpr std::size_t kPreamble = kPromptCacheMagic.size() + sizeof(std::uint32_t);

  // What a file must match to be restored into `session`: the model and the KV format.
  // An int4 LM head's table is what a packed model's lookups read, so it changes the cache.
  static nlohmann::json identity(const Session<V>& session) {
    const LoadReport& report = session.weights().report();
    return {{"variant", std::string(V::name)},
            {"weights", fmt::format("{}{}", weight_format_name(report.format), report.int4_head ? " with an int4 LM head" : "")},
            {"checkpoint", session.weights().fingerprint()},
            {"kv_format", std::string(kv_format_name(session.options().kv_format))}};
  }

  static void save(const Session<V>& session, const std::filesystem::path& path) {
    const SequenceState<V>& sequence = session.sequence_;
    const int tokens = sequence.position();
    nlohmann::json header = identity(session);
    header["layout"] = kPromptCacheLayout;
    header["tokens"] = tokens;
    header["caches"] = nlohmann::json::array();
    for (const KvCache& cache : sequence.caches) {
      header["caches"].push_back({{"first", std::max(0, tokens - cache.capacity())}, {"position_bytes", cache.position_bytes()}});
    }
    const std::string text = header.dump();
    const std::filesystem::path temporary = path.string() + fmt::format(".tmp{}", ::getpid());
    {
      std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
      const auto write = [&](const void* data, std::size_t bytes) { out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes)); };
      const auto size = static_cast<std::uint32_t>(text.size());
      write(kPromptCacheMagic.data(), kPromptCacheMagic.size());
      write(&size, sizeof size);
      write(text.data(), text.size());
      const std::vector<std::int32_t> ids(sequence.tokens.begin(), sequence.tokens.end());
      write(ids.data(), ids.size() * sizeof(std::int32_t));
      std::vector<std::byte> row;
      for (const KvCache& cache : sequence.caches) {
        row.resize(cache.position_bytes());
        for (int p = std::max(0, tokens - cache.capacity()); p < tokens; ++p) {
          cache.copy_out(p, row.data());
          write(row.data(), row.size());
        }
      }
      out.close();
      if (!out) {
        std::error_code ignored;
        std::filesystem::remove(temporary, ignored);
        fail(ErrorKind::kIo, "cannot write the prompt cache {}", temporary.string());
      }
    }
    std::error_code error;
    std::filesystem::rename(temporary, path, error);
    if (error) {
      std::error_code ignored;
      std::filesystem::remove(temporary, ignored);
      fail(ErrorKind::kIo, "cannot write the prompt cache {}: {}", path.string(), error.message());
    }
  }

  static int restore(Session<V>& session, const std::filesystem::path& path) {
    const std::string where = path.string();
    const MappedFile file(path);
    const std::span<const std::byte> bytes = file.bytes();
    if (bytes.size() < kPreamble || std::memcmp(bytes.data(), kPromptCacheMagic.data(), kPromptCacheMagic.size()) != 0) {
      fail(ErrorKind::kBadFile, "{}: not a gemma4 prompt cache (it does not start with {})", where, kPromptCacheMagic);
    }
    std::uint32_t header_size = 0;
    std::memcpy(&header_size, bytes.data() + kPromptCacheMagic.size(), sizeof header_size);
    if (header_size > bytes.size() - kPreamble) fail(ErrorKind::kBadFile, "{}: truncated inside its {}-byte header", where, header_size);
    nlohmann::json header;
    try {
      header = nlohmann::json::parse(std::string_view(reinterpret_cast<const char*>(bytes.data() + kPreamble), header_size));
    } catch (const nlohmann::json::exception& e) {
      fail(ErrorKind::kBadFile, "{}: its header is not valid JSON: {}", where, e.what());
    }
    const auto field = [&](const nlohmann::json& object, const char* name) -> const nlohmann::json& {
      if (!object.is_object() || !object.contains(name)) fail(ErrorKind::kBadFile, "{}: its header has no \"{}\"", where, name);
      return object[name];
    };
    const int layout = json_integer<int>(field(header, "layout"), where + ": layout");
    if (layout != kPromptCacheLayout) {
      fail(ErrorKind::kConfigMismatch, "{}: a prompt cache of layout {}; this library reads layout {}", where, layout, kPromptCacheLayout);
    }
    std::vector<std::string> mismatches;
    const nlohmann::json wanted = identity(session);
    for (const auto& item : wanted.items()) {
      const nlohmann::json& stored = field(header, item.key().c_str());
      if (stored != item.value()) mismatches.push_back(fmt::format("{} {} (this session: {})", item.key(), stored.dump(), item.value().dump()));
    }
    if (!mismatches.empty()) {
      fail(ErrorKind::kConfigMismatch, "{}: a prompt cache of another model or KV format: {}", where, fmt::join(mismatches, ", "));
    }

    const int tokens = json_integer<int>(field(header, "tokens"), where + ": tokens");
    if (tokens < 0) fail(ErrorKind::kBadFile, "{}: {} tokens", where, tokens);
    if (tokens > session.max_context()) {
      fail(ErrorKind::kContextFull, "{}: holds {} tokens, more than the session's context of {}", where, tokens, session.max_context());
    }
    SequenceState<V>& sequence = session.sequence_;
    const nlohmann::json& caches = field(header, "caches");
    if (!caches.is_array() || caches.size() != sequence.caches.size()) {
      fail(ErrorKind::kBadFile, "{}: \"caches\" must list {} caches", where, sequence.caches.size());
    }
    // What each cache holds, and where in the file: checked whole before anything is copied.
    struct Stored {
      int first = 0;
      std::size_t offset = 0;
    };
    std::vector<Stored> stored(caches.size());
    std::size_t offset = kPreamble + header_size + static_cast<std::size_t>(tokens) * sizeof(std::int32_t);
    for (std::size_t i = 0; i < caches.size(); ++i) {
      const KvCache& cache = sequence.caches[i];
      const std::string what = fmt::format("{}: cache {}", where, i);
      const int first = json_integer<int>(field(caches[i], "first"), what + " first");
      const auto position_bytes = json_integer<std::size_t>(field(caches[i], "position_bytes"), what + " position_bytes");
      if (position_bytes != cache.position_bytes()) {
        fail(ErrorKind::kBadFile, "{} stores {} bytes a position; this session's stores {}", what, position_bytes, cache.position_bytes());
      }
      // The next query sees the last window - 1 keys of a sliding layer, all of a full one.
      const bool sliding = cache_attention(i) == AttentionType::kSliding;
      const int needed = sliding ? std::max(0, tokens - V::config.sliding_window + 1) : 0;
      if (first < 0 || first > needed) {
        fail(ErrorKind::kBadFile, "{} starts at position {}; the next token needs it from position {} of {}", what, first, needed, tokens);
      }
      stored[i] = {first, offset};
      offset += static_cast<std::size_t>(tokens - first) * position_bytes;
    }
    if (offset != bytes.size()) fail(ErrorKind::kBadFile, "{}: {} bytes where its header describes {}", where, bytes.size(), offset);
    std::vector<int> ids(static_cast<std::size_t>(tokens));
    for (int t = 0; t < tokens; ++t) {
      std::int32_t id = 0;
      std::memcpy(&id, bytes.data() + kPreamble + header_size + static_cast<std::size_t>(t) * sizeof id, sizeof id);
      if (id < 0 || id >= V::config.vocab_size) fail(ErrorKind::kBadFile, "{}: token id {} at index {} is outside the vocabulary", where, id, t);
      ids[static_cast<std::size_t>(t)] = id;
    }

    // All checked: the session takes the file's state.
    sequence.tokens = std::move(ids);
    sequence.rewind_floor = 0;
    for (std::size_t i = 0; i < stored.size(); ++i) {
      KvCache& cache = sequence.caches[i];
      const int first = std::max(stored[i].first, tokens - cache.capacity());
      for (int p = first; p < tokens; ++p) {
        cache.copy_in(p, bytes.data() + stored[i].offset + static_cast<std::size_t>(p - stored[i].first) * cache.position_bytes());
      }
      // A rewind to p needs the window's keys before p.
      if (first > 0) sequence.rewind_floor = std::max(sequence.rewind_floor, first + V::config.sliding_window - 1);
    }
    return tokens;
  }

  // The attention type of the layers with cache slot `slot`.
  static AttentionType cache_attention(std::size_t slot) {
    for (const LayerFacts& f : kLayers<V>) {
      if (!f.kind.kv_shared && static_cast<std::size_t>(f.kv_cache_slot) == slot) return f.kind.attention;
    }
    fail(ErrorKind::kInvalidArgument, "no layer has cache slot {}", slot);
  }
};

// Writes the session's tokens and caches to `path` (atomically: a temporary file, renamed).
template <Variant V>
void save_prompt_cache(const Session<V>& session, const std::filesystem::path& path) {
  PromptCacheFile<V>::save(session, path);
}

// Replaces what `session` holds with the file's tokens and caches and returns how many
// tokens it holds now. Errors, with the session unchanged: a file of another variant,
// weights, checkpoint or KV format, another layout, more tokens than the context, a
// truncated or inconsistent file.
template <Variant V>
int restore_prompt_cache(Session<V>& session, const std::filesystem::path& path) {
  return PromptCacheFile<V>::restore(session, path);
}

}  // namespace gemma4

#pragma once
// Which revision of Gemma 4's chat template a model directory carries. Google has revised
// the 16 KB Jinja template since release; the library renders each known revision natively
// (chat/prompt_renderer.hpp) instead of running Jinja. A directory's template
// (chat_template.jinja, else "chat_template" in tokenizer_config.json) is matched by its
// content hash; one we have not seen is placed by the constructs that tell the revisions
// apart, with a warning naming the revision used. No template: the current E2B/E4B one.
//
//   const ChatTemplate chat_template = chat_template_of(model_dir);
//   if (!chat_template.warning.empty()) log(chat_template.warning);

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "gemma4/base/json.hpp"
#include "gemma4/error.hpp"

namespace gemma4 {

// In order of publication; each renders what the one before did plus the changes named.
enum class TemplateRevision {
  kFirstRelease,  // 2026-04: no newline after <|think|>; tool turns as turns of their own
  kToolTurns,     // 2026-04: newline after <|think|>; tool results inside the model turn;
                  //          reasoning replayed before tool calls of the current turn
  kNestedSchemas, // 2026-04-29: top-level parameters named like schema keywords kept
  kJuly2026,      // 2026-07-09: null arguments, turn closure around tool calls, reasoning
                  //             kept after the last user turn, post-tool thought cue
};

inline constexpr TemplateRevision kLatestRevision = TemplateRevision::kJuly2026;

inline std::string_view revision_name(TemplateRevision revision) {
  switch (revision) {
    case TemplateRevision::kFirstRelease: return "first release (2026-04)";
    case TemplateRevision::kToolTurns: return "tool turns (2026-04)";
    case TemplateRevision::kNestedSchemas: return "nested schemas (2026-04-29)";
    case TemplateRevision::kJuly2026: return "2026-07-09";
  }
  return "?";
}

struct ChatTemplate {
  TemplateRevision revision = kLatestRevision;
  // The 26B/31B templates write an empty thought channel after the generation prompt when
  // thinking is off; E2B/E4B's write none.
  bool empty_thought_when_off = false;
  std::string source{};   // where it came from: a file, or "built in"
  std::string warning{};  // non-empty for a template we have not seen
};

namespace detail {

inline std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t hash = 0xcbf29ce484222325u;
  for (const char c : text) hash = (hash ^ static_cast<unsigned char>(c)) * 0x100000001b3u;
  return hash;
}

// The published templates (tests/data/chat_templates/, where each came from is recorded
// in its README), trailing whitespace dropped before hashing.
struct KnownTemplate {
  std::uint64_t hash;
  TemplateRevision revision;
  bool large_model;
};
inline constexpr KnownTemplate kKnownTemplates[] = {
    {0xf8853f5ee4557739u, TemplateRevision::kFirstRelease, false},  // gemma-4-first-release.jinja
    {0x9c363b945b2badb4u, TemplateRevision::kToolTurns, false},  // gemma-4-E2B-it-2026-04-13.jinja
    {0xfd2eff67701906ebu, TemplateRevision::kNestedSchemas, false},  // gemma-4-E2B-it-2026-04-29.jinja
    {0xb5a7c4713578081cu, TemplateRevision::kJuly2026, false},  // gemma-4-E2B-it-2026-07-09.jinja
    {0xecf8ed96903a3852u, TemplateRevision::kToolTurns, true},  // gemma-4-31B-it-2026-04-10.jinja
    {0x42c43f5ac13ede11u, TemplateRevision::kNestedSchemas, true},  // gemma-4-31B-it-2026-04-29.jinja
    {0x49328c5f218b677fu, TemplateRevision::kJuly2026, true},  // gemma-4-31B-it-2026-07-09.jinja
};

inline std::string_view without_trailing_space(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

}  // namespace detail

inline std::uint64_t template_hash(std::string_view jinja) { return detail::fnv1a(detail::without_trailing_space(jinja)); }

// The revision of a template's text: a known one by hash, else by its constructs.
inline ChatTemplate identify_chat_template(std::string_view jinja, std::string source) {
  const std::uint64_t hash = template_hash(jinja);
  for (const detail::KnownTemplate& known : detail::kKnownTemplates) {
    if (known.hash == hash) return {.revision = known.revision, .empty_thought_when_off = known.large_model, .source = std::move(source)};
  }
  const auto has = [&](std::string_view construct) { return jinja.find(construct) != std::string_view::npos; };
  if (!has("<|turn>")) {
    fail(ErrorKind::kUnsupported, "{}: not a Gemma 4 chat template (it never writes <|turn>)", source);
  }
  ChatTemplate placed{.empty_thought_when_off = has("'<|channel>thought\\n<channel|>'"), .source = std::move(source)};
  if (!has("'<|think|>\\n'")) {
    placed.revision = TemplateRevision::kFirstRelease;
  } else if (has("preserve_thinking")) {
    placed.revision = TemplateRevision::kJuly2026;
  } else if (has("filter_keys")) {
    placed.revision = TemplateRevision::kNestedSchemas;
  } else {
    placed.revision = TemplateRevision::kToolTurns;
  }
  placed.warning = fmt::format("{}: an unrecognised chat template (hash {:016x}); rendering it as the {} revision{}", placed.source, hash,
                               revision_name(placed.revision), placed.empty_thought_when_off ? " of the 26B/31B templates" : "");
  return placed;
}

// The template a model directory carries, or the built-in current one.
inline ChatTemplate chat_template_of(const std::filesystem::path& dir) {
  const std::filesystem::path jinja = dir / "chat_template.jinja";
  if (std::filesystem::exists(jinja)) {
    std::ifstream in(jinja, std::ios::binary);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in && !in.eof()) fail(ErrorKind::kIo, "{}: unreadable", jinja.string());
    return identify_chat_template(text, jinja.string());
  }
  const std::filesystem::path config = dir / "tokenizer_config.json";
  if (std::filesystem::exists(config)) {
    const nlohmann::json json = read_json_file(config);
    const auto it = json.find("chat_template");
    if (it != json.end() && it->is_string()) return identify_chat_template(it->get<std::string>(), config.string());
    if (it != json.end() && it->is_array()) {  // named templates: the "default" one
      for (const nlohmann::json& named : *it) {
        const auto is_string_at = [&](const char* key) { return named.is_object() && named.contains(key) && named[key].is_string(); };
        if (is_string_at("name") && named["name"] == "default" && is_string_at("template")) {
          return identify_chat_template(named["template"].get<std::string>(), config.string());
        }
      }
    }
  }
  return {.source = "built in"};
}

}  // namespace gemma4

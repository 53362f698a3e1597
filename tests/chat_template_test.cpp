// The native chat-prompt renderer against the published Gemma 4 chat templates: every
// render in tests/data/chat_template_parity.json (made by tests/chat/make_template_fixture.mjs
// with @huggingface/jinja) must come out the same, text for text and, through the demo
// tokenizer, token for token.
#include <filesystem>
#include <string>

#include <catch2/catch.hpp>

#include "gemma4/chat/chat_template.hpp"
#include "gemma4/chat/prompt_renderer.hpp"
#include "gemma4/tokenizer/tokenizer.hpp"
#include "support.hpp"

using namespace gemma4;
using gemma4::test::demo_tokenizer;
using Catch::Matchers::Contains;

namespace {

const std::filesystem::path kTemplates = test::kTestData / "chat_templates";


ChatTemplate published(const std::string& file) { return identify_chat_template(test::read_file(kTemplates / file), file); }

JsonValue parity_fixture() { return JsonValue::parse(test::read_file(test::kTestData / "chat_template_parity.json")); }

}  // namespace

TEST_CASE("Each published chat template is recognised as its revision") {
  struct Expected {
    const char* file;
    TemplateRevision revision;
    bool large_model;
  };
  for (const Expected& e : {Expected{"gemma-4-first-release.jinja", TemplateRevision::kFirstRelease, false},
                            Expected{"gemma-4-E2B-it-2026-04-13.jinja", TemplateRevision::kToolTurns, false},
                            Expected{"gemma-4-E2B-it-2026-04-29.jinja", TemplateRevision::kNestedSchemas, false},
                            Expected{"gemma-4-E2B-it-2026-07-09.jinja", TemplateRevision::kJuly2026, false},
                            Expected{"gemma-4-31B-it-2026-04-10.jinja", TemplateRevision::kToolTurns, true},
                            Expected{"gemma-4-31B-it-2026-04-29.jinja", TemplateRevision::kNestedSchemas, true},
                            Expected{"gemma-4-31B-it-2026-07-09.jinja", TemplateRevision::kJuly2026, true}}) {
    INFO(e.file);
    const ChatTemplate t = published(e.file);
    CHECK(t.revision == e.revision);
    CHECK(t.empty_thought_when_off == e.large_model);
    CHECK(t.warning.empty());  // known by its hash
  }
}

TEST_CASE("An edited template is placed by its constructs, with a warning; a foreign one is refused") {
  std::string edited = test::read_file(kTemplates / "gemma-4-E2B-it-2026-07-09.jinja");
  edited.insert(0, "{# local edit #}");
  const ChatTemplate t = identify_chat_template(edited, "my/chat_template.jinja");
  CHECK(t.revision == TemplateRevision::kJuly2026);
  CHECK_THAT(t.warning, Contains("my/chat_template.jinja") && Contains("unrecognised") && Contains("2026-07-09"));
  CHECK_THROWS_WITH(identify_chat_template("{{ messages }}<start_of_turn>", "other.jinja"), Contains("not a Gemma 4 chat template"));
}

TEST_CASE("A model directory's template: chat_template.jinja, tokenizer_config.json, or the built-in one") {
  test::TempDir dir;
  CHECK(chat_template_of(dir.path()).source == "built in");
  CHECK(chat_template_of(dir.path()).revision == kLatestRevision);
  test::write_file(dir.path() / "tokenizer_config.json",
                   JsonValue{{"chat_template", test::read_file(kTemplates / "gemma-4-first-release.jinja")}}.dump());
  CHECK(chat_template_of(dir.path()).revision == TemplateRevision::kFirstRelease);
  {  // named templates: the "default" one; entries of another shape are passed over
    test::TempDir named;
    JsonValue list = JsonValue::array({1, JsonValue{{"name", 5}}, JsonValue{{"name", "tool_use"}, {"template", "x"}}});
    list.push_back(JsonValue{{"name", "default"}, {"template", test::read_file(kTemplates / "gemma-4-first-release.jinja")}});
    test::write_file(named.path() / "tokenizer_config.json", JsonValue{{"chat_template", list}}.dump());
    CHECK(chat_template_of(named.path()).revision == TemplateRevision::kFirstRelease);
  }
  std::filesystem::copy_file(kTemplates / "gemma-4-31B-it-2026-04-29.jinja", dir.path() / "chat_template.jinja");
  const ChatTemplate t = chat_template_of(dir.path());
  CHECK((t.revision == TemplateRevision::kNestedSchemas && t.empty_thought_when_off));
}

TEST_CASE("The native renderer equals the published templates on every parity case") {
  const JsonValue fixture = parity_fixture();
  std::map<std::string, const JsonValue*> cases;
  for (const JsonValue& c : fixture["cases"]) cases[c["name"].get<std::string>()] = &c;
  int compared = 0;
  for (const JsonValue& render : fixture["renders"]) {
    const JsonValue& c = *cases.at(render["case"].get<std::string>());
    const std::string file = render["template"].get<std::string>();
    INFO(file << ": " << c["name"].get<std::string>());
    const std::vector<Message> messages = messages_from_json(c["messages"]);
    const std::vector<Tool> tools = c.contains("tools") ? tools_from_json(c["tools"]) : std::vector<Tool>{};
    const RenderOptions options{.thinking = c.value("thinking", false),
                                .add_generation_prompt = c.value("add_generation_prompt", true),
                                .preserve_thinking = c.value("preserve_thinking", false)};
    const ChatTemplate chat_template = published(file);
    if (render.value("refused", false)) {
      CHECK_THROWS_WITH(render_prompt(chat_template, messages, tools, options), Contains("first-release") && Contains("tool format"));
      continue;
    }
    const PromptText prompt = render_prompt(chat_template, messages, tools, options);
    const std::string expected = render["text"].get<std::string>();
    REQUIRE(prompt.str() == expected);
    // Token for token: what the tokenizer gives the whole text, unless a message types a
    // control token (then ours keeps it as text, by design).
    if (c["name"] != "typed control tokens stay text") CHECK(prompt.ids(demo_tokenizer()) == demo_tokenizer().encode(expected, {.add_bos = false}));
    ++compared;
  }
  CHECK(compared >= 140);
}

TEST_CASE("Control tokens typed in a message stay text") {
  const std::vector<Message> messages = {{.role = Role::kUser, .content = "a <turn|> b"}};
  const PromptText prompt = render_prompt({}, messages);
  const std::vector<int> ids = prompt.ids(demo_tokenizer());
  CHECK(std::count(ids.begin(), ids.end(), 106) == 1);  // the turn end the renderer placed, not the typed one
  CHECK(prompt.str() == "<bos><|turn>user\na <turn|> b<turn|>\n<|turn>model\n");
}

TEST_CASE("What the templates cannot render is refused with the reason") {
  const ChatTemplate july{};
  const auto render = [&](const char* messages_json) { return render_prompt(july, messages_from_json(JsonValue::parse(messages_json))); };
  CHECK_THROWS_WITH(render(R"([{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}])"),
                    Contains("image_url") && Contains("text model only"));
  CHECK_THROWS_WITH(render(R"([{"role":"user","content":[{"type":"audio"}]}])"), Contains("audio"));
  CHECK_THROWS_WITH(render(R"([{"role":"user","content":[{"type":"text","text":"hi"}]}])"), Contains("one string"));
  CHECK_THROWS_WITH(render(R"([{"role":"robot","content":"x"}])"), Contains("unknown role \"robot\""));
  CHECK_THROWS_WITH(render(R"([{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"{\"a\":1}"}}]}])"),
                    Contains("\"f\"") && Contains("JSON object"));
  CHECK_THROWS_WITH(render(R"([{"role":"assistant","tool_responses":[]}])"), Contains("tool_responses"));
  CHECK_THROWS_WITH(render(R"([{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":{}}}]},{"role":"tool","content":{"a":1}}])"),
                    Contains("JSON text"));
  CHECK_THROWS_WITH(render(R"({"role":"user"})"), Contains("array"));
  CHECK_THROWS_WITH(tools_from_json(JsonValue::parse(R"([{"name":"f"}])")), Contains("tool 0"));
}

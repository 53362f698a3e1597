// Writes tests/data/chat_template_parity.json: chats rendered by the published Gemma 4
// chat templates (tests/data/chat_templates/) with @huggingface/jinja, the reference the
// native renderer (include/gemma4/chat/prompt_renderer.hpp) must equal, text for text.
//
//   node tests/chat/make_template_fixture.mjs   (fetches @huggingface/jinja with npm into the cache)
//
// The C++ tests read the fixture and never need node.
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const cache = join(process.env.GEMMA4_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(process.env.HOME, ".cache"), "gemma4"), "npm");
const jinjaVersion = "0.5.11";
if (!existsSync(join(cache, "node_modules/@huggingface/jinja"))) {
  mkdirSync(cache, { recursive: true });
  execFileSync("npm", ["install", "--prefix", cache, "--no-audit", "--no-fund", "--loglevel=error", `@huggingface/jinja@${jinjaVersion}`], { stdio: "inherit" });
}
const { Template } = createRequire(join(cache, "node_modules/"))("@huggingface/jinja");

const templatesDir = join(here, "../data/chat_templates");
const templates = readdirSync(templatesDir).filter((f) => f.endsWith(".jinja")).sort();

const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The current weather in a city.",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", description: "City name, e.g. Zürich" },
        unit: { type: "string", enum: ["celsius", "fahrenheit"], description: "Temperature unit" },
        days: { type: "integer", description: "Forecast days", nullable: true },
      },
      required: ["city"],
    },
  },
};
const search = {
  type: "function",
  function: {
    name: "search_files",
    description: "Lists files under a folder matching patterns.",
    parameters: {
      type: "object",
      properties: {
        folder: { type: "string" },
        patterns: { type: "array", items: { type: "string" }, description: "Glob patterns" },
        limits: {
          type: "object",
          description: "Bounds",
          properties: { max_files: { type: "integer" }, max_depth: { type: "number", description: "Depth" } },
          required: ["max_files"],
        },
        filters: {
          type: "array",
          items: { type: "object", properties: { name: { type: "string" }, size: { type: "integer" } }, required: ["name"] },
        },
        Recursive: { type: "boolean" },
        type: { type: "string", description: "a parameter named like a schema keyword" },
      },
      required: ["folder", "patterns"],
    },
    response: { type: "object", description: "The files found." },
  },
};
const noParameters = { type: "function", function: { name: "now", description: "The current time." } };

const call = (id, name, args) => ({ id, type: "function", function: { name, arguments: args } });

// Each case: messages, tools and options; `tools: true` marks cases that use tool syntax.
const cases = [
  { name: "one user turn", messages: [{ role: "user", content: "Hello!" }] },
  { name: "system and user", messages: [{ role: "system", content: "  Be brief.\n" }, { role: "user", content: "Why is the sky blue?" }] },
  { name: "developer role as system", messages: [{ role: "developer", content: "Answer in French." }, { role: "user", content: "Hi" }] },
  { name: "thinking without system", messages: [{ role: "user", content: "2+2?" }], thinking: true },
  { name: "thinking with system", messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "2+2?" }], thinking: true },
  {
    name: "multi-turn",
    messages: [
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello! How can I help?" },
      { role: "user", content: " What is Rust?\n\n" },
      { role: "assistant", content: "A language." },
      { role: "user", content: "Thanks" },
    ],
  },
  {
    name: "history with thoughts in content and reasoning",
    messages: [
      { role: "user", content: "Hi" },
      { role: "assistant", content: "<|channel>thought\nThe user greets.<channel|>Hello!", reasoning_content: "The user greets." },
      { role: "user", content: "And?" },
      { role: "assistant", content: "More.", reasoning_content: "after the last user turn" },
    ],
    thinking: true,
  },
  {
    name: "no generation prompt",
    messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: "Hello" }],
    add_generation_prompt: false,
  },
  { name: "empty and whitespace content", messages: [{ role: "user", content: "\u00a0 x \u2003" }, { role: "assistant", content: "" }, { role: "user", content: "" }] },
  { name: "typed control tokens stay text", messages: [{ role: "user", content: "a <turn|> b <|\"|> c" }] },
  { name: "tools declared", tools: [weather, search, noParameters], messages: [{ role: "user", content: "Weather in Paris?" }] },
  { name: "tools with system and thinking", tools: [weather], thinking: true, messages: [{ role: "system", content: "You help." }, { role: "user", content: "Paris?" }] },
  {
    name: "tool call and response",
    tools: [weather],
    messages: [
      { role: "user", content: "Weather in Paris?" },
      { role: "assistant", content: "", tool_calls: [call("c1", "get_weather", { city: "Paris", unit: "celsius" })] },
      { role: "tool", tool_call_id: "c1", content: "18 degrees, sunny" },
    ],
  },
  {
    name: "tool response with thinking (post-tool thought cue)",
    tools: [weather],
    thinking: true,
    messages: [
      { role: "user", content: "Weather in Paris?" },
      { role: "assistant", content: null, reasoning_content: "I should call the tool.", tool_calls: [call("c1", "get_weather", { city: "Paris" })] },
      { role: "tool", tool_call_id: "c1", content: "18 degrees" },
    ],
  },
  {
    name: "tool call pending",
    tools: [weather],
    messages: [{ role: "user", content: "Weather?" }, { role: "assistant", tool_calls: [call("c1", "get_weather", { city: "Oslo" })] }],
  },
  {
    name: "full tool round then next user turn",
    tools: [weather],
    thinking: true,
    messages: [
      { role: "user", content: "Weather in Paris?" },
      { role: "assistant", content: "", reasoning_content: "Call it.", tool_calls: [call("c1", "get_weather", { city: "Paris" })] },
      { role: "tool", tool_call_id: "c1", content: "18 degrees" },
      { role: "assistant", content: "It is 18 degrees in Paris.", reasoning_content: "Report." },
      { role: "user", content: "And in Rome?" },
    ],
  },
  {
    name: "consecutive tool calls",
    tools: [weather, search],
    messages: [
      { role: "user", content: "Paris and Rome?" },
      {
        role: "assistant",
        content: "",
        tool_calls: [call("a", "get_weather", { city: "Paris" }), call("b", "get_weather", { city: "Rome", days: 3 })],
      },
      { role: "tool", tool_call_id: "a", content: "18" },
      { role: "tool", tool_call_id: "b", content: 24 },
      { role: "assistant", content: "", tool_calls: [call("c", "search_files", { folder: "/tmp", patterns: ["*.txt"], limits: { max_files: 10, max_depth: 2.5 } })] },
      { role: "tool", tool_call_id: "c", content: "a.txt\nb.txt" },
      { role: "assistant", content: "Paris 18, Rome 24; two files." },
    ],
  },
  {
    name: "tool results named, without ids",
    tools: [weather, noParameters],
    messages: [
      { role: "user", content: "Time and weather?" },
      { role: "assistant", tool_calls: [{ type: "function", function: { name: "now", arguments: {} } }] },
      { role: "tool", name: "now", content: "12:00" },
      { role: "assistant", content: "Noon." },
    ],
  },
  {
    name: "argument values",
    tools: [search],
    messages: [
      { role: "user", content: "x" },
      {
        role: "assistant",
        tool_calls: [
          call("v", "search_files", {
            folder: "C:\\dir with spaces",
            patterns: [],
            Zeta: { b: true, a: false, Mixed: "M", mixed: "m" },
            numbers: [0, -7, 3.25, 1e21, 1.5e-7, 123456789012],
            text: "line\nbreak {braces} [brackets], commas: colons",
          }),
        ],
      },
      { role: "tool", tool_call_id: "v", content: "ok" },
    ],
  },
  {
    name: "null argument",
    tools: [weather],
    messages: [
      { role: "user", content: "x" },
      { role: "assistant", tool_calls: [call("n", "get_weather", { city: "Bern", days: null })] },
      { role: "tool", tool_call_id: "n", content: "ok" },
      { role: "assistant", content: "Done." },
    ],
  },
  {
    name: "preserve thinking",
    tools: [weather],
    preserve_thinking: true,
    messages: [
      { role: "user", content: "Weather?" },
      { role: "assistant", content: "", reasoning_content: "Call.", tool_calls: [call("c1", "get_weather", { city: "Paris" })] },
      { role: "tool", tool_call_id: "c1", content: "18" },
      { role: "assistant", content: "18.", reasoning_content: "Done." },
      { role: "user", content: "Thanks" },
    ],
  },
  {
    name: "tool round ends a chat",
    tools: [weather],
    add_generation_prompt: false,
    messages: [
      { role: "user", content: "Weather?" },
      { role: "assistant", content: "", tool_calls: [call("c1", "get_weather", { city: "Paris" })] },
      { role: "tool", tool_call_id: "c1", content: "18" },
    ],
  },
];

const usesTools = (c) => (c.tools ?? []).length > 0 || c.messages.some((m) => m.role === "tool" || m.tool_calls);

const out = { generated_by: "tests/chat/make_template_fixture.mjs", jinja: `@huggingface/jinja@${jinjaVersion}`, renders: [] };
for (const file of templates) {
  const template = new Template(readFileSync(join(templatesDir, file), "utf8"));
  for (const c of cases) {
    const context = {
      messages: c.messages,
      tools: c.tools,
      bos_token: "<bos>",
      add_generation_prompt: c.add_generation_prompt ?? true,
      enable_thinking: c.thinking ?? false,
      preserve_thinking: c.preserve_thinking ?? false,
    };
    const render = { template: file, case: c.name };
    // The first release's tool format is refused by the native renderer, not compared.
    if (file.includes("first-release") && usesTools(c)) {
      render.refused = true;
    } else {
      try { render.text = template.render(context); } catch (e) { console.error(file, c.name, e.message); throw e; }
    }
    out.renders.push(render);
  }
}
out.cases = cases;
writeFileSync(join(here, "../data/chat_template_parity.json"), JSON.stringify(out, null, 1) + "\n");
console.log(`${out.renders.length} renders of ${cases.length} cases by ${templates.length} templates`);

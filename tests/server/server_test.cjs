// gemma4 serve through the real OpenAI SDK (and plain fetch where the SDK would refuse to
// send a bad request): chats, streams, tools, prompt reuse, concurrency, cancelling, errors.
// Run by server_test.sh, which starts the servers:
//   TOY    the toy model: --parallel 2 --api-key KEY --max-body-mb 1 --max-context 1024
//   DRAFT  the toy model drafting with its assistant: --parallel 1 --draft
//   RANDOM a synthetic tiny-e2b (seed 6) whose random weights write long replies: --parallel 1 --max-queue 1
// Environment: TOY_URL, RANDOM_URL, DRAFT_URL, API_KEY, GEMMA4 (the CLI), TOY_DIR.
"use strict";
const { execFile } = require("node:child_process");
const { promisify } = require("node:util");
const OpenAI = require("openai").default;

const toyUrl = process.env.TOY_URL, randomUrl = process.env.RANDOM_URL, draftUrl = process.env.DRAFT_URL, key = process.env.API_KEY;
const toy = new OpenAI({ baseURL: `${toyUrl}/v1`, apiKey: key, maxRetries: 0, timeout: 60000 });
const drafting = new OpenAI({ baseURL: `${draftUrl}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60000 });
const random = new OpenAI({ baseURL: `${randomUrl}/v1`, apiKey: "unused", maxRetries: 0, timeout: 60000 });
const model = "toy-e2b";
let failures = 0;

function check(name, ok, detail = "") {
  console.log(`${ok ? "ok" : "FAILED"}: ${name}${ok || !detail ? "" : `: ${detail}`}`);
  if (!ok) failures++;
}

async function post(base, path, body, headers = {}) {
  const r = await fetch(base + path, {
    method: "POST", body: typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body),
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}`, ...headers },
  });
  let json = null;
  try { json = await r.json(); } catch { /* not JSON: the check says so */ }
  return { status: r.status, json, headers: r.headers };
}

const user = (content) => [{ role: "user", content }];

// The text of a greedy `gemma4 run` for the same single user message. Asynchronous: a blocked
// event loop keeps an idle keep-alive socket the server has meanwhile closed, and the next
// request on it fails with "Connection error" (seen in the sanitizer build, where a run takes
// longer than the server's 5 s keep-alive).
async function runGreedy(prompt, maxTokens) {
  const { stdout } = await promisify(execFile)(process.env.GEMMA4,
    ["run", "--model", process.env.TOY_DIR, "--prompt", prompt, "--greedy", "--max-tokens", String(maxTokens)], { encoding: "utf8" });
  return stdout.replace(/\n$/, "");
}

async function streamText(client, body, onChunk = () => {}) {
  const stream = await client.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
  let text = "", reasoning = "", finish = null, usage = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) continue;
    text += choice.delta.content ?? "";
    reasoning += choice.delta.reasoning_content ?? "";
    if (choice.finish_reason) finish = choice.finish_reason;
    if (onChunk(chunk, chunks) === false) { stream.controller.abort(); break; }
  }
  return { text, reasoning, finish, usage, chunks };
}

async function basics() {
  const prompt = "Tell me a story about the fox.";
  const reply = await toy.chat.completions.create({ model, messages: user(prompt), temperature: 0, max_tokens: 48 });
  const message = reply.choices[0].message;
  check("a chat completion has the OpenAI shape", reply.object === "chat.completion" && message.role === "assistant" &&
        typeof message.content === "string" && message.content.length > 0, JSON.stringify(reply));
  check("usage counts the prompt and the completion", reply.usage.prompt_tokens > 5 && reply.usage.completion_tokens > 0 &&
        reply.usage.total_tokens === reply.usage.prompt_tokens + reply.usage.completion_tokens, JSON.stringify(reply.usage));
  const greedy = await runGreedy(prompt, 48);
  check("temperature 0 gives gemma4 run --greedy's text", message.content === greedy,
        `${JSON.stringify(message.content)} vs ${JSON.stringify(greedy)}`);
  const hitLimit = reply.usage.completion_tokens === 48;  // else the model ended its turn first
  check("the finish reason says why the reply ended", reply.choices[0].finish_reason === (hitLimit ? "length" : "stop"), JSON.stringify(reply.choices[0]));

  const streamed = await streamText(toy, { model, messages: user(prompt), temperature: 0, max_tokens: 48 });
  check("a streamed reply is the same text, chunk by chunk", streamed.text === message.content && streamed.chunks > 5,
        `${JSON.stringify(streamed.text)} in ${streamed.chunks} chunks`);
  check("the stream ends with a finish reason and, asked for, the usage", streamed.finish === reply.choices[0].finish_reason &&
        streamed.usage && streamed.usage.completion_tokens === reply.usage.completion_tokens, JSON.stringify(streamed));

  // A stateless client sends the whole chat again: the slot's cache keeps its prefix.
  const full = await toy.chat.completions.create({ model, messages: user(prompt), temperature: 0, max_tokens: 200 });
  const next = await toy.chat.completions.create({
    model, temperature: 0, max_tokens: 20,
    messages: [...user(prompt), { role: "assistant", content: full.choices[0].message.content }, ...user("Tell me a story about the owl.")],
  });
  const cached = next.usage.prompt_tokens_details.cached_tokens;
  check("a second turn prefills only its new tokens (cached_tokens)", cached >= full.usage.prompt_tokens && next.usage.prompt_tokens - cached < 30,
        JSON.stringify(next.usage));

  const stopped = await toy.chat.completions.create({ model, messages: user(prompt), temperature: 0, max_tokens: 48, stop: [" fox"] });
  const whole = message.content, cut = whole.indexOf(" fox");
  check("a stop string ends the reply before it, across token boundaries", stopped.choices[0].message.content === whole.slice(0, cut) &&
        stopped.choices[0].finish_reason === "stop", JSON.stringify(stopped.choices[0]));
  const streamedStop = await streamText(toy, { model, messages: user(prompt), temperature: 0, max_tokens: 48, stop: [" fox"] });
  check("a stop string is never streamed", streamedStop.text === whole.slice(0, cut), JSON.stringify(streamedStop.text));

  const speculative = await drafting.chat.completions.create({ model, messages: user(prompt), temperature: 0, max_tokens: 48 });
  check("--draft: the same reply, decoded speculatively", speculative.choices[0].message.content === message.content &&
        speculative.timings.draft_n > 0 && speculative.timings.draft_n_accepted > 0, JSON.stringify(speculative));
  const speculativeStream = await streamText(drafting, { model, messages: user(prompt), temperature: 0, max_tokens: 48 });
  check("--draft: streamed, the same text", speculativeStream.text === message.content, JSON.stringify(speculativeStream.text));

  const seeded = async () => (await toy.chat.completions.create({ model, messages: user(prompt), temperature: 1, seed: 7, max_tokens: 30 })).choices[0].message.content;
  check("a seed repeats a sampled reply", (await seeded()) === (await seeded()));

  const completion = await toy.completions.create({ model, prompt: "Once upon a time", temperature: 0, max_tokens: 16 });
  check("a raw completion", completion.object === "text_completion" && completion.choices[0].text.length > 0, JSON.stringify(completion));
  let streamedCompletion = "", completionUsage = null;
  for await (const chunk of await toy.completions.create({ model, prompt: "Once upon a time", temperature: 0, max_tokens: 16, stream: true,
                                                          stream_options: { include_usage: true } })) {
    streamedCompletion += chunk.choices[0]?.text ?? "";
    if (chunk.usage) completionUsage = chunk.usage;
  }
  check("a streamed raw completion is the same text", streamedCompletion === completion.choices[0].text &&
        completionUsage?.completion_tokens === completion.usage.completion_tokens, JSON.stringify([streamedCompletion, completionUsage]));

  const models = await toy.models.list();
  check("/v1/models lists the served model", models.data.length === 1 && models.data[0].id === model, JSON.stringify(models.data));

  const tokens = await post(toyUrl, "/tokenize", { content: "the fox" });
  const text = await post(toyUrl, "/detokenize", { tokens: tokens.json.tokens });
  check("tokenize then detokenize", tokens.status === 200 && text.json.content === "<bos>the fox", JSON.stringify([tokens.json, text.json]));
}

async function tools() {
  const weather = { type: "function", function: { name: "get_weather", description: "The weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } } };
  const plain = await toy.chat.completions.create({ model, messages: user("Weather?"), max_tokens: 1 });
  const declared = await toy.chat.completions.create({ model, messages: user("Weather?"), tools: [weather], max_tokens: 1 });
  check("tools are declared to the model in the prompt", declared.usage.prompt_tokens > plain.usage.prompt_tokens + 10,
        `${declared.usage.prompt_tokens} vs ${plain.usage.prompt_tokens}`);
  // The toy was never taught to call tools: a forced tool_choice makes it write a call, and
  // the grammar of the tool's schema makes the call valid (plain, then streamed).
  const forecast = { type: "function", function: { name: "get_forecast", parameters: { type: "object",
    properties: { city: { enum: ["Paris", "Oslo"] }, days: { type: "integer" }, hourly: { type: "boolean" } }, required: ["city", "days", "hourly"] } } };
  const fits = (call) => {
    const args = JSON.parse(call?.function?.arguments ?? "null") ?? {};
    return call.function.name === "get_forecast" && ["Paris", "Oslo"].includes(args.city) && Number.isInteger(args.days) && typeof args.hourly === "boolean";
  };
  const forced = await toy.chat.completions.create({ model, messages: user("Weather in Paris?"), tools: [weather, forecast], max_tokens: 60,
    tool_choice: { type: "function", function: { name: "get_forecast" } }, temperature: 0 });
  const m = forced.choices[0].message;
  check("tool_choice naming a function: a call to it that fits its schema", forced.choices[0].finish_reason === "tool_calls" &&
        m.tool_calls?.length >= 1 && m.tool_calls.every(fits), JSON.stringify(forced.choices[0]));
  // Streamed, each call's arguments come in pieces as they are written: put together by
  // index, as clients do.
  const calls = [];
  let pieces = 0;
  for await (const chunk of await toy.chat.completions.create({ model, messages: user("Weather?"), tools: [forecast], max_tokens: 60,
    tool_choice: "required", temperature: 0.8, seed: 3, stream: true })) {
    for (const delta of chunk.choices[0]?.delta?.tool_calls ?? []) {
      calls[delta.index] ??= { id: delta.id, type: delta.type, function: { name: delta.function?.name, arguments: "" } };
      pieces += delta.function?.arguments ? 1 : 0;
      calls[delta.index].function.arguments += delta.function?.arguments ?? "";
    }
  }
  check("tool_choice \"required\", streamed: arguments in pieces, calls that fit the schema", calls.length >= 1 && calls.every(fits) &&
        pieces > 2 * calls.length, JSON.stringify(calls));
  // The round trip's second half: the model's own call, as the SDK gave it back (arguments
  // as JSON text), and its result go back, and the model answers.
  const call = m.tool_calls?.[0] ?? { id: "missing", type: "function", function: { name: "get_forecast", arguments: "{}" } };
  const answer = await toy.chat.completions.create({
    model, tools: [weather, forecast], max_tokens: 16, temperature: 0,
    messages: [...user("Weather in Paris?"), m, { role: "tool", tool_call_id: call.id, content: "sunny, 21 C" }],
  });
  check("the model's call and its result go back, and the model answers", answer.choices[0].message.role === "assistant" &&
        answer.usage.completion_tokens > 0 && answer.usage.prompt_tokens > forced.usage.prompt_tokens, JSON.stringify(answer));
}

async function jsonOutput() {
  // The toy never writes JSON: response_format makes every reply a document of the schema,
  // plain, streamed and decoded speculatively (the same text). A string ends only when the
  // sampler picks its quote, and the toy's "name" rambled past 120 tokens in 3 of these 4
  // replies once int8's numerics changed: max_tokens leaves room.
  const schema = { type: "object", properties: { animal: { enum: ["fox", "owl"] }, legs: { type: "integer" }, name: { type: "string" } },
                   required: ["animal", "legs"] };
  const request = { model, messages: user("Which animal?"), max_tokens: 400, temperature: 0.9, seed: 3,
                    response_format: { type: "json_schema", json_schema: { name: "animal", strict: true, schema } } };
  const valid = (text) => {
    try {
      const v = JSON.parse(text);
      return ["fox", "owl"].includes(v.animal) && Number.isInteger(v.legs) && Object.keys(v).every((k) => k in schema.properties);
    } catch {
      return false;
    }
  };
  const replies = await Promise.all([1, 2, 3, 4].map((seed) => toy.chat.completions.create({ ...request, seed })));
  check("response_format json_schema: every reply is a document of the schema", replies.every((r) => valid(r.choices[0].message.content) &&
        r.choices[0].finish_reason === "stop"), JSON.stringify(replies.map((r) => r.choices[0])));
  const streamed = await streamText(toy, request);
  check("... streamed, the same text", streamed.text === replies[2].choices[0].message.content, JSON.stringify(streamed.text));
  const speculative = await drafting.chat.completions.create(request);
  check("... decoded speculatively, the same text", speculative.choices[0].message.content === replies[2].choices[0].message.content,
        JSON.stringify(speculative.choices[0].message.content));
  const object = await toy.chat.completions.create({ model, messages: user("Hi"), max_tokens: 200, temperature: 1, seed: 1,
                                                     response_format: { type: "json_object" } });
  let parsed = null;
  try {
    parsed = JSON.parse(object.choices[0].message.content);
  } catch {}
  check("response_format json_object: a JSON object", parsed !== null && typeof parsed === "object" && !Array.isArray(parsed) ||
        object.choices[0].finish_reason === "length", JSON.stringify(object.choices[0]));
}

async function concurrency() {
  const prompts = ["fox", "cat", "dog", "owl", "bear", "frog", "duck", "wolf"].map((a) => `Tell me a story about the ${a}.`);
  const ask = (p) => toy.chat.completions.create({ model, messages: user(p), temperature: 0, max_tokens: 40 }).then((r) => r.choices[0].message.content);
  const alone = [];
  for (const p of prompts) alone.push(await ask(p));
  const started = Date.now();
  const together = await Promise.all(prompts.map(ask));
  check("8 concurrent clients on 2 slots all complete, each with its sequential reply", together.every((t, i) => t === alone[i]),
        JSON.stringify(together.map((t, i) => t === alone[i])));
  check("... within 60 s", Date.now() - started < 60000);
}

async function cancelling() {
  // An abort must end a long generation at once, not when it is done. How long the random
  // model (seed 6) writes before a stop id depends on the prompt and on the rounding of the
  // SIMD target (AVX2 here: 369 tokens for "go", 1706 for "walk"; 1150 for "go" on
  // AVX-512): the test takes the first of a few prompts with a long reply.
  const health = async () => (await fetch(`${randomUrl}/health`)).json();
  let request, whole, full;
  for (const word of ["go", "walk", "jump", "run", "read", "swim"]) {
    request = { model: "random", messages: user(word), temperature: 0, max_tokens: 3000 };
    full = Date.now();
    whole = await random.chat.completions.create(request);
    full = Date.now() - full;
    if (whole.usage.completion_tokens > 1000) break;
  }
  check("the random model writes a long reply", whole.usage.completion_tokens > 1000, JSON.stringify(whole.usage));
  const result = await streamText(random, request, (_, n) => n < 5);
  const aborted = Date.now();
  check("a client can abort a stream", result.chunks === 5, JSON.stringify(result));
  let idle = false;
  for (let i = 0; i < 100 && !idle; i++) {
    idle = (await health()).slots_idle === 1;
    if (!idle) await new Promise((r) => setTimeout(r, 10));
  }
  const freed = Date.now() - aborted;
  check(`an aborted stream frees its slot at once (${freed} ms; the whole reply takes ${full} ms)`, idle && freed < Math.min(500, full / 4));
}

async function badInput() {
  const chat = (body, headers) => post(toyUrl, "/v1/chat/completions", body, headers);
  const cases = [
    ["malformed JSON", () => chat("{\"messages\": ["), 400, "not valid JSON"],
    ["a wrong type", () => chat({ messages: user("hi"), max_tokens: "ten" }), 400, "max_tokens"],
    ["an unknown role", () => chat({ messages: [{ role: "wizard", content: "hi" }] }), 400, "unknown role"],
    ["an empty message list", () => chat({ messages: [] }), 400, "non-empty"],
    ["10,000 messages", () => chat({ messages: Array(10000).fill({ role: "user", content: "hi" }) }), 400, "context"],
    ["invalid UTF-8", () => chat(Buffer.concat([Buffer.from('{"messages":[{"role":"user","content":"a'), Buffer.from([0xc3, 0x28]), Buffer.from('"}]}')])), 400, "JSON"],
    ["a prompt longer than the context", () => chat({ messages: user("fox ".repeat(3000)) }), 400, "shorten"],
    ["max_tokens past the context", () => chat({ messages: user("hi"), max_tokens: 5000 }), 400, "asked for"],
    ["a body over the limit", () => chat({ messages: user("x".repeat(2 << 20)) }), 413, "larger"],
    ["a wrong API key", () => chat({ messages: user("hi") }, { Authorization: "Bearer nope" }), 401, "wrong"],
    ["no API key", () => fetch(`${toyUrl}/v1/models`).then(async (r) => ({ status: r.status, json: await r.json() })), 401, "needed"],
    ["an unknown path", () => post(toyUrl, "/v1/nothing", {}), 404, "no such endpoint"],
    ["another model's name", () => chat({ model: "gpt-4o", messages: user("hi") }), 404, "does not exist"],
    ["n > 1", () => chat({ messages: user("hi"), n: 2 }), 400, "\"n\""],
    ["logprobs", () => chat({ messages: user("hi"), logprobs: true }), 400, "logprobs"],
    ["an unsupported penalty", () => chat({ messages: user("hi"), frequency_penalty: 0.5 }), 400, "frequency_penalty"],
    ["an unknown field", () => chat({ messages: user("hi"), temprature: 0.5 }), 400, "temprature"],
    ["a temperature out of range", () => chat({ messages: user("hi"), temperature: -1 }), 400, "temperature"],
    ["an unknown token id", () => post(toyUrl, "/detokenize", { tokens: [5, 99999] }), 400, "outside the vocabulary"],
  ];
  for (const [name, send, status, words] of cases) {
    const r = await send();
    const e = r.json?.error;
    check(`${name}: ${status} with an OpenAI error`, r.status === status && e && typeof e.type === "string" && e.message.includes(words),
          `${r.status} ${JSON.stringify(r.json)}`);
  }
  const health = await fetch(`${toyUrl}/health`);
  check("the server still serves after every bad request", health.status === 200);
  const busy = await Promise.all(Array.from({ length: 3 }, () => post(randomUrl, "/v1/chat/completions", { messages: user("go"), max_tokens: 400 })));
  check("a full queue answers 503 with Retry-After", busy.some((r) => r.status === 503 && r.headers.get("retry-after") === "1"),
        JSON.stringify(busy.map((r) => r.status)));
}

(async () => {
  for (const part of [basics, tools, jsonOutput, concurrency, cancelling, badInput]) {
    try {
      await part();
    } catch (e) {
      check(`${part.name} ran`, false, e.stack ?? String(e));
    }
  }
  console.log(failures === 0 ? "all server checks passed" : `${failures} server checks FAILED`);
  process.exit(failures === 0 ? 0 : 1);
})();

// Time to first token and aggregate decode speed of gemma4 serve for N concurrent
// streaming chats (serve_bench.sh starts the server and runs this once per N).
// Usage: node serve_bench.mjs BASE_URL STREAMS MAX_TOKENS RUNS
// Prints one JSON line: medians over the runs of the streams' median time to first
// token (s) and of the aggregate decode tok/s (tokens after each stream's first, over
// the time from the first first token to the last stream's end).
const [base, streams, maxTokens, runs] = [process.argv[2], ...process.argv.slice(3).map(Number)];
const animals = ["fox", "cat", "dog", "owl", "bear", "frog", "duck", "wolf"];

async function stream(i, run) {
  const start = performance.now();
  const r = await fetch(`${base}/v1/chat/completions`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      messages: [{ role: "user", content: `Run ${run}: tell me a story about the ${animals[i % animals.length]}.` }],
      max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true },
    }),
  });
  if (!r.ok) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
  const decoder = new TextDecoder();
  let first = null, tokens = 0, buffer = "";
  for await (const bytes of r.body) {
    buffer += decoder.decode(bytes, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const data = buffer.slice(6, end);
      buffer = buffer.slice(end + 2);
      if (data === "[DONE]") continue;
      const event = JSON.parse(data);
      if (first === null && event.choices[0]?.delta.content) first = performance.now();
      if (event.usage) tokens = event.usage.completion_tokens;
    }
  }
  return { start, first: first ?? performance.now(), end: performance.now(), tokens };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ttft = [], aggregate = [];
for (let run = 0; run < runs; run++) {
  const results = await Promise.all(Array.from({ length: streams }, (_, i) => stream(i, run)));
  ttft.push(median(results.map((r) => (r.first - r.start) / 1000)));
  const from = Math.min(...results.map((r) => r.first)), to = Math.max(...results.map((r) => r.end));
  aggregate.push(results.reduce((n, r) => n + Math.max(r.tokens - 1, 0), 0) / ((to - from) / 1000));
}
console.log(JSON.stringify({ streams, ttft_s: median(ttft), aggregate_tok_s: median(aggregate) }));

// The Hugging Face Rust tokenizer (npm `tokenizers`) on the inputs tokenizer_bench wrote:
//   node hf_tokenizer_bench.js NODE_MODULES TOKENIZER_JSON RUNS INPUT...
// Prints one JSON line: median load seconds, and per input median encode seconds and ids.
const [modules, tokenizerPath, runsText, ...inputs] = process.argv.slice(2);
const { Tokenizer } = require(require.resolve("tokenizers", { paths: [modules] }));
const fs = require("fs");
const median = (v) => v.sort((a, b) => a - b)[Math.floor(v.length / 2)];
const now = () => Number(process.hrtime.bigint()) / 1e9;
(async () => {
  const runs = Number(runsText);
  const loads = [];
  let tokenizer;
  for (let r = 0; r < runs; ++r) {
    const start = now();
    tokenizer = await Tokenizer.fromFile(tokenizerPath);
    loads.push(now() - start);
  }
  const results = [];
  for (const input of inputs) {
    const text = fs.readFileSync(input, "utf8");
    const times = [];
    let ids = 0;
    for (let r = 0; r < runs; ++r) {
      const start = now();
      ids = (await tokenizer.encode(text)).getIds().length;
      times.push(now() - start);
    }
    results.push({ seconds: median(times), ids });
  }
  console.log(JSON.stringify({ load_seconds: median(loads), inputs: results }));
})();

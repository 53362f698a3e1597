#!/usr/bin/env bash
# The gemma4 tool end to end: synth, info, logits through prefill and through decode
# (which must agree exactly), run (a prompt, a chat, a file of prompts as a batch),
# convert/tokenize/detokenize, and their errors.
# Usage: cli_test.sh PATH_TO_GEMMA4 DEMO_TOKENIZER_JSON
set -uo pipefail
gemma4=$1
demo_tokenizer=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0
passes=0
check() {  # check NAME COMMAND...: the command must succeed
  if "${@:2}" > "$dir/out" 2>&1; then echo "ok: $1"; passes=$((passes + 1)); else echo "FAILED: $1"; cat "$dir/out"; failures=$((failures + 1)); fi
}
check_error() {  # check_error NAME EXPECTED_TEXT COMMAND...: must fail and print EXPECTED_TEXT
  if "${@:3}" > "$dir/out" 2>&1; then
    echo "FAILED: $1 (succeeded)"; failures=$((failures + 1))
  elif grep -qF -- "$2" "$dir/out"; then
    echo "ok: $1"; passes=$((passes + 1))
  else
    echo "FAILED: $1: expected '$2' in:"; cat "$dir/out"; failures=$((failures + 1))
  fi
}

check "synth tiny-e4b" "$gemma4" synth --variant tiny-e4b --seed 3 --shards 2 "$dir/m"
check "info" "$gemma4" info --model "$dir/m"
cp "$dir/out" "$dir/info.txt"
check "info names the SIMD target it chose" grep -qE "^SIMD target: [A-Z0-9_]+ \(chosen at (run|compile) time\), int8 dot product: (AVX-512 VNNI|16-bit pairs|portable)$" "$dir/info.txt"
tokens=2,17,900,5,5,5,1023,0,44,45,46,47,48,49,50,51,52,53,54,55
check "logits by prefill" "$gemma4" logits --model "$dir/m" --tokens $tokens --out "$dir/prefill.f32"
check "logits by decode" "$gemma4" logits --model "$dir/m" --tokens $tokens --out "$dir/decode.f32" --decode
check "prefill and decode logits are identical" cmp "$dir/prefill.f32" "$dir/decode.f32"
check "logits file is [T, vocab] float32" test "$(stat -c %s "$dir/prefill.f32")" -eq $((20 * 1024 * 4))
for kv in f32 int8; do
  check "logits with a $kv KV cache by prefill" "$gemma4" logits --model "$dir/m" --tokens $tokens --kv $kv --out "$dir/prefill-$kv.f32"
  check "logits with a $kv KV cache by decode" "$gemma4" logits --model "$dir/m" --tokens $tokens --kv $kv --out "$dir/decode-$kv.f32" --decode
  check "prefill and decode logits are identical with a $kv KV cache" cmp "$dir/prefill-$kv.f32" "$dir/decode-$kv.f32"
done
check "--kv chooses the cache's format (bf16 by default)" bash -c "! cmp -s '$dir/prefill-f32.f32' '$dir/prefill-int8.f32' && ! cmp -s '$dir/prefill-f32.f32' '$dir/prefill.f32'"
check_error "unknown KV format" "--kv: f16 not in {bf16,f32,int8}" "$gemma4" logits --model "$dir/m" --tokens 2 --kv f16
check "argmax printing" "$gemma4" logits --model "$dir/m" --tokens 2,3
check_error "token outside the vocabulary" "token id 1024 at index 1 is outside the vocabulary" "$gemma4" logits --model "$dir/m" --tokens 2,1024
check_error "negative token" "token id -5" "$gemma4" logits --model "$dir/m" --tokens -5
check_error "malformed token list" "must be an integer, got 'x'" "$gemma4" logits --model "$dir/m" --tokens 2,x
check_error "empty token entry" "must be an integer, got ''" "$gemma4" logits --model "$dir/m" --tokens 2,,3
check_error "unknown variant" "--variant: e9b not in {e2b,e4b,tiny-e2b,tiny-e4b,e2b-assistant,e4b-assistant,tiny-e2b-assistant,tiny-e4b-assistant}" "$gemma4" synth --variant e9b "$dir/x"
check_error "unknown option" "The following arguments were not expected: 1 --temperature" "$gemma4" logits --model "$dir/m" --tokens 2 --temperature 1
check_error "stray argument" "The following argument was not expected: extra" "$gemma4" info --model "$dir/m" extra
check "--opt=value" "$gemma4" logits --model="$dir/m" --tokens=2,3
check "help per subcommand" bash -c "'$gemma4' run --help | grep -q -- '--max-tokens'"
check_error "missing model directory" "not a model directory" "$gemma4" logits --model "$dir/none" --tokens 2
check_error "missing config.json" "config.json: missing or unreadable" "$gemma4" info --model "$dir"

# Text generation on the demo model: tiny-e2b with the trimmed real tokenizer.
check "synth with a tokenizer" "$gemma4" synth --variant tiny-e2b --seed 1 --tokenizer "$demo_tokenizer" "$dir/chat"
run_to() {  # run_to FILE ARGS...: gemma4 run, stdout to FILE, stderr to FILE.err
  local out=$1; shift
  "$gemma4" run --model "$dir/chat" "$@" > "$out" 2> "$out.err"
}
check "run --prompt" run_to "$dir/a" --prompt "Write a haiku." --max-tokens 16 --seed 7
check "summary line" grep -q "prompt tokens | first token .* s | prefill .* tok/s | decode .* tok/s" "$dir/a.err"
check "run again with the seed" run_to "$dir/b" --prompt "Write a haiku." --max-tokens 16 --seed 7
check "same seed, same text" cmp "$dir/a" "$dir/b"
check "run --raw --greedy" run_to "$dir/c" --raw --prompt "Once upon a time" --max-tokens 8 --greedy
check "a reply ends its line" test "$(tail -c 1 "$dir/c" | od -An -c | tr -d ' ')" = '\n'
# A file of prompts as one batch: each line's reply is the one it gets alone.
printf '%s\n' "Write a haiku." "Name three colors." "" '[{"role": "user", "content": "Say hi."}]' '[{"role": "user"' "Tell a story." > "$dir/prompts.txt"
check "run --prompts" run_to "$dir/batch" --prompts "$dir/prompts.txt" --batch 2 --greedy --max-tokens 8
check "batch summary line" grep -qE "^\[4 prompts, up to 2 at once \| [0-9]+ tokens generated in [0-9.]+ s: [0-9.]+ tok/s in all \| [0-9.]+ tok/s per sequence" "$dir/batch.err"
check "one alone" run_to "$dir/alone1" --prompt "Write a haiku." --greedy --max-tokens 8
check "two alone" run_to "$dir/alone2" --prompt "Name three colors." --greedy --max-tokens 8
check "four alone" run_to "$dir/alone4" --prompt "Say hi." --greedy --max-tokens 8
check "six alone" run_to "$dir/alone6" --prompt "Tell a story." --greedy --max-tokens 8
check "a batch gives each prompt the text it gets alone, and a bad line an error" node -e '
  const fs = require("fs"), dir = process.argv[1];
  const replies = fs.readFileSync(dir + "/batch", "utf8").trim().split("\n").map(JSON.parse);
  const by_line = Object.fromEntries(replies.map(r => [r.line, r]));
  for (const line of [1, 2, 4, 6]) {
    const r = by_line[line];
    const alone = fs.readFileSync(dir + "/alone" + line, "utf8");  // a reply that leaves its line open gets a newline
    if (!r || r.text.replace(/\n$/, "") !== alone.replace(/\n$/, "") || !["stop token", "token limit"].includes(r.stop) || !(r.generated_tokens > 0))
      throw new Error("line " + line + ": " + JSON.stringify(r));
  }
  if (!/a JSON array of messages: not valid JSON/.test(by_line[5].error) || replies.length !== 5) throw new Error(JSON.stringify(replies));
' "$dir"
check "run --prompts, one token each" run_to "$dir/batch1" --prompts "$dir/prompts.txt" --batch 1 --greedy --max-tokens 1
check "a reply that ends at its first token is written before its slot is reused" test "$(grep -c '"generated_tokens":1' "$dir/batch1")" -eq 4
check_error "--batch needs --prompts" "--batch requires --prompts" "$gemma4" run --model "$dir/chat" --prompt hi --batch 2
check_error "--prompts with --draft" "--prompts decodes a batch plainly" "$gemma4" run --model "$dir/chat" --prompts "$dir/prompts.txt" --draft "$dir/chat"
# Prompt caches: a later run takes the shared system prompt from the file, and the text is
# the one it gets without a cache.
system="You answer briefly and kindly.$(printf ' Keep to the facts.%.0s' $(seq 12))"
check "run --prompt-cache: a new file" run_to "$dir/pc1" --system "$system" --prompt "Write a haiku." --greedy --max-tokens 8 --prompt-cache "$dir/sys.cache"
check "the first run saves its prompt" grep -qE "prompt cache .*sys.cache: 0 of the prompt's [0-9]+ tokens taken from it; [0-9]+ tokens saved" "$dir/pc1.err"
check "run --prompt-cache: the file reused" run_to "$dir/pc2" --system "$system" --prompt "Name three colors." --greedy --max-tokens 8 --prompt-cache "$dir/sys.cache"
check "the second run takes the system prompt from the file" grep -qE "sys.cache: ([5-9][0-9]|[1-9][0-9][0-9]+) of the prompt's" "$dir/pc2.err"
check "the same prompt without a cache" run_to "$dir/pc3" --system "$system" --prompt "Name three colors." --greedy --max-tokens 8
check "a prompt cache does not change the text" cmp "$dir/pc2" "$dir/pc3"
check "run --raw --prompt-cache: a new file" run_to "$dir/pcr1" --raw --prompt "Once upon a time there was a fox." --greedy --max-tokens 8 --prompt-cache "$dir/raw.cache"
check "run --raw --prompt-cache: the file reused" run_to "$dir/pcr2" --raw --prompt "Once upon a time there was an owl." --greedy --max-tokens 8 --prompt-cache "$dir/raw.cache"
check "the raw prompt's shared start comes from the file" grep -qE "raw.cache: [1-9][0-9]* of the prompt's" "$dir/pcr2.err"
check "the same raw prompt without a cache" run_to "$dir/pcr3" --raw --prompt "Once upon a time there was an owl." --greedy --max-tokens 8
check "a prompt cache does not change a raw prompt's text" cmp "$dir/pcr2" "$dir/pcr3"

# --grammar: every answer is a sentence of the grammar, which the synthetic model never writes.
printf '%s\n' 'root ::= "{\"answer\": " ("\"yes\"" | "\"no\"") ", \"score\": " [0-9]{1,2} "}"' > "$dir/answer.gbnf"
answer_pattern='^\{"answer": "(yes|no)", "score": [0-9]{1,2}\}$'
check "run --grammar" run_to "$dir/g1" --prompt "Yes or no?" --max-tokens 40 --seed 3 --grammar "$dir/answer.gbnf"
check "the answer is a sentence of the grammar" grep -qE "$answer_pattern" "$dir/g1"
check "it ends with a stop token" grep -q "stop token\]" "$dir/g1.err"
check "run --raw --grammar" run_to "$dir/g2" --raw --prompt "Once upon a time" --max-tokens 40 --greedy --grammar "$dir/answer.gbnf"
check "the raw text is a sentence of the grammar" grep -qE "$answer_pattern" "$dir/g2"
check "run --chat --grammar" bash -c "printf 'Yes?\nNo?\n' | '$gemma4' run --model '$dir/chat' --chat --seed 5 --max-tokens 40 --grammar '$dir/answer.gbnf' > '$dir/g3' 2> '$dir/g3.err'"
check "every chat answer is a sentence of the grammar" test "$(grep -cE "$answer_pattern" "$dir/g3")" -eq 2
check "a grammar too short for the token budget stops at the limit" run_to "$dir/g4" --prompt "Yes or no?" --max-tokens 3 --greedy --grammar "$dir/answer.gbnf"
check "... and says so" grep -q "token limit\]" "$dir/g4.err"
printf '%s\n' '{"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}, "score": {"type": "integer"}}, "required": ["answer", "score"]}' > "$dir/answer.json"
check "run --json-schema" run_to "$dir/g5" --prompt "Yes or no?" --max-tokens 60 --seed 4 --json-schema "$dir/answer.json"
check "the answer is a document of the schema" bash -c "tr -d ' \n\t' < '$dir/g5' | grep -qE '^\{\"answer\":\"(yes|no)\",\"score\":-?[0-9]+\}$'"
printf '%s\n' '{"type": "string", "format": "email"}' > "$dir/bad.json"
check_error "a schema keyword that is not supported" "bad.json: #: the keyword 'format' is not supported" "$gemma4" run --model "$dir/chat" --prompt x --json-schema "$dir/bad.json"
printf 'root ::= "a" missing\n' > "$dir/bad.gbnf"
check_error "a grammar with an undefined rule" "bad.gbnf: rule 'missing' is used but never defined" "$gemma4" run --model "$dir/chat" --prompt x --grammar "$dir/bad.gbnf"
check_error "a missing grammar file" "--grammar: File does not exist" "$gemma4" run --model "$dir/chat" --prompt x --grammar "$dir/none.gbnf"
check_error "--grammar with --think" "--think excludes --grammar" "$gemma4" run --model "$dir/chat" --prompt x --think --grammar "$dir/answer.gbnf"
check_error "a prompt cache of another KV format" "a prompt cache of another model or KV format: kv_format \"bf16\" (this session: \"int8\")" "$gemma4" run --model "$dir/chat" --system "$system" --prompt hi --kv int8 --prompt-cache "$dir/sys.cache"
check_error "--prompt-cache needs --prompt" "--prompt-cache requires --prompt" "$gemma4" run --model "$dir/chat" --chat --prompt-cache "$dir/sys.cache"
check "run with int8 weights on 1 thread" run_to "$dir/i8a" --raw --prompt "Once upon a time" --max-tokens 8 --greedy --weights int8 --threads 1
check "run with int8 weights on 2 threads" run_to "$dir/i8b" --raw --prompt "Once upon a time" --max-tokens 8 --greedy --weights int8 --threads 2
check "threads do not change the text" cmp "$dir/i8a" "$dir/i8b"
check "run with int4 weights" run_to "$dir/i4" --prompt "Hi" --max-tokens 4 --weights int4
check "summary gives weight GB/s" grep -q "decode .* tok/s = .* GB/s of weights" "$dir/i4.err"
check "convert to a packed int4 model" "$gemma4" convert --model "$dir/chat" --weights int4 "$dir/chat-int4"
check "the packed model holds config, tokenizer and weights" test -f "$dir/chat-int4/config.json" -a -f "$dir/chat-int4/tokenizer.json" -a -f "$dir/chat-int4/generation_config.json"
rm -rf "$dir/chat-source" && mv "$dir/chat" "$dir/chat-source"  # the packed model needs nothing of it
check "run the packed model" "$gemma4" run --model "$dir/chat-int4" --raw --prompt "Once upon a time" --max-tokens 8 --greedy
check "info on the packed model" "$gemma4" info --model "$dir/chat-int4"
cp "$dir/out" "$dir/packed-info.txt"
check "info says packed" grep -q "^packed int4 model: prefix" "$dir/packed-info.txt"
check "logits from the packed model" "$gemma4" logits --model "$dir/chat-int4" --tokens 2,17,900 --out "$dir/packed.f32"
check "tokenize with the packed model" bash -c "printf 'Hello world' | '$gemma4' tokenize --model '$dir/chat-int4' > '$dir/ids-packed'"
check_error "a packed model in another format" "a packed int4 model cannot be loaded as int8" "$gemma4" run --model "$dir/chat-int4" --prompt hi --weights int8
check_error "re-quantizing a packed model" "already a packed int4 model; re-quantizing" "$gemma4" convert --model "$dir/chat-int4" --weights int8 "$dir/again"
check_error "convert to bf16" "--weights: bf16 not in {int8,int4}" "$gemma4" convert --model "$dir/chat-source" --weights bf16 "$dir/x"
check_error "convert into a model directory" "already holds a model (model.safetensors)" "$gemma4" convert --model "$dir/chat-source" --weights int8 "$dir/chat-int4"
mv "$dir/chat-source" "$dir/chat"
# Speculative decoding with an assistant: the same text, with a drafts line in the summary.
check "synth tiny-e2b-assistant" "$gemma4" synth --variant tiny-e2b-assistant --seed 4 "$dir/draft"
check "synth tiny-e4b-assistant" "$gemma4" synth --variant tiny-e4b-assistant --seed 4 "$dir/draft4"
check "run --draft" run_to "$dir/d" --raw --prompt "Once upon a time" --max-tokens 8 --greedy --draft "$dir/draft" --draft-max 4
check "--draft gives the same text" cmp "$dir/c" "$dir/d"
check "summary gives the acceptance" grep -qE "drafts: [0-9]+ of [0-9]+ accepted \([0-9]+%\) \| [0-9.]+ tokens per target pass" "$dir/d.err"
check "chat with --draft" bash -c "printf 'Hi\nAgain\n' | '$gemma4' run --model '$dir/chat' --chat --max-tokens 6 --draft '$dir/draft' 2> '$dir/dchat.err'"
check "convert an assistant to a packed int4 one" "$gemma4" convert --model "$dir/draft" --weights int4 "$dir/draft-int4"
check "run --draft with the packed assistant" run_to "$dir/d4" --raw --prompt "Once upon a time" --max-tokens 8 --greedy --draft "$dir/draft-int4" --draft-max 4
check "--draft with a packed assistant gives the same text" cmp "$dir/c" "$dir/d4"
check_error "re-quantizing a packed assistant" "already a packed int4 assistant" "$gemma4" convert --model "$dir/draft-int4" --weights int8 "$dir/again"
check "draft logits" "$gemma4" logits --model "$dir/chat" --draft "$dir/draft" --tokens 2,17,900,5 --out "$dir/draft.f32"
check "draft logits file is [T - 1, vocab] float32" test "$(stat -c %s "$dir/draft.f32")" -eq $((3 * 1024 * 4))
check_error "an assistant of another target" "this is the tiny-e4b-assistant assistant, which drafts for tiny-e4b; the model is tiny-e2b" "$gemma4" run --model "$dir/chat" --prompt hi --draft "$dir/draft4"
check_error "a target model as the assistant" "not a Gemma 4 assistant" "$gemma4" run --model "$dir/chat" --prompt hi --draft "$dir/m"
check_error "draft logits need two tokens" "--draft needs at least two --tokens" "$gemma4" logits --model "$dir/chat" --draft "$dir/draft" --tokens 2
check_error "unknown weight format" "--weights: q4_0 not in {bf16,int4,int8}" "$gemma4" run --model "$dir/chat" --prompt hi --weights q4_0
check_error "negative thread count" "--threads: Value -2 not in range 0 to 1024" "$gemma4" run --model "$dir/chat" --prompt hi --threads -2
check_error "a token limit past int" "--max-tokens" "$gemma4" run --model "$dir/chat" --prompt hi --max-tokens 4294967297
check "an unknown command exits with 2 and names the commands" bash -c "'$gemma4' frobnicate > '$dir/usage' 2>&1; test \$? -eq 2 && grep -q \"unknown command 'frobnicate'; the commands are run, convert\" '$dir/usage'"
check "a usage error exits with 2" bash -c "'$gemma4' run --model '$dir/chat' --max-tokens lots > /dev/null 2>&1; test \$? -eq 2"
check "--help exits with 0" "$gemma4" run --help
check_error "a missing tools file is named once" "$dir/no-tools.json: missing or unreadable" bash -c "'$gemma4' run --model '$dir/chat' --prompt hi --tools '$dir/no-tools.json' 2>&1 | sed 's|$dir/no-tools.json: $dir/no-tools.json|doubled|'; exit \${PIPESTATUS[0]}"
check "chat: /help and /reset answer" bash -c "printf '/help\n/reset\n/exit\n' | '$gemma4' run --model '$dir/chat' --chat 2> '$dir/help.err'; grep -q '/reset starts over' '$dir/help.err' && grep -q 'the conversation starts over' '$dir/help.err'"
check "chat: piped replies each end their line" bash -c "printf 'Hi\nAgain\n' | '$gemma4' run --model '$dir/chat' --chat --max-tokens 3 --seed 2 > '$dir/two-replies' 2> /dev/null; test \$(wc -l < '$dir/two-replies') -ge 2"
check "chat: a full context drops the oldest turns, with a notice" bash -c "printf 'one two three\nfour five six\nseven eight nine\nten eleven\n' | '$gemma4' run --model '$dir/chat' --chat --max-tokens 6 --max-context 48 --greedy 2> '$dir/drop.err' > /dev/null; grep -q 'the context was full: the [0-9]* oldest turns were dropped' '$dir/drop.err' && test \$(grep -c 'prompt tokens' '$dir/drop.err') -eq 4"
check "chat: Ctrl-C cancels a reply, not the chat" bash -c "
  mkfifo '$dir/chat-in'
  '$gemma4' run --model '$dir/chat' --chat --max-tokens 5000 --max-context 6000 --greedy < '$dir/chat-in' > /dev/null 2> '$dir/interrupt.err' & pid=\$!
  exec 3> '$dir/chat-in'
  echo Hi >&3; sleep 1; kill -INT \$pid; sleep 0.2; echo /exit >&3; exec 3>&-
  wait \$pid && grep -q 'prompt tokens' '$dir/interrupt.err'"
# In a terminal (script(1) gives it one), the chat edits lines with libedit: Ctrl-C at
# the prompt drops the line typed so far and the chat goes on; lines go to the history file.
if command -v script > /dev/null && ldd "$gemma4" | grep -q libedit; then
  check "chat in a terminal: Ctrl-C at the prompt drops the line, the history is kept" bash -c "
    export XDG_STATE_HOME='$dir/state'
    mkfifo '$dir/tty-in'
    script -qfc \"'$gemma4' run --model '$dir/chat' --chat --max-tokens 3 --seed 2\" '$dir/tty.out' < '$dir/tty-in' > /dev/null & pid=\$!
    exec 3> '$dir/tty-in'
    wait_for() { for i in \$(seq 1 300); do grep -qF \"\$1\" '$dir/tty.out' 2> /dev/null && return 0; sleep 0.1; done; echo \"no '\$1' in:\"; cat '$dir/tty.out'; return 1; }
    wait_for 'Ctrl-D ends' && printf 'abc\\003' >&3 && wait_for '(/exit or Ctrl-D ends the chat)' &&
      printf 'Hi\\n' >&3 && wait_for 'prompt tokens' && printf '/exit\\n' >&3
    ok=\$?; exec 3>&-; wait \$pid
    test \$ok -eq 0 && grep -qx Hi '$dir/state/gemma4/chat_history' && ! grep -q abc '$dir/state/gemma4/chat_history'"
fi
check_error "no prompt and no chat" "give one of --prompt TEXT, --prompts FILE and --chat" "$gemma4" run --model "$dir/chat"

# The chat template: the prompt of a list of messages, as text and as ids.
cat > "$dir/messages.json" << 'JSON'
[{"role": "system", "content": "Be brief."},
 {"role": "user", "content": "Weather in Paris?"},
 {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
 {"role": "tool", "tool_call_id": "c1", "content": "18 degrees"}]
JSON
cat > "$dir/tools.json" << 'JSON'
[{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
  "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
JSON
printf '%s\n%s\n%s\n%s\n%s' '<bos><|turn>system' '<|think|>' \
  'Be brief.<|tool>declaration:get_weather{description:<|"|>Weather in a city.<|"|>,parameters:{properties:{city:{type:<|"|>STRING<|"|>}},required:[<|"|>city<|"|>],type:<|"|>OBJECT<|"|>}}<tool|><turn|>' \
  '<|turn>user' 'Weather in Paris?<turn|>' > "$dir/template.expected"
printf '\n%s\n%s\n' '<|turn>model' '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>}<tool_call|><|tool_response>response:get_weather{value:<|"|>18 degrees<|"|>}<tool_response|><|channel>thought' >> "$dir/template.expected"
check "template" bash -c "'$gemma4' template --model '$dir/chat' --messages '$dir/messages.json' --tools '$dir/tools.json' --thinking > '$dir/template.txt'"
check "template renders the current E2B template's prompt" cmp "$dir/template.txt" "$dir/template.expected"
check "template --ids" bash -c "'$gemma4' template --model '$dir/chat' --messages '$dir/messages.json' --tools '$dir/tools.json' --thinking --ids > '$dir/template.ids'"
check "the ids decode to the text" bash -c "'$gemma4' detokenize --model '$dir/chat' < '$dir/template.ids' | cmp - '$dir/template.expected'"
check "template --no-generation-prompt" bash -c "'$gemma4' template --model '$dir/chat' --messages '$dir/messages.json' --tools '$dir/tools.json' --no-generation-prompt | tail -c 17 | grep -qF '<tool_response|>'"
mkdir -p "$dir/first-release"
cp "$dir/chat"/* "$dir/first-release/"
cp "$(dirname "$0")/data/chat_templates/gemma-4-first-release.jinja" "$dir/first-release/chat_template.jinja"
printf '[{"role": "user", "content": "Hi"}]' > "$dir/hi.json"
check "a directory's own template: the first release writes no newline after <|think|>" bash -c \
  "'$gemma4' template --model '$dir/first-release' --messages '$dir/hi.json' --thinking | grep -qxF '<|think|><turn|>'"
check_error "the first release's tool format is refused" "first-release chat template's tool format" "$gemma4" template --model "$dir/first-release" --messages "$dir/messages.json"
{ printf '{# edited #}'; cat "$(dirname "$0")/data/chat_templates/gemma-4-E2B-it-2026-07-09.jinja"; } > "$dir/first-release/chat_template.jinja"
check "an unknown template is rendered as the closest revision, with a warning" bash -c \
  "'$gemma4' template --model '$dir/first-release' --messages '$dir/hi.json' 2>&1 >/dev/null | grep -q 'unrecognised chat template.*2026-07-09'"
printf '[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "cat.png"}}]}]' > "$dir/image.json"
check_error "template: an image is refused" "image_url part: this library runs the text model only" "$gemma4" template --model "$dir/chat" --messages "$dir/image.json"
printf '[{"role": "user", ' > "$dir/broken.json"
check_error "template: broken JSON" "broken.json: not valid JSON" "$gemma4" template --model "$dir/chat" --messages "$dir/broken.json"
printf '[{"name": "f"}]' > "$dir/bad-tools.json"
check_error "run: a tools file in the wrong form" "bad-tools.json: tool 0" "$gemma4" run --model "$dir/chat" --prompt hi --tools "$dir/bad-tools.json"
check "run with tools" run_to "$dir/tools-run" --prompt "Weather in Paris?" --tools "$dir/tools.json" --max-tokens 8 --seed 3
# A forced tool call: the synthetic model writes a call that fits the tool's schema.
cat > "$dir/forecast.json" << 'JSON'
[{"type": "function", "function": {"name": "get_forecast", "parameters": {"type": "object",
  "properties": {"hourly": {"type": "boolean"}, "city": {"enum": ["Paris", "Oslo"]}}, "required": ["city", "hourly"]}}}]
JSON
check "run --tool-choice NAME: a call that fits the schema" bash -c "echo sunny | '$gemma4' run --model '$dir/chat' --prompt 'Weather?' --tools '$dir/forecast.json' --tool-choice get_forecast --max-tokens 80 --seed 2 > /dev/null 2> '$dir/forced.err'; grep -qE '^\[tool call call_1\] get_forecast \{\"city\":\"(Paris|Oslo)\",\"hourly\":(true|false)\}' '$dir/forced.err'"
check_error "--tool-choice naming a tool not declared" '"nope" is not one of the declared tools' "$gemma4" run --model "$dir/chat" --prompt hi --tools "$dir/forecast.json" --tool-choice nope
check_error "--tool-choice without --tools" "--tool-choice requires --tools" "$gemma4" run --model "$dir/chat" --prompt hi --tool-choice required
check "chat on stdin, with /reset" bash -c "printf 'Hi\n\n/reset\nAgain\n' | '$gemma4' run --model '$dir/chat' --chat --max-tokens 4 2> '$dir/chat.err'"
check "two chat turns answered" test "$(grep -c 'prompt tokens' "$dir/chat.err")" -eq 2
check "bad chat line reported, chat goes on" bash -c "printf 'ok\n\xff\xfe\nok\n' | '$gemma4' run --model '$dir/chat' --chat --max-tokens 2 2> '$dir/chat.err'; grep -q 'not valid UTF-8' '$dir/chat.err' && test \$(grep -c 'prompt tokens' '$dir/chat.err') -eq 2"
check "tokenize" bash -c "printf 'Hello world' | '$gemma4' tokenize --model '$dir/chat' > '$dir/ids'"
check "detokenize round trip" bash -c "test \"\$('$gemma4' detokenize --model '$dir/chat' --skip-special < '$dir/ids')\" = 'Hello world'"
check_error "prompt longer than the context" "only 8 of the context's 8 positions are free" "$gemma4" run --model "$dir/chat" --prompt "$(printf 'word %.0s' {1..50})" --max-context 8
check_error "invalid UTF-8 prompt" "not valid UTF-8" "$gemma4" run --model "$dir/chat" --prompt $'caf\xe9'
check_error "invalid UTF-8 to tokenize" "not valid UTF-8: byte 2" bash -c "printf 'ab\xff' | '$gemma4' tokenize --model '$dir/chat'"
check_error "unknown id to detokenize" "token id 5000 is not in the vocabulary" bash -c "echo 2,5000 | '$gemma4' detokenize --model '$dir/chat'"
check_error "missing tokenizer.json" "no tokenizer.json" "$gemma4" run --model "$dir/m" --prompt hi
check_error "bad sampling setting" "top-p must be in (0, 1]" "$gemma4" run --model "$dir/chat" --prompt hi --top-p 2
check_error "prompt and chat together" "--prompt excludes --chat" "$gemma4" run --model "$dir/chat" --prompt hi --chat
sed 's/": 1023$/": 5000/' "$demo_tokenizer" > "$dir/big-tokenizer.json"
check_error "tokenizer larger than the model" "model.vocab has 5001 pieces, more than the model's vocabulary of 1024" "$gemma4" synth --variant tiny-e2b --tokenizer "$dir/big-tokenizer.json" "$dir/x2"
readme="$(cd "$(dirname "$0")/.." && pwd)/README.md"
check "README names every option of run --help" bash -c "for o in \$('$gemma4' run --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
  [ \"\$o\" = --help ] || grep -q -- \"\$o\" '$readme' || { echo \"README lacks \$o\"; exit 1; }; done"
echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ]

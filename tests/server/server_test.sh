#!/usr/bin/env bash
# gemma4 serve end to end, on loopback: the OpenAI SDK's checks (server_test.cjs), the
# chat page in headless Chromium (page_test.cjs), and a clean stop on SIGTERM.
# Usage: server_test.sh PATH_TO_GEMMA4 TOY_MODEL_DIR (its assistant beside it: DIR-assistant)
# Exit 77 (skipped) when the npm clients cannot be fetched.
set -uo pipefail
gemma4=$1
toy=$2
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null && wait "$pid" 2> /dev/null; done
  rm -rf "$dir"
}
trap cleanup EXIT

# The clients, pinned by package.json, installed into the user's cache once.
clients="${GEMMA4_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gemma4}/server-clients"
if ! cmp -s "$here/package.json" "$clients/package.json" || [ ! -d "$clients/node_modules/openai" ]; then
  mkdir -p "$clients" && cp "$here/package.json" "$clients/"
  if ! (cd "$clients" && timeout 300 npm install --no-audit --no-fund --loglevel=error > /dev/null); then
    rm -f "$clients/package.json"
    echo "SKIPPED: npm could not install the OpenAI SDK and Playwright"
    exit 77
  fi
fi
export NODE_PATH="$clients/node_modules"

# start NAME ARGS...: a server on a free port; sets URL once it has printed its address.
start() {
  local name=$1
  shift
  "$gemma4" serve --port 0 "$@" > "$dir/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do
    URL=$(grep -o "http://127.0.0.1:[0-9]*" "$dir/$name.log" | head -1)
    [ -n "$URL" ] && return 0
    kill -0 "${pids[-1]}" 2> /dev/null || break
    sleep 0.1
  done
  echo "FAILED: the $name server did not start"; cat "$dir/$name.log"; exit 1
}

"$gemma4" synth --variant tiny-e2b --seed 6 --tokenizer "$toy/tokenizer.json" "$dir/random" > /dev/null || exit 1
start toy --model "$toy" --parallel 2 --api-key test-key --max-body-mb 1 --max-context 1024
toy_url=$URL toy_pid=${pids[-1]}
start random --model "$dir/random" --alias random --parallel 1 --max-queue 1 --kv f32
random_url=$URL random_pid=${pids[-1]}
grep -q "slots of 4096 tokens (f32 KV cache)" "$dir/random.log" || { echo "FAILED: the random server's address line does not name its f32 KV cache"; cat "$dir/random.log"; exit 1; }
start draft --model "$toy" --draft "$toy-assistant" --parallel 1
draft_url=$URL

status=0
TOY_URL=$toy_url RANDOM_URL=$random_url DRAFT_URL=$draft_url API_KEY=test-key GEMMA4=$gemma4 TOY_DIR=$toy timeout 300 node "$here/server_test.cjs" || status=1
out=${GEMMA4_TEST_OUTPUT:-$dir}
timeout 120 node "$here/page_test.cjs" "$toy_url" test-key "$out/chat-page.png" || status=1

# Errors before serving: each named, exit 1.
refused() {  # refused NAME EXPECTED_TEXT ARGS...
  if timeout 60 "$gemma4" serve "${@:3}" > "$dir/refused.log" 2>&1; then
    echo "FAILED: $1 (it served)"; status=1
  elif grep -qF -- "$2" "$dir/refused.log"; then
    echo "ok: $1"
  else
    echo "FAILED: $1: expected '$2' in:"; cat "$dir/refused.log"; status=1
  fi
}
refused "a port in use is named" "cannot listen on 127.0.0.1:${toy_url##*:}" --model "$toy" --port "${toy_url##*:}"
refused "a missing model directory is named" "$dir/nothing" --model "$dir/nothing" --port 0
refused "--draft needs one slot" "give --parallel 1" --model "$toy" --draft "$toy-assistant" --parallel 2

# --prompt-cache: a slot starts from the file, and a request sharing its system prompt
# takes that from it, with gemma4 run's text.
sys="You tell short animal stories to children at bedtime. Keep them gentle."
"$gemma4" run --model "$toy" --system "$sys" --prompt "Tell me a story about the fox." --max-tokens 1 --prompt-cache "$dir/sys.cache" > /dev/null 2>&1 ||
  { echo "FAILED: writing a prompt cache"; exit 1; }
start cached --model "$toy" --parallel 1 --prompt-cache "$dir/sys.cache"
want=$("$gemma4" run --model "$toy" --system "$sys" --prompt "Tell me a story about the owl." --greedy --max-tokens 24 2> /dev/null)
curl -s "$URL/v1/chat/completions" -H 'Content-Type: application/json' -d "{\"messages\": [{\"role\": \"system\", \"content\": \"$sys\"},
  {\"role\": \"user\", \"content\": \"Tell me a story about the owl.\"}], \"temperature\": 0, \"max_tokens\": 24}" > "$dir/cached.json"
if WANT="$want" node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const cached = r.usage.prompt_tokens_details.cached_tokens;
  if (!(cached >= 40)) throw new Error("cached_tokens " + cached);
  if (r.choices[0].message.content.trim() !== process.env.WANT.trim()) throw new Error(JSON.stringify(r.choices[0].message.content));
' "$dir/cached.json"; then
  echo "ok: a slot started from --prompt-cache takes the shared system prompt from it, with gemma4 run's text"
else
  echo "FAILED: --prompt-cache slots"; cat "$dir/cached.json"; status=1
fi
refused "a prompt cache of another KV format is named" "sys.cache: a prompt cache of another model or KV format" --model "$toy" --port 0 --prompt-cache "$dir/sys.cache" --kv int8
# SIGTERM while a stream is being written: the stream ends with an error event, the
# server exits cleanly, nothing hangs.
curl -sN "$random_url/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"messages": [{"role": "user", "content": "go"}], "max_tokens": 3000, "temperature": 0, "stream": true}' > "$dir/cut.sse" &
curl_pid=$!
for _ in $(seq 100); do [ -s "$dir/cut.sse" ] && break; sleep 0.05; done
kill -TERM "$random_pid"
for _ in $(seq 50); do kill -0 "$random_pid" 2> /dev/null || break; sleep 0.1; done
if kill -0 "$random_pid" 2> /dev/null || kill -0 "$curl_pid" 2> /dev/null; then
  echo "FAILED: SIGTERM during a stream: the server or the stream still runs after 5 s"; status=1
else
  wait "$random_pid"; code=$?
  if [ $code -eq 0 ] && grep -q "shutting down" "$dir/cut.sse" && tail -1 "$dir/cut.sse" | grep -q "^$" && grep -q "data: \[DONE\]" "$dir/cut.sse"; then
    echo "ok: SIGTERM during a stream ends it with an error event and stops the server"
  else
    echo "FAILED: SIGTERM during a stream: exit $code, stream:"; tail -3 "$dir/cut.sse"; status=1
  fi
fi

# SIGTERM: the server stops cleanly, at once.
kill -TERM "$toy_pid"
for _ in $(seq 50); do kill -0 "$toy_pid" 2> /dev/null || break; sleep 0.1; done
if kill -0 "$toy_pid" 2> /dev/null; then
  echo "FAILED: the server did not stop within 5 s of SIGTERM"; status=1
else
  wait "$toy_pid"; code=$?
  if [ $code -eq 0 ] && grep -q "gemma4 serve: stopped" "$dir/toy.log"; then echo "ok: SIGTERM stops the server cleanly"; else echo "FAILED: exit $code on SIGTERM"; cat "$dir/toy.log"; status=1; fi
fi
exit $status

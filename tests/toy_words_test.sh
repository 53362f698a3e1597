#!/usr/bin/env bash
# The trained toy model writes words of its corpus: at least 90% of the words `gemma4 run`
# writes (its defaults: int8, sampling, here seeded) on five fixed prompts, some unlike
# any request it was trained on, occur in the corpus (tests/data/toy-corpus-words.txt).
#   toy_words_test.sh GEMMA4_CLI TOY_MODEL_DIR WORDS_FILE
set -euo pipefail
cli=$1 model=$2 words=$3
prompts=("Tell me a story about the fox." "Write a story about a brave owl." "What did the bear do in the forest?"
         "Tell me about the sea." "Hello! Who are you?")
written=$(mktemp)
trap 'rm -f "$written"' EXIT
for prompt in "${prompts[@]}"; do
  text=$("$cli" run --model "$model" --prompt "$prompt" --seed 1 --max-tokens 120 2> /dev/null)
  printf '%s\n' "$prompt -> $text"
  printf '%s\n' "$text" | tr 'A-Z' 'a-z' | grep -o "[a-z']\+" >> "$written" || true
done
total=$(wc -l < "$written")
known=$(grep -c -x -F -f "$words" "$written" || true)
echo "$known of $total words occur in the corpus"
[ "$total" -ge 100 ] || { echo "FAIL: only $total words written"; exit 1; }
[ $((known * 10)) -ge $((total * 9)) ] || { echo "FAIL: under 90%"; exit 1; }

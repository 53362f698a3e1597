#!/usr/bin/env bash
# The gemma4 tool end to end: synth, info, logits through prefill and through decode
# (which must agree exactly), and its errors. Usage: cli_test.sh PATH_TO_GEMMA4
set -uo pipefail
gemma4=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0
check() {  # check NAME COMMAND...: the command must succeed
  if "${@:2}" > "$dir/out" 2>&1; then echo "ok: $1"; else echo "FAILED: $1"; cat "$dir/out"; failures=$((failures + 1)); fi
}
check_error() {  # check_error NAME EXPECTED_TEXT COMMAND...: must fail and print EXPECTED_TEXT
  if "${@:3}" > "$dir/out" 2>&1; then
    echo "FAILED: $1 (succeeded)"; failures=$((failures + 1))
  elif grep -qF -- "$2" "$dir/out"; then
    echo "ok: $1"
  else
    echo "FAILED: $1: expected '$2' in:"; cat "$dir/out"; failures=$((failures + 1))
  fi
}

check "synth tiny-e4b" "$gemma4" synth --variant tiny-e4b --seed 3 --shards 2 "$dir/m"
check "info" "$gemma4" info --model "$dir/m"
tokens=2,17,900,5,5,5,1023,0,44,45,46,47,48,49,50,51,52,53,54,55
check "logits by prefill" "$gemma4" logits --model "$dir/m" --tokens $tokens --out "$dir/prefill.f32"
check "logits by decode" "$gemma4" logits --model "$dir/m" --tokens $tokens --out "$dir/decode.f32" --decode
check "prefill and decode logits are identical" cmp "$dir/prefill.f32" "$dir/decode.f32"
check "logits file is [T, vocab] float32" test "$(stat -c %s "$dir/prefill.f32")" -eq $((20 * 1024 * 4))
check "argmax printing" "$gemma4" logits --model "$dir/m" --tokens 2,3
check_error "token outside the vocabulary" "token id 1024 at index 1 is outside the vocabulary" "$gemma4" logits --model "$dir/m" --tokens 2,1024
check_error "negative token" "token id -5" "$gemma4" logits --model "$dir/m" --tokens -5
check_error "malformed token list" "must be an integer, got 'x'" "$gemma4" logits --model "$dir/m" --tokens 2,x
check_error "empty token entry" "must be an integer, got ''" "$gemma4" logits --model "$dir/m" --tokens 2,,3
check_error "unknown variant" "unknown variant 'e9b'" "$gemma4" synth --variant e9b "$dir/x"
check_error "unknown option" "unknown option --temperature" "$gemma4" logits --model "$dir/m" --tokens 2 --temperature 1
check_error "missing model directory" "not a model directory" "$gemma4" logits --model "$dir/none" --tokens 2
check_error "missing config.json" "config.json: missing or unreadable" "$gemma4" info --model "$dir"
echo "$((15 - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]

#!/usr/bin/env bash
# Builds gemma4 and generates text offline: writes a synthetic tiny-e2b checkpoint (random
# weights, no download) with the demo tokenizer (the real Gemma tokenizer trimmed to the
# tiny vocabulary), packs it into an int4 model directory as one would for a device, and
# runs `gemma4 run` on that. Random weights give meaningless text; the point is the whole
# path: conversion, tokenizer, chat template, prefill, sampling, streaming.
#   bash examples/quickstart.sh ["your prompt"]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/cmake/install-deps.sh"
cmake -S "$root" -B "$root/build" -G Ninja > /dev/null
cmake --build "$root/build" --target gemma4_cli
model=$root/build/models/demo-tiny-e2b
[ -f "$model/tokenizer.json" ] ||
  "$root/build/gemma4" synth --variant tiny-e2b --seed 1 --tokenizer "$root/examples/data/demo-tokenizer.json" "$model"
# As a device gets it: packed once into a directory that needs nothing else.
[ -f "$model-int4/model.safetensors" ] || "$root/build/gemma4" convert --model "$model" --weights int4 "$model-int4"
"$root/build/gemma4" run --model "$model-int4" --prompt "${1:-Write a haiku about the sea.}" --max-tokens 48 --seed 1
echo
echo "(random weights: the text above is meaningless. For real answers, download google/gemma-4-E2B-it"
echo " and run: $root/build/gemma4 run --model /path/to/gemma-4-E2B-it --chat)"

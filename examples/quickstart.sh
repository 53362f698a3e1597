#!/usr/bin/env bash
# Builds gemma4 and generates text offline with the toy pair in examples/data: a tiny-e2b
# model (the real E2B topology at small dims) and its assistant, trained on this machine
# by examples/train/train_toy_pair.py on little animal stories written for the project.
# It packs the model into an int8 directory, as one would for a device, and runs
# `gemma4 run` on that, decoding speculatively with the assistant. A toy: it tells short
# stories about animals and nothing else.
#   bash examples/quickstart.sh ["your prompt"]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/cmake/install-deps.sh"
cmake -S "$root" -B "$root/build" -G Ninja > /dev/null
cmake --build "$root/build" --target gemma4_cli
model=$root/build/models/toy-e2b-int8
# As a device gets it: packed once into a directory that needs nothing else (a fraction of a second).
rm -rf "$model"
"$root/build/gemma4" convert --model "$root/examples/data/toy-e2b" --weights int8 "$model" > /dev/null
"$root/build/gemma4" run --model "$model" --draft "$root/examples/data/toy-e2b-assistant" \
  --prompt "${1:-Tell me a story about the fox.}" --max-tokens 160 --seed 1
echo
echo "(a toy model trained here on a small corpus of animal stories. For real answers, download"
echo " google/gemma-4-E2B-it and run: $root/build/gemma4 run --model /path/to/gemma-4-E2B-it --chat)"

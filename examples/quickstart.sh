#!/usr/bin/env bash
# Builds gemma4, writes a synthetic tiny-e2b checkpoint (random weights, no download)
# and loads it. Text generation arrives with the forward pass; until then this shows
# the loader at work.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/cmake/install-deps.sh"
cmake -S "$root" -B "$root/build" -G Ninja > /dev/null
cmake --build "$root/build" --target gemma4_cli
model=$root/build/models/tiny-e2b
[ -f "$model/config.json" ] || "$root/build/gemma4" synth --variant tiny-e2b --seed 1 "$model"
"$root/build/gemma4" info --model "$model"

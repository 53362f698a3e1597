#!/usr/bin/env bash
# Installs the Debian 12 packages gemma4 builds and tests with, plus any packages named
# as arguments; skips what is present.
set -euo pipefail
packages=(g++ cmake ninja-build libhwy-dev libfmt-dev libboost1.81-dev nlohmann-json3-dev catch2 libcli11-dev pkg-config libcpp-httplib-dev libedit-dev "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"

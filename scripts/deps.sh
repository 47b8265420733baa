#!/usr/bin/env bash
# Installs the Debian packages guild needs, only when one is missing.
# Works on a brand-new machine: no package lists, nothing installed.
# `deps.sh fuzz` adds what the fuzz targets need (clang and libFuzzer).
set -euo pipefail

packages=(
    build-essential cmake pkg-config git
    libnats-dev liblmdb-dev lmdb-utils libmsgpack-dev libuv1-dev libsodium-dev
    libjansson-dev libjemalloc-dev check libsubunit-dev nats-server
    clang-format cppcheck
)
if [ "${1:-}" = fuzz ]; then
    packages+=(clang libclang-rt-dev)
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# Runs Ferrocast all-in-one with embedded defaults: SRT on :9000, HTTP on 127.0.0.1:8080,
# data under ./data. Extra arguments go to `ferrocast up` (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
install_debian_packages "${BUILD_PACKAGES[@]}"
exec cargo run --release --locked -p ferrocast -- up "$@"

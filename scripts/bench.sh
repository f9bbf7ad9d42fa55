#!/usr/bin/env bash
# `make bench`: every benchmark of the project, each printing ratios against a baseline
# measured in the same run. Benchmarks are added here as their capabilities land.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --bins --quiet
for b in scripts/bench.d/*.sh; do
  [ -e "$b" ] || continue
  echo "== $(basename "$b" .sh)"
  "$b"
done

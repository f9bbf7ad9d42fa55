#!/usr/bin/env bash
# A push round of the operator's xDS server: a snapshot for each of the 2,000 sidecars
# of the translate benchmark's synthetic mesh, as the server asks for them after a
# change (translated in the interception shape, packed, interned), on one core.
# Baseline, measured in the same run: translating the same sidecars with one
# translator and nothing else. Also printed: the memory the snapshot source keeps
# between snapshots for the current model (its translator and packed resources),
# as the bytes freed when a new model replaces it; and what the 2,000 snapshots the
# server holds for its proxies take, as the bytes freed when they are dropped.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet -p trellis-sources --example snapshot_bench
pin=()
if command -v taskset >/dev/null; then pin=(taskset -c 0); fi
out=$("${pin[@]}" target/release/examples/snapshot_bench)
get() { awk -v k="$1" '$1 == k {print $2}' <<<"$out"; }
awk -v n="$(get proxies)" -v base="$(get translate_all_ms)" -v push="$(get push_round_ms)" \
  -v each="$(get push_per_proxy_ms)" -v kept="$(get translator_kept_mb)" \
  -v held="$(get snapshots_held_mb)" 'BEGIN {
  printf "baseline: translate %d sidecars, one translator: %8.1f ms\n", n, base
  printf "push round: a snapshot for each:              %8.1f ms (%.2f ms per sidecar, %.2fx baseline)\n", push, each, push / base
  printf "kept for the current model between snapshots: %8.1f MB\n", kept
  printf "held in the %d snapshots served:             %8.1f MB\n", n, held
}'

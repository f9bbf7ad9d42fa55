#!/usr/bin/env bash
# The operator at scale: 1,000 mesh namespaces x 10 ServiceAccounts in the Kubernetes
# API simulator, the real `trellis operator` (release build) issuing every identity.
# Baseline, measured in the same run: the time to create the same number of Secrets
# directly against the simulator (32 concurrent requests).
# Goals (issue 7): 1 API write per identity, operator peak RSS <= 150 MB.
# BENCH_OPERATOR_NAMESPACES / BENCH_OPERATOR_ACCOUNTS shrink the scenario.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet -p trellis --bin trellis
cargo build --release --quiet -p trellis-controller --example operator_bench
namespaces="${BENCH_OPERATOR_NAMESPACES:-1000}"
accounts="${BENCH_OPERATOR_ACCOUNTS:-10}"
rate=100 # the operator's default --rotation-rate
out=$(target/release/examples/operator_bench --trellis target/release/trellis \
  --namespaces "$namespaces" --accounts "$accounts" --rotation-rate "$rate")
get() { awk -v k="$1" '$1 == k {print $2}' <<<"$out"; }
awk -v n="$(get identities)" -v base="$(get baseline_secs)" -v issue="$(get issue_secs)" \
  -v w="$(get writes_per_identity)" -v rss="$(get peak_rss_kib)" \
  -v rot="$(get rotation_secs)" -v rate="$(get rotation_rate)" 'BEGIN {
  printf "identities:                                %d (%s namespaces)\n", n, "'"$namespaces"'"
  printf "baseline: create %d Secrets directly:      %.2fs\n", n, base
  printf "operator start -> all identities exist:    %.2fs (%.2fx baseline)\n", issue, issue / base
  printf "API writes per identity:                   %.3f (goal 1) %s\n", w, (w <= 1.0001 ? "OK" : "ABOVE GOAL")
  printf "operator peak RSS:                         %.1f MB (goal <= 150 MB) %s\n", rss / 1024, (rss / 1024 <= 150 ? "OK" : "ABOVE GOAL")
  printf "root rotation, all reissued:               %.2fs at %d/s (%.2fx the rate limit floor of %.0fs)\n", rot, rate, rot / (n / rate), n / rate
}'

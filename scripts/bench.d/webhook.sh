#!/usr/bin/env bash
# Admission webhook: injection latency at 200 concurrent AdmissionReviews over HTTPS
# keep-alive connections (load client: operator/webhook/examples/webhook_bench.rs), as a
# ratio against a baseline measured in the same run — the same client, TLS and JSON
# round trip on a review that needs no work (/validate of a Pod) — and RSS over
# 100,000 injection requests. Goal (issue 8): injection p99 <= 5 ms, no memory growth.
# Client and server share the process and this machine's cores: absolute figures
# include the client's own CPU time.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet -p trellis-webhook --example webhook_bench
out=$(target/release/examples/webhook_bench --requests 100000 --concurrency 200)
val() { awk -v k="$1" '$1 == k {print $2}' <<<"$out"; }
awk -v bp50="$(val baseline_p50_us)" -v bp99="$(val baseline_p99_us)" \
    -v ip50="$(val inject_p50_us)" -v ip99="$(val inject_p99_us)" \
    -v brps="$(val baseline_rps)" -v irps="$(val inject_rps)" \
    -v warm="$(val rss_inject_warm_kib)" -v end="$(val rss_end_kib)" 'BEGIN {
  printf "baseline (no-op review)  p50 %.2f ms  p99 %.2f ms  %d req/s\n", bp50 / 1000, bp99 / 1000, brps
  printf "injection                p50 %.2f ms  p99 %.2f ms  %d req/s\n", ip50 / 1000, ip99 / 1000, irps
  printf "ratio injection/baseline p50 %.2f  p99 %.2f\n", ip50 / bp50, ip99 / bp99
  printf "injection p99 goal <= 5 ms: %s\n", (ip99 <= 5000 ? "OK" : "ABOVE GOAL")
  # With 200 requests always in flight, latency is mostly queueing: 200 / throughput.
  printf "200 in flight / injection throughput = %.2f ms (the queueing floor on this machine)\n", 200000 / irps
  growth = end - warm
  printf "RSS after 10%% of injections %.1f MB, after 100000: %.1f MB (growth %.1f MB, %.1f%%)\n", warm / 1024, end / 1024, growth / 1024, 100 * growth / warm
}'

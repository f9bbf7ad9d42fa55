#!/usr/bin/env bash
# Admission webhook: injection latency at 200 concurrent AdmissionReviews over HTTPS
# keep-alive connections, against the real `trellis operator` (release build) running
# on the Kubernetes API simulator. Load client: operator/webhook/examples/webhook_bench.rs,
# in its own process on two threads. Baseline, measured in the same run: the same client,
# TLS and HTTP on a review that needs no work (/validate of a Pod).
# Goal (issue 8): injection p99 <= 5 ms, no memory growth over 100,000 requests.
# With 200 requests always in flight, mean latency is 200 / throughput (Little's law),
# so the goal needs >= 40,000 injections/s on the two cores client and server share.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet -p trellis --bin trellis
cargo build --release --quiet -p trellis-webhook --example webhook_bench
out=$(target/release/examples/webhook_bench --trellis target/release/trellis \
  --requests 100000 --concurrency 200)
val() { awk -v k="$1" '$1 == k {print $2}' <<<"$out"; }
awk -v bp50="$(val baseline_p50_us)" -v bp99="$(val baseline_p99_us)" \
    -v ip50="$(val inject_p50_us)" -v ip99="$(val inject_p99_us)" \
    -v bp90="$(val baseline_p90_us)" -v bp999="$(val baseline_p999_us)" \
    -v ip90="$(val inject_p90_us)" -v ip999="$(val inject_p999_us)" \
    -v brps="$(val baseline_rps)" -v irps="$(val inject_rps)" \
    -v bcpu="$(val baseline_server_cpu_us)" -v icpu="$(val inject_server_cpu_us)" \
    -v warm="$(val rss_inject_warm_kib)" -v end="$(val rss_end_kib)" 'BEGIN {
  printf "baseline (no-op review)  p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  %d req/s  operator CPU %.1f us/req\n", bp50 / 1000, bp90 / 1000, bp99 / 1000, bp999 / 1000, brps, bcpu
  printf "injection                p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  %d req/s  operator CPU %.1f us/req\n", ip50 / 1000, ip90 / 1000, ip99 / 1000, ip999 / 1000, irps, icpu
  printf "ratio injection/baseline p50 %.2f  p99 %.2f  operator CPU %.2f\n", ip50 / bp50, ip99 / bp99, icpu / bcpu
  printf "injection p99 goal <= 5 ms: %s\n", (ip99 <= 5000 ? "OK" : "ABOVE GOAL")
  printf "200 in flight / injection throughput = %.2f ms (the mean latency this throughput allows)\n", 200000 / irps
  growth = end - warm
  printf "operator RSS after 10%% of injections %.1f MB, after 100000: %.1f MB (growth %.1f MB, %.1f%%)\n", warm / 1024, end / 1024, growth / 1024, 100 * growth / warm
}'

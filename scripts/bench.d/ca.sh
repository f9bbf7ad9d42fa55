#!/usr/bin/env bash
# CA issuing throughput on one core against `openssl speed ecdsap256` signs/s measured
# in the same run, plus peak RSS after issuing a stream of 100,000 certificates.
# Goal (issue 3): ratio >= 0.25 (keygen + signature per cert, so ~0.5 is the ceiling),
# RSS < 100 MB.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet -p trellis-ca --example bench
bench_bin=target/release/examples/bench
openssl_bin="${OPENSSL_BIN:-openssl}"

# One core each, one after the other, so neither steals cycles from the other.
pin=()
if command -v taskset >/dev/null; then pin=(taskset -c 0); fi

ours=$("${pin[@]}" "$bench_bin" --seconds 3 --stream 100000)
certs_per_sec=$(awk '$1 == "certs_per_sec" {print $2}' <<<"$ours")
rss_kib=$(awk '$1 == "peak_rss_kib" {print $2}' <<<"$ours")
stream_secs=$(awk '$1 == "stream_secs" {print $2}' <<<"$ours")

openssl_signs=$("${pin[@]}" "$openssl_bin" speed -seconds 3 ecdsap256 2>/dev/null |
  awk '/ecdsa \(nistp256\)/ {print $(NF-1)}')
if [ -z "$openssl_signs" ]; then
  echo "could not read openssl speed output" >&2
  exit 1
fi

awk -v c="$certs_per_sec" -v o="$openssl_signs" -v r="$rss_kib" -v s="$stream_secs" 'BEGIN {
  ratio = c / o
  printf "workload certs issued/s (1 core):   %d\n", c
  printf "openssl ecdsap256 signs/s (1 core): %d\n", o
  printf "ratio certs/s / openssl signs/s:    %.3f (goal >= 0.25) %s\n", ratio, (ratio >= 0.25 ? "OK" : "BELOW GOAL")
  printf "peak RSS after 100000 certs:        %.1f MB in %.1fs (goal < 100 MB) %s\n", r / 1024, s, (r / 1024 < 100 ? "OK" : "ABOVE GOAL")
}'

#!/usr/bin/env bash
# xDS server: time from a snapshot change until N simulated ADS clients (mTLS, ACKing like
# Envoy) have ACKed, for N = 100 and 1,000, and the server's RSS; printed against an
# encode-only baseline measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/../.."
# 1,000 streams on each side of loopback need more than the usual 1,024 descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
  echo "xds bench: RLIMIT_NOFILE is $(ulimit -n); need >= 4096 for 1,000 proxies" >&2
  exit 1
fi
cargo build --release --quiet -p trellis-xds --example xds_bench
./target/release/examples/xds_bench 100 1000

#!/usr/bin/env bash
# `make demo`: the bundled Online Boutique (examples/boutique) on a live mesh of real
# Envoys on this machine. `make setup` has installed Envoy into .venv/ (the Makefile
# target depends on it). Builds `trellis`, then `trellis demo` starts the CA, the xDS
# server, one Envoy per workload and the ingress gateway, runs the demo apps, drives
# traffic through the gateway and prints a report checked against Envoy's own stats.
# It then keeps the mesh running until Ctrl-C; with DEMO_ONCE=1 it exits after the
# report, with status 0 only when every expectation held.
set -euo pipefail
cd "$(dirname "$0")/.."
export ENVOY_BIN="${ENVOY_BIN:-$PWD/.venv/bin/envoy-real}"
if [ ! -x "$ENVOY_BIN" ]; then
  echo "make demo: no Envoy at $ENVOY_BIN: run \`make setup\`" >&2
  exit 1
fi
echo "make demo: building trellis" >&2
cargo build --quiet --bin trellis
exec ./target/debug/trellis demo -f examples/boutique --state-dir .trellis/demo "$@"

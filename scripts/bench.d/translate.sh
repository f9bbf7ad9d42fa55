#!/usr/bin/env bash
# Translation of a synthetic mesh (1,000 services x 3 ports, 10,000 endpoints, 500
# VirtualServices, 500 DestinationRules, 200 AuthorizationPolicies) on one core:
# model build, one sidecar (cold and with its namespace's scope already computed),
# all 2,000 sidecars with one translator, output bytes, and the ratio of the translate
# time to merely protobuf-encoding the same (distinct) output, measured in the same run;
# then all sidecars again in the warm heap (the first run also pays for the process's
# fresh pages), without and with MeshConfig's access log, alternately (best of three
# each): the cost of the access log as a ratio.
# Goals (issue 4): one sidecar <= 5 ms, all 2,000 <= 2 s.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet -p trellis-translate --example translate_bench
pin=()
if command -v taskset >/dev/null; then pin=(taskset -c 0); fi
out=$("${pin[@]}" target/release/examples/translate_bench)
get() { awk -v k="$1" '$1 == k {print $2}' <<<"$out"; }
awk -v model="$(get build_model_ms)" -v cold="$(get one_sidecar_cold_ms)" \
  -v warm="$(get one_sidecar_warm_ms)" -v all="$(get all_proxies_ms)" -v n="$(get proxies)" \
  -v clusters="$(get one_sidecar_clusters)" -v one_bytes="$(get one_sidecar_bytes)" \
  -v distinct="$(get distinct_output_bytes)" -v sent="$(get sent_output_bytes)" \
  -v encode="$(get encode_distinct_ms)" -v ratio="$(get ratio_translate_all_to_encode)" \
  -v errors="$(get translation_errors)" -v logged="$(get all_proxies_access_log_ms)" \
  -v again="$(get all_proxies_again_ms)" 'BEGIN {
  printf "build the model:                         %8.1f ms\n", model
  printf "one sidecar, cold (computes its scope):  %8.2f ms (%d clusters, %.1f MB)\n", cold, clusters, one_bytes / 1e6
  printf "one sidecar, scope shared:               %8.3f ms (goal <= 5 ms) %s\n", warm, (warm <= 5 ? "OK" : "ABOVE GOAL")
  printf "all %d sidecars, one core:             %8.1f ms (goal <= 2000 ms) %s\n", n, all, (all <= 2000 ? "OK" : "ABOVE GOAL")
  printf "output: distinct resources               %8.1f MB; as sent to every proxy %.1f GB\n", distinct / 1e6, sent / 1e9
  printf "protobuf-encode the distinct output:     %8.1f ms\n", encode
  printf "ratio translate all / encode:            %8.2f\n", ratio
  printf "translation errors:                      %8d\n", errors
  printf "all sidecars again, warm heap:            %8.1f ms\n", again
  printf "the same with access logs (JSON):        %8.1f ms, %.2f x without\n", logged, logged / again
}'

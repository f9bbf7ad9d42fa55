# The commands the README names. Each installs what it needs first (setup).
SHELL := /bin/bash
VENV := $(CURDIR)/.venv
export ENVOY_BIN := $(VENV)/bin/envoy-real
export KUBECTL_BIN := $(VENV)/bin/kubectl
export OPENSSL_BIN := $(shell command -v openssl)
CARGO ?= cargo
# `make image`: the container image of manifests/ (Dockerfile). Not part of `make test`.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' operator/Cargo.toml | head -n 1)
IMAGE ?= ghcr.io/trellis-mesh/trellis:$(VERSION)
CONTAINER_ENGINE ?= $(shell command -v docker || command -v podman)

.PHONY: setup build test demo bench crds fmt lint image

setup:
	@./scripts/setup.sh

build:
	$(CARGO) build --workspace --bins

# Every test of the workspace; the end-to-end ones find Envoy and kubectl through ENVOY_BIN and KUBECTL_BIN.
test: setup
	$(CARGO) test --workspace --no-fail-fast

# The main job: universal mode running the bundled example mesh.
demo: setup
	@./scripts/demo.sh

# Prints figures as ratios against baselines measured in the same run.
bench: setup
	@./scripts/bench.sh

# Regenerates crds/ from the Rust types.
crds:
	$(CARGO) run --quiet --bin trellis -- crds --out crds

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The trellis image (static binary, iptables for proxy-init), tagged $(IMAGE).
# Local cluster: make image IMAGE=localhost:5001/trellis:dev, push it, kubectl apply -k manifests/overlays/local.
image:
	@test -n "$(CONTAINER_ENGINE)" || { echo "make image: neither docker nor podman found (set CONTAINER_ENGINE)" >&2; exit 1; }
	$(CONTAINER_ENGINE) build -f Dockerfile -t $(IMAGE) .

#
# The `trellis` image: one static binary for the operator (`trellis operator`, run by
# manifests/base/deployment.yaml) and the injected init container (`trellis
# proxy-init`, which needs iptables). Build with `make image` (IMAGE=... to name it).
#
# The ENTRYPOINT must stay the binary: the injector gives the init container only
# `args` (`proxy-init --proxy-uid=1337 ...`), no command.

ARG RUST_VERSION=1.95

# --- builder: a static musl binary (ring's C/asm parts built with musl-gcc) -------------
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
COPY . .
# (No RUN --mount caches, so the legacy builder and podman build it as well as BuildKit.)
# Without the line tables the workspace keeps for local backtraces, and stripped:
# ~45 MB instead of ~230 MB.
RUN set -eu; \
    target="$(uname -m)-unknown-linux-musl"; \
    CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols \
      cargo build --release --locked -p trellis --bin trellis --target "$target"; \
    cp "target/$target/release/trellis" /trellis
# Refuse a dynamically linked result, and make sure it runs.
RUN if readelf -d /trellis | grep -q NEEDED; then echo "trellis is not static" >&2; exit 1; fi \
 && /trellis --version

# --- runtime: slim Debian with iptables for proxy-init --------------------------------
FROM docker.io/library/debian:bookworm-slim
# iptables brings iptables-restore (nft backend) and iptables-legacy-restore;
# proxy-init uses the first one found on PATH.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /trellis /usr/local/bin/trellis
# Non-root by default (the operator Deployment also sets runAsUser 65532); the
# injected init container sets UID 0 with only NET_ADMIN/NET_RAW for its iptables call.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/trellis"]
CMD ["--help"]

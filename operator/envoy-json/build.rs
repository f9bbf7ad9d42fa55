//! Compiles the Envoy .proto files the translator emits into one FileDescriptorSet
//! (with protox: pure Rust, no protoc). The .proto sources ship inside the
//! `envoy-types` crate, so the same version that generated our prost structs
//! describes them here.
use std::path::{Path, PathBuf};

/// Messages reachable from these files (and their imports) can be transcoded.
const ROOTS: &[&str] = &[
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/config/listener/v3/listener.proto",
    "envoy/config/route/v3/route.proto",
    "envoy/config/cluster/v3/cluster.proto",
    "envoy/config/endpoint/v3/endpoint.proto",
    "envoy/service/discovery/v3/discovery.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/transport_sockets/tls/v3/secret.proto",
    "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto",
    "envoy/extensions/transport_sockets/proxy_protocol/v3/upstream_proxy_protocol.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
    "envoy/extensions/filters/network/rbac/v3/rbac.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/filters/http/rbac/v3/rbac.proto",
    "envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto",
    "envoy/extensions/filters/network/ext_authz/v3/ext_authz.proto",
    "envoy/extensions/filters/http/jwt_authn/v3/config.proto",
    "envoy/extensions/filters/http/fault/v3/fault.proto",
    "envoy/extensions/filters/http/cors/v3/cors.proto",
    "envoy/extensions/filters/http/health_check/v3/health_check.proto",
    "envoy/extensions/filters/listener/original_dst/v3/original_dst.proto",
    "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
    "envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto",
    "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/extensions/access_loggers/file/v3/file.proto",
    "envoy/extensions/access_loggers/stream/v3/stream.proto",
];

/// Files that name a type relatively as `common.dynamic_forward_proxy.v3.X`. That
/// resolves inside `envoy.extensions.filters.common` (or `.clusters.common`) once
/// such a package is loaded too, and fails; Envoy's own build never loads both.
/// They are compiled from a copy with the name made absolute.
const RELATIVE_COMMON: &[&str] = &[
    "envoy/extensions/filters/http/dynamic_forward_proxy/v3/dynamic_forward_proxy.proto",
    "envoy/extensions/clusters/dynamic_forward_proxy/v3/cluster.proto",
];

/// Include roots inside envoy-types' `proto/` folder.
const INCLUDES: &[&str] = &[
    "data-plane-api",
    "xds",
    "protoc-gen-validate",
    "googleapis",
    "cel-spec/proto",
    "opentelemetry-proto",
    "client_model",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=TRELLIS_ENVOY_PROTO_DIR");
    let proto_dir = find_proto_dir();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    // The copies go first on the include path, so they are the files compiled.
    let overlay = out.join("proto-overlay");
    for file in RELATIVE_COMMON {
        let source = proto_dir.join("data-plane-api").join(file);
        let text = std::fs::read_to_string(&source)
            .unwrap_or_else(|e| panic!("reading {}: {e}", source.display()));
        let text = text.replace(
            " common.dynamic_forward_proxy.v3.",
            " .envoy.extensions.common.dynamic_forward_proxy.v3.",
        );
        let target = overlay.join(file);
        std::fs::create_dir_all(target.parent().expect("a folder")).expect("overlay folder");
        std::fs::write(&target, text).expect("overlay file");
    }
    let includes: Vec<PathBuf> = std::iter::once(overlay)
        .chain(INCLUDES.iter().map(|i| proto_dir.join(i)))
        .filter(|p| p.is_dir())
        .collect();
    let mut compiler = protox::Compiler::new(&includes).expect("protox include paths");
    compiler.include_source_info(false).include_imports(true);
    compiler
        .open_files(ROOTS.iter().chain(RELATIVE_COMMON))
        .unwrap_or_else(|e| panic!("compiling Envoy protos from {}: {e:?}", proto_dir.display()));
    let set = compiler.file_descriptor_set();
    std::fs::write(
        out.join("envoy_descriptors.bin"),
        prost::Message::encode_to_vec(&set),
    )
    .expect("write descriptor set");
}

/// `TRELLIS_ENVOY_PROTO_DIR`, else `<cargo home>/registry/src/*/envoy-types-<version>/proto`,
/// else a vendored copy next to the workspace (`vendor/envoy-types-*`).
fn find_proto_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TRELLIS_ENVOY_PROTO_DIR") {
        return PathBuf::from(dir);
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let wanted = format!("envoy-types-{ENVOY_TYPES_VERSION}");
    let registry = cargo_home.join("registry").join("src");
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(&registry)
        .into_iter()
        .flatten()
        .flatten()
        .map(|index| index.path().join(&wanted).join("proto"))
        .filter(|p| p.is_dir())
        .collect();
    candidates.sort();
    candidates.pop().unwrap_or_else(|| {
        panic!(
            "cannot find {wanted}/proto under {} (run `cargo fetch`, or set TRELLIS_ENVOY_PROTO_DIR)",
            registry.display()
        )
    })
}

/// Must match the envoy-types version in the workspace Cargo.toml.
const ENVOY_TYPES_VERSION: &str = "0.7.7";

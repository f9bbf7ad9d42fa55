//! Every kind of the invalid corpus (operator/api/tests/invalid) applied with the
//! real kubectl through the validating webhook: each is refused, and every error
//! the offline validation reports for it appears in kubectl's message as `path: message`.

mod common;

use common::Cluster;
use std::collections::BTreeSet;
use std::path::PathBuf;

#[test]
fn the_invalid_corpus_is_refused_with_every_error() {
    let cluster = Cluster::start();
    cluster.namespace("shop", &[]);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../api/tests/invalid");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    inputs.sort();
    let mut denied_kinds: BTreeSet<String> = BTreeSet::new();
    for input in inputs {
        let text = std::fs::read_to_string(&input).unwrap();
        // One object per file (the multi-document load-error file is the loader's test).
        if text.matches("\nkind:").count() + usize::from(text.starts_with("kind:")) != 1 {
            continue;
        }
        let expected = std::fs::read_to_string(input.with_extension("expected")).unwrap();
        let out = cluster.kubectl.output(&["create", "-f", "-"], Some(&text));
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let name = input.file_name().unwrap().to_string_lossy().to_string();
        assert!(!out.status.success(), "{name} was admitted");
        if !stderr.contains("denied the request") {
            // Refused before admission by the CRD schema (an enum, an unknown field).
            assert!(
                stderr.contains("invalid") || stderr.contains("strict decoding"),
                "{name}: {stderr}"
            );
            continue;
        }
        for line in expected.lines() {
            let (object, error) = line.split_once(": ").expect("object: path: message");
            // kubectl drops the namespace of a cluster-scoped object before sending it.
            if error.starts_with("metadata.namespace: ") && object.matches('/').count() == 1 {
                continue;
            }
            assert!(
                stderr.contains(&format!("denied the request: {object} is invalid: "))
                    && stderr.contains(error),
                "{name}: {error:?} missing from kubectl's message: {stderr}"
            );
        }
        denied_kinds.insert(
            text.split("kind:")
                .nth(1)
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .trim()
                .to_string(),
        );
    }
    assert_eq!(
        denied_kinds.into_iter().collect::<Vec<_>>(),
        [
            "AuthorizationPolicy",
            "DestinationRule",
            "Gateway",
            "MeshConfig",
            "PeerAuthentication",
            "RequestAuthentication",
            "ServiceEntry",
            "Sidecar",
            "VirtualService"
        ]
    );
}

//! The real kubectl against a simulator: apply, get, label, annotate, patch, describe, delete.

mod common;

use kube_sim::{Kubectl, TestServer};

const CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: web}
data:
  mode: blue
";

const OTHER_NAMESPACE: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: team-b
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: elsewhere
  namespace: team-b
  labels: {app: api}
data:
  mode: red
";

const EVENT: &str = "apiVersion: v1
kind: Event
metadata: {name: settings.1}
involvedObject: {apiVersion: v1, kind: ConfigMap, name: settings, namespace: default}
reason: Synced
message: settings are in sync
type: Normal
source: {component: trellis}
count: 1
";

#[test]
fn apply_get_label_annotate_patch_describe_delete() {
    let server = TestServer::start().expect("server starts");
    let k = Kubectl::new(server.kubeconfig_path());

    let out = k.apply(CONFIGMAP);
    assert!(out.contains("configmap/settings created"), "{out}");
    let changed = CONFIGMAP.replace("mode: blue", "mode: green");
    let out = k.apply(&changed);
    assert!(out.contains("configmap/settings configured"), "{out}");
    assert_eq!(
        k.run(&[
            "get",
            "configmap",
            "settings",
            "-o",
            "jsonpath={.data.mode}"
        ]),
        "green"
    );
    let yaml = k.run(&["get", "cm", "settings", "-o", "yaml"]);
    assert!(
        yaml.contains("kubectl.kubernetes.io/last-applied-configuration"),
        "{yaml}"
    );
    assert!(yaml.contains("uid:"), "{yaml}");

    k.apply(OTHER_NAMESPACE);
    let all = k.run(&["get", "configmaps", "-A"]);
    assert!(
        all.contains("team-b") && all.contains("elsewhere") && all.contains("settings"),
        "{all}"
    );
    let selected = k.run(&["get", "cm", "-A", "-l", "app=api", "-o", "name"]);
    assert_eq!(selected.trim(), "configmap/elsewhere");
    let none = k.run(&["get", "cm", "-l", "app=api", "-o", "name"]);
    assert_eq!(
        none.trim(),
        "",
        "label selector is scoped to the default namespace"
    );

    k.run(&["label", "cm", "settings", "tier=frontend"]);
    k.run(&["annotate", "cm", "settings", "owner=team-a"]);
    k.run(&[
        "patch",
        "cm",
        "settings",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"merge":"1"}}"#,
    ]);
    k.run(&[
        "patch",
        "cm",
        "settings",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/data/json","value":"2"}]"#,
    ]);
    k.run(&[
        "patch",
        "cm",
        "settings",
        "--type",
        "strategic",
        "-p",
        r#"{"data":{"strategic":"3"}}"#,
    ]);
    let data = k.run(&["get", "cm", "settings", "-o", "jsonpath={.metadata.labels.tier} {.metadata.annotations.owner} {.data.merge}{.data.json}{.data.strategic}"]);
    assert_eq!(data, "frontend team-a 123");

    let described = k.run(&["describe", "configmap", "settings"]);
    assert!(
        described.contains("Name:") && described.contains("settings"),
        "{described}"
    );
    assert!(described.contains("tier=frontend"), "{described}");

    // Events print as the API server prints them, and describe shows the object's events.
    let uid = k.run(&["get", "cm", "settings", "-o", "jsonpath={.metadata.uid}"]);
    k.apply(&EVENT.replace(
        "namespace: default}",
        &format!("namespace: default, uid: {uid}}}"),
    ));
    let events = k.run(&["get", "events"]);
    let header: Vec<&str> = events
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{events}"
    );
    assert!(
        events
            .lines()
            .nth(1)
            .unwrap_or("")
            .contains("Normal   Synced   configmap/settings   settings are in sync"),
        "{events}"
    );
    let described = k.run(&["describe", "configmap", "settings"]);
    assert!(
        described.contains("Synced") && described.contains("settings are in sync"),
        "{described}"
    );

    let err = common::fails(
        &k,
        &["patch", "cm", "missing", "--type", "merge", "-p", "{}"],
        None,
    );
    assert!(err.contains(r#"configmaps "missing" not found"#), "{err}");

    let out = k.run(&["delete", "cm", "settings"]);
    assert!(out.contains(r#"configmap "settings" deleted"#), "{out}");
    let err = common::fails(&k, &["get", "cm", "settings"], None);
    assert!(err.contains(r#"configmaps "settings" not found"#), "{err}");
}

#[test]
fn kubectl_without_a_client_certificate_must_log_in() {
    let server = TestServer::start().expect("server starts");
    let kubeconfig = std::fs::read_to_string(server.kubeconfig_path()).expect("kubeconfig");
    // A bearer token the server does not know instead of the client certificate (with no
    // credentials at all kubectl would prompt for a user name).
    let anonymous: String = kubeconfig
        .lines()
        .filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data"))
        .map(|l| {
            if l.trim() == "user:" {
                let indent = l.len() - l.trim_start().len();
                format!("{l}\n{}token: not-a-valid-token\n", " ".repeat(indent + 2))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert_ne!(
        anonymous, kubeconfig,
        "the kubeconfig carries client credentials"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("anonymous");
    std::fs::write(&path, anonymous).expect("write kubeconfig");
    let out = Kubectl::new(&path).output(&["get", "configmaps"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l == "error: You must be logged in to the server (the server has asked for the client to provide credentials)"),
        "{err}"
    );
}

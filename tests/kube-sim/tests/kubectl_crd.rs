//! The real kubectl with a CustomResourceDefinition: discovery of the new kind, printer
//! columns, Strict field validation, server-side apply, finalizers, wait for a condition.

mod common;

use kube_sim::{Kubectl, TestServer};

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Color, type: string, jsonPath: .spec.color}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1, maximum: 10}
              color: {type: string, enum: [red, blue]}
          status:
            type: object
            properties:
              conditions:
                type: array
                items:
                  type: object
                  properties:
                    type: {type: string}
                    status: {type: string}
"#;

const WIDGET: &str = "apiVersion: example.com/v1
kind: Widget
metadata:
  name: small
  labels: {team: a}
spec:
  size: 2
  color: red
";

#[test]
fn custom_resources_through_kubectl() {
    let server = TestServer::start().expect("server starts");
    let k = Kubectl::new(server.kubeconfig_path());
    k.apply(CRD);
    k.run(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=10s",
    ]);

    let out = k.apply(WIDGET);
    assert!(out.contains("widget.example.com/small created"), "{out}");
    let table = k.run(&["get", "widgets"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "SIZE", "COLOR", "AGE"], "{table}");
    assert!(
        table.lines().nth(1).unwrap_or("").starts_with("small"),
        "{table}"
    );
    assert!(table.contains(" 2 ") && table.contains("red"), "{table}");
    assert_eq!(
        k.run(&["get", "wd", "-l", "team=a", "-o", "name"]).trim(),
        "widget.example.com/small"
    );

    // kubectl's default --validate=strict makes the server reject unknown fields.
    let unknown = WIDGET
        .replace("name: small", "name: odd")
        .replace("color: red", "color: red\n  flavour: mint");
    let err = common::fails(&k, &["apply", "-f", "-"], Some(&unknown));
    assert!(
        err.contains(r#"strict decoding error: unknown field "spec.flavour""#),
        "{err}"
    );
    // `create` fails exactly as against the real API server.
    let err = common::fails(&k, &["create", "-f", "-"], Some(&unknown));
    assert_eq!(
        err.trim_end(),
        r#"Error from server (BadRequest): error when creating "STDIN": Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field "spec.flavour""#
    );
    // Server-side apply of an undeclared field: structured-merge-diff's bare 500.
    let err = common::fails(&k, &["apply", "--server-side", "-f", "-"], Some(&unknown));
    assert_eq!(
        err.trim_end(),
        "Error from server: failed to create typed patch object (default/odd; example.com/v1, Kind=Widget): .spec.flavour: field not declared in schema"
    );
    let invalid = WIDGET
        .replace("name: small", "name: huge")
        .replace("size: 2", "size: 99");
    let err = common::fails(&k, &["apply", "-f", "-"], Some(&invalid));
    assert!(
        err.contains("Widget \"huge\" is invalid") && err.contains("spec.size"),
        "{err}"
    );

    // Server-side apply with a field manager of its own.
    let ssa = WIDGET.replace("size: 2", "size: 3");
    let err = common::fails(
        &k,
        &[
            "apply",
            "--server-side",
            "--field-manager=tester",
            "-f",
            "-",
        ],
        Some(&ssa),
    );
    assert!(
        err.contains(r#"conflict with "kubectl-client-side-apply""#) && err.contains(".spec.size"),
        "{err}"
    );
    let out = k.run_stdin(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=tester",
            "-f",
            "-",
        ],
        &ssa,
    );
    assert!(out.contains("serverside-applied"), "{out}");
    assert_eq!(
        k.run(&["get", "widget", "small", "-o", "jsonpath={.spec.size}"]),
        "3"
    );
    let managers = k.run(&[
        "get",
        "widget",
        "small",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(managers.contains("tester"), "{managers}");

    // wait --for=condition, satisfied by a status update.
    let waiter = common::spawn(
        &k,
        &[
            "wait",
            "--for=condition=Ready",
            "widget/small",
            "--timeout=20s",
        ],
    );
    k.run(&[
        "patch",
        "widget",
        "small",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
    ]);
    let out = waiter.wait();
    assert!(
        out.status.success(),
        "wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A finalizer blocks the delete until it is removed.
    k.run(&[
        "patch",
        "widget",
        "small",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    let deleter = common::spawn(&k, &["delete", "widget", "small", "--timeout=20s"]);
    let mut marked = false;
    for _ in 0..200 {
        let ts = k.run(&[
            "get",
            "widget",
            "small",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ]);
        if !ts.is_empty() {
            marked = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(marked, "the delete set deletionTimestamp");
    assert!(
        k.run(&["get", "widget", "small", "-o", "name"])
            .contains("small"),
        "still there while finalized"
    );
    k.run(&[
        "patch",
        "widget",
        "small",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    let out = deleter.wait();
    assert!(
        out.status.success(),
        "delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = common::fails(&k, &["get", "widget", "small"], None);
    assert!(
        err.contains(r#"widgets.example.com "small" not found"#),
        "{err}"
    );

    // Deleting the CRD removes the kind from discovery.
    k.run(&["delete", "crd", "widgets.example.com"]);
    let err = common::fails(&k, &["get", "widgets"], None);
    assert!(
        err.contains("could not find the requested resource")
            || err.contains(r#"doesn't have a resource type "widgets""#),
        "{err}"
    );
    let resources = k.run(&["api-resources", "--api-group=example.com"]);
    assert!(!resources.contains("widgets"), "{resources}");
}

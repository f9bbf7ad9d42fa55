//! `trellis crds` and `trellis validate`, run as the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn trellis(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trellis"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the trellis binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn help_lists_the_commands() {
    let out = trellis(&repo(), &["--help"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("crds") && text.contains("validate"), "{text}");
}

#[test]
fn validate_accepts_the_examples() {
    let out = trellis(&repo(), &["validate", "-f", "examples/"]);
    assert!(
        out.status.success(),
        "exit {:?}\n{}{}",
        out.status.code(),
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out), "");
}

#[test]
fn validate_prints_the_exact_errors_of_each_invalid_file() {
    let dir = repo().join("operator/api/tests/invalid");
    let mut inputs: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 10);
    for name in inputs {
        let out = trellis(&dir, &["validate", "-f", &name]);
        assert_eq!(out.status.code(), Some(1), "{name} must fail");
        let expected =
            std::fs::read_to_string(dir.join(name.replace(".yaml", ".expected"))).unwrap();
        assert_eq!(stdout(&out), expected, "{name}");
    }
}

#[test]
fn validate_reports_every_file_and_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: shop}\nspec:\n  hosts: [a]\n  http:\n  - route:\n    - destination: {host: a}\n";
    std::fs::create_dir(tmp.path().join("nested")).unwrap();
    std::fs::write(tmp.path().join("one.yaml"), vs).unwrap();
    std::fs::write(tmp.path().join("nested/two.yml"), vs).unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "not yaml: [").unwrap();
    let out = trellis(tmp.path(), &["validate", "-f", ".", "missing.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("missing.yaml: "), "{text}");
    assert!(
        lines[1].starts_with("VirtualService/shop/a: metadata.name: duplicate object (also defined in ./nested/two.yml)"),
        "{text}"
    );
}

#[test]
fn crds_out_writes_what_is_committed() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("stale.yaml"), "old").unwrap();
    let out = trellis(&repo(), &["crds", "--out", tmp.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = repo().join("crds");
    let mut names: Vec<String> = std::fs::read_dir(&committed)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut written: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(
        written, names,
        "stale.yaml must be removed, every CRD written"
    );
    for name in names {
        assert_eq!(
            std::fs::read_to_string(tmp.path().join(&name)).unwrap(),
            std::fs::read_to_string(committed.join(&name)).unwrap(),
            "{name}"
        );
    }
    let printed = trellis(&repo(), &["crds"]);
    assert!(printed.status.success());
    assert_eq!(
        stdout(&printed)
            .matches("kind: CustomResourceDefinition")
            .count(),
        11
    );
}

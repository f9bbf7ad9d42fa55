//! Golden files: the Envoy config each scenario produces, checked into `tests/golden/`.
//!
//! `UPDATE_GOLDEN=1 cargo test -p trellis-e2e` rewrites them; otherwise a test
//! fails when the generated text differs, so config changes show up in review.
use std::path::PathBuf;

fn golden_path(scenario: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(format!("{scenario}.yaml"))
}

/// Compares `text` with `tests/golden/<scenario>.yaml` (or rewrites it with `UPDATE_GOLDEN=1`).
pub fn check_golden(scenario: &str, text: &str) {
    let path = golden_path(scenario);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("golden dir")).expect("create golden dir");
        std::fs::write(&path, text).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "golden file {} unreadable ({e}); run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected != text {
        let first_diff = expected
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(text.lines().count()));
        panic!(
            "{} differs from the generated config at line {}:\n  golden:    {:?}\n  generated: {:?}\nrun with UPDATE_GOLDEN=1 to accept",
            path.display(),
            first_diff + 1,
            expected.lines().nth(first_diff),
            text.lines().nth(first_diff)
        );
    }
}

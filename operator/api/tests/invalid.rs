//! The invalid corpus: each tests/invalid/NAME.yaml must produce exactly
//! the lines of NAME.expected. `TRELLIS_BLESS=1` rewrites the .expected
//! files (review the diff before committing).

use std::path::PathBuf;
use trellis_api::validate::check_source;

#[test]
fn invalid_corpus_produces_exactly_the_expected_errors() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/invalid"));
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 10, "invalid corpus too small");
    let bless = std::env::var_os("TRELLIS_BLESS").is_some();
    let mut failures = Vec::new();
    for input in inputs {
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&input).unwrap();
        let (_, lines) = check_source(&name, &text);
        assert!(!lines.is_empty(), "{name} produced no error");
        let actual = lines.join("\n") + "\n";
        let expected_path = input.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{} is missing", expected_path.display()));
        if actual != expected {
            failures.push(format!(
                "{name}:\n--- expected\n{expected}--- actual\n{actual}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

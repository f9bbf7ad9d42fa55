//! `trellis validate -f PATH...`: loads and validates mesh YAML files (or
//! directories of them, recursively) and prints every error as
//! `kind/namespace/name: path: message`.

use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use trellis_api::ObjectRef;
use trellis_api::validate::check_source;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files or directories (searched recursively for *.yaml and *.yml).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    paths: Vec<PathBuf>,
}

pub fn run(args: ValidateArgs) -> ExitCode {
    let mut lines = Vec::new();
    let mut files = Vec::new();
    for path in &args.paths {
        if let Err(e) = super::yaml_files(path, &mut files) {
            lines.push(format!("{}: {e}", path.display()));
        }
    }
    let mut objects = 0usize;
    let mut seen: BTreeMap<ObjectRef, String> = BTreeMap::new();
    for file in &files {
        let source = file.display().to_string();
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                lines.push(format!("{source}: cannot read: {e}"));
                continue;
            }
        };
        let (resources, problems) = check_source(&source, &text);
        lines.extend(problems);
        for resource in &resources {
            objects += 1;
            let object = resource.object_ref();
            if let Some(first) = seen.insert(object.clone(), source.clone()) {
                lines.push(format!(
                    "{object}: metadata.name: duplicate object (also defined in {first})"
                ));
            }
        }
    }
    for line in &lines {
        println!("{line}");
    }
    if lines.is_empty() {
        eprintln!("{objects} objects in {} files: valid", files.len());
        ExitCode::SUCCESS
    } else {
        eprintln!("{} errors in {} files", lines.len(), files.len());
        ExitCode::FAILURE
    }
}

//! The subcommands of `trellis`, one module each.
pub mod ca;
pub mod crds;
pub mod demo;
pub mod demo_app;
pub mod inject;
pub mod operator;
pub mod operator_webhook;
pub mod proxy_config;
pub mod proxy_init;
pub mod status;
pub mod up;
pub mod validate;

use std::path::{Path, PathBuf};

/// `path` itself when a file (whatever its extension; a missing one is an
/// error); its *.yaml / *.yml files, recursively and
/// sorted, when a directory.
pub(crate) fn yaml_files(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        out.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            yaml_files(&entry, out)?;
        } else if entry
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml")
        {
            out.push(entry);
        }
    }
    Ok(())
}

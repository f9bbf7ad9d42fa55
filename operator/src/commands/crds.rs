//! `trellis crds`: prints the CRD YAML, or writes `crds/` (one file per CRD
//! plus a kustomization.yaml).

use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use trellis_api::crd;

#[derive(Debug, Args)]
pub struct CrdsArgs {
    /// Write one file per CRD and a kustomization.yaml into this directory
    /// instead of printing them.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: CrdsArgs) -> ExitCode {
    match write(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trellis crds: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn write(args: CrdsArgs) -> anyhow::Result<()> {
    let Some(dir) = args.out else {
        print!("{}", crd::render_stream().context("rendering the CRDs")?);
        return Ok(());
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = crd::render_files().context("rendering the CRDs")?;
    for (name, content) in &files {
        let path = dir.join(name);
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    // A CRD file left from a kind that no longer exists would still be applied.
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let generated = files.iter().any(|(n, _)| n == name);
        if !generated && name.ends_with(".yaml") {
            std::fs::remove_file(&path)
                .with_context(|| format!("removing stale {}", path.display()))?;
        }
    }
    eprintln!("wrote {} files to {}", files.len(), dir.display());
    Ok(())
}

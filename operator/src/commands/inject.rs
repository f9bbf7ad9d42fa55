//! `trellis inject -f FILE|DIR|-`: offline sidecar injection for pipelines
//! that render manifests. Workloads (Deployment, StatefulSet, DaemonSet,
//! ReplicaSet, Job, CronJob, Pod; also inside a `List`) get exactly what the
//! webhook gives their pods (a gateway proxy for pod templates annotated
//! `inject.istio.io/templates: gateway`); every other document is passed through as it was
//! written (comments included); rewritten documents lose their comments and
//! have every string quoted. On any error nothing is printed to stdout and every error is
//! printed to stderr as `kind/namespace/name: path: message`.

use anyhow::{Context, bail};
use clap::Args;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use trellis_api::Resource;
use trellis_api::mesh::MeshConfigSpec;
use trellis_inject::{DEFAULT_INIT_IMAGE, InjectionContext, WorkloadOutcome, inject_workload};

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// A YAML file, a directory (its *.yaml and *.yml files, recursively, in name order), or `-` for stdin.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    paths: Vec<PathBuf>,
    /// A file holding the MeshConfig whose proxy image, resources and log level the sidecar gets
    /// (the cluster's `MeshConfig/default`); built-in defaults when absent.
    #[arg(long)]
    mesh_config: Option<PathBuf>,
    /// Image of the trellis binary, run by the init container as `trellis proxy-init`.
    #[arg(long, default_value = DEFAULT_INIT_IMAGE)]
    init_image: String,
    /// The operator's namespace: never injected.
    #[arg(long, default_value = "trellis-system")]
    operator_namespace: String,
}

pub fn run(args: InjectArgs) -> ExitCode {
    match inject_all(&args) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn context(args: &InjectArgs) -> anyhow::Result<InjectionContext> {
    let mesh = match &args.mesh_config {
        None => MeshConfigSpec::default(),
        Some(path) => {
            let source = path.display().to_string();
            let text =
                std::fs::read_to_string(path).with_context(|| format!("{source}: cannot read"))?;
            let resources = trellis_api::load(&source, &text)?;
            let mut configs = resources.into_iter().filter_map(|r| match r {
                Resource::MeshConfig(m) => Some(m.spec),
                _ => None,
            });
            match (configs.next(), configs.next()) {
                (Some(spec), None) => spec,
                _ => bail!("{source}: --mesh-config: expected exactly one MeshConfig"),
            }
        }
    };
    Ok(InjectionContext::from_mesh_config(&mesh, &args.init_image))
}

/// Every input as (source name, text), directories expanded in name order.
fn read_inputs(paths: &[PathBuf]) -> Result<Vec<(String, String)>, Vec<String>> {
    let mut inputs = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => inputs.push(("<stdin>".to_string(), text)),
                Err(e) => errors.push(format!("<stdin>: cannot read: {e}")),
            }
            continue;
        }
        let mut files = Vec::new();
        if let Err(e) = super::yaml_files(path, &mut files) {
            errors.push(format!("{}: {e}", path.display()));
        }
        for file in files {
            match std::fs::read_to_string(&file) {
                Ok(text) => inputs.push((file.display().to_string(), text)),
                Err(e) => errors.push(format!("{}: cannot read: {e}", file.display())),
            }
        }
    }
    if errors.is_empty() {
        Ok(inputs)
    } else {
        Err(errors)
    }
}

/// Splits a YAML stream into its documents' texts. A line starting with `---`
/// at column 0 always starts a new document in YAML (no scalar may contain
/// one), so the split is exact; text after the marker stays with its document.
fn split_documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.split_inclusive('\n') {
        let marker = line
            .strip_prefix("---")
            .filter(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']));
        match marker {
            Some(rest) if rest.trim().is_empty() => docs.push(String::new()),
            Some(rest) => docs.push(rest.trim_start_matches([' ', '\t']).to_string()),
            None => docs.last_mut().expect("never empty").push_str(line),
        }
    }
    docs
}

fn inject_all(args: &InjectArgs) -> Result<String, Vec<String>> {
    let ctx = context(args).map_err(|e| vec![format!("{e:#}")])?;
    let inputs = read_inputs(&args.paths)?;
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for (source, text) in &inputs {
        for (index, document) in split_documents(text).into_iter().enumerate() {
            let at = format!("{source} (document {})", index + 1);
            let mut doc: serde_json::Value = match serde_yaml::from_str(&document) {
                Ok(doc) => doc,
                Err(e) => {
                    errors.push(format!("{at}: invalid YAML: {e}"));
                    continue;
                }
            };
            if doc.is_null() {
                continue;
            }
            match rewrite(&mut doc, &ctx, &args.operator_namespace) {
                // Untouched documents keep their text, comments included.
                Ok(false) if document.ends_with('\n') => documents.push(document),
                Ok(false) => documents.push(format!("{document}\n")),
                // Every string quoted: YAML 1.1 readers (kubectl) never see `on` as a boolean.
                Ok(true) => match trellis_envoy_json::json_to_yaml(&doc) {
                    Ok(text) => documents.push(text),
                    Err(e) => errors.push(format!("{at}: writing YAML: {e}")),
                },
                Err(e) => errors.push(format!("{at}: {e}")),
            }
        }
    }
    if errors.is_empty() {
        Ok(documents.join("---\n"))
    } else {
        Err(errors)
    }
}

/// Injects one document in place (a `List`'s items one by one); whether it changed.
fn rewrite(
    doc: &mut serde_json::Value,
    ctx: &InjectionContext,
    operator_ns: &str,
) -> Result<bool, String> {
    if doc.get("kind").and_then(serde_json::Value::as_str) == Some("List") {
        let mut changed = false;
        if let Some(items) = doc
            .get_mut("items")
            .and_then(serde_json::Value::as_array_mut)
        {
            for item in items {
                changed |= rewrite(item, ctx, operator_ns)?;
            }
        }
        return Ok(changed);
    }
    match inject_workload(doc, ctx, operator_ns).map_err(|e| e.to_string())? {
        WorkloadOutcome::NotAWorkload
        | WorkloadOutcome::Skipped(_)
        | WorkloadOutcome::AlreadyInjected => Ok(false),
        WorkloadOutcome::Injected {
            path,
            metadata,
            spec,
        } => {
            let mut template = &mut *doc;
            for key in path {
                template = template
                    .get_mut(key)
                    .ok_or_else(|| format!("{key}: missing field"))?;
            }
            let map = template
                .as_object_mut()
                .ok_or_else(|| "the pod template is not a mapping".to_string())?;
            map.insert("metadata".into(), metadata);
            map.insert("spec".into(), spec);
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_documents;

    #[test]
    fn documents_split_on_markers_at_column_zero_only() {
        let docs = split_documents("# c\na: 1\n---\nb: |\n  ---x\n--- # next\nc: 3\n---x: 1\n");
        assert_eq!(
            docs,
            vec!["# c\na: 1\n", "b: |\n  ---x\n", "# next\nc: 3\n---x: 1\n"]
        );
    }
}

//! `trellis proxy-config --proxy NS/NAME [TYPE]`: what the xDS server of a
//! running `trellis up` last sent a proxy, and whether the proxy ACKed it.
//! Reads `<state-dir>/proxy-config/<ns>/<name>.json`, which `trellis up`
//! rewrites atomically whenever the proxy's sync state changes.
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use trellis_local::proxy_config::{ProxyConfigDump, TypeDump, read_dump};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Section {
    Listeners,
    Routes,
    Clusters,
    Endpoints,
    Secrets,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub struct ProxyConfigArgs {
    /// The proxy as NAMESPACE/NAME (its WorkloadEntry).
    #[arg(long)]
    proxy: String,
    /// Which resources to show.
    #[arg(value_enum, default_value = "all")]
    section: Section,
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    output: Output,
    /// The state directory of `trellis up`.
    #[arg(long, default_value = ".trellis")]
    state_dir: PathBuf,
}

impl Section {
    fn includes(self, type_name: &str) -> bool {
        match self {
            Section::All => true,
            Section::Listeners => type_name == "listeners",
            Section::Routes => type_name == "routes",
            Section::Clusters => type_name == "clusters",
            Section::Endpoints => type_name == "endpoints",
            Section::Secrets => type_name == "secrets",
        }
    }
}

pub fn run(args: ProxyConfigArgs) -> ExitCode {
    match show(&args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("trellis proxy-config: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn show(args: &ProxyConfigArgs) -> Result<String> {
    let Some((namespace, name)) = args.proxy.split_once('/') else {
        bail!("--proxy {:?}: expected NAMESPACE/NAME", args.proxy);
    };
    let dump = read_dump(&args.state_dir, namespace, name).with_context(|| {
        format!(
            "no configuration recorded for proxy {namespace}/{name} \
             (is `trellis up --state-dir {}` running, and is {namespace}/{name} one of its workloads?)",
            args.state_dir.display()
        )
    })?;
    let doc = document(&dump, args.section);
    Ok(match args.output {
        Output::Json => format!("{}\n", serde_json::to_string_pretty(&doc)?),
        Output::Yaml => trellis_envoy_json::json_to_yaml(&doc)?,
        Output::Table => table(&dump, args.section),
    })
}

fn type_value(t: &TypeDump) -> Value {
    json!({
        "type": t.type_name,
        "sentVersion": t.sent_version,
        "ackedVersion": t.acked_version,
        "acked": t.acked,
        "nack": t.nack,
        "resources": t.resources.iter().map(|r| json!({"name": r.name, "config": r.config})).collect::<Vec<_>>(),
    })
}

fn document(dump: &ProxyConfigDump, section: Section) -> Value {
    let types: Vec<Value> = dump
        .types
        .iter()
        .filter(|t| section.includes(&t.type_name))
        .map(type_value)
        .collect();
    let mut doc = json!({
        "proxy": format!("{}/{}", dump.namespace, dump.name),
        "nodeId": dump.node_id,
        "connected": dump.connected,
        "types": types,
    });
    if section.includes("secrets") {
        doc["fileSecrets"] = serde_json::to_value(&dump.file_secrets).unwrap_or(Value::Null);
    }
    doc
}

fn short(v: &Option<String>) -> String {
    v.as_deref()
        .map(|s| s.chars().take(12).collect())
        .unwrap_or_else(|| "-".into())
}

/// A one-line summary of a resource for the table.
fn detail(type_name: &str, config: &Value) -> String {
    match type_name {
        "listeners" => {
            let addr = &config["address"]["socket_address"];
            format!(
                "{}:{}",
                addr["address"].as_str().unwrap_or("?"),
                addr["port_value"]
            )
        }
        "routes" => {
            let hosts: usize = config["virtual_hosts"].as_array().map_or(0, Vec::len);
            format!("{hosts} virtual hosts")
        }
        "clusters" => config["type"].as_str().unwrap_or("EDS").to_string(),
        "endpoints" => {
            let mut addrs = Vec::new();
            for locality in config["endpoints"].as_array().into_iter().flatten() {
                // Locality load balancing: where the endpoints are and their priority.
                let place = locality_label(locality);
                for ep in locality["lb_endpoints"].as_array().into_iter().flatten() {
                    let a = &ep["endpoint"]["address"]["socket_address"];
                    addrs.push(format!(
                        "{}:{}{place}",
                        a["address"].as_str().unwrap_or("?"),
                        a["port_value"]
                    ));
                }
            }
            addrs.join(",")
        }
        _ => config["kind"].as_str().unwrap_or("").to_string(),
    }
}

/// ` (region/zone/subzone p<priority>)` for a group of endpoints with a
/// locality or a priority, nothing for the plain group.
fn locality_label(group: &Value) -> String {
    let l = &group["locality"];
    let parts: Vec<&str> = ["region", "zone", "sub_zone"]
        .iter()
        .filter_map(|k| l[*k].as_str().filter(|s| !s.is_empty()))
        .collect();
    let priority = group["priority"].as_u64().unwrap_or(0);
    if parts.is_empty() && priority == 0 {
        return String::new();
    }
    format!(" ({} p{priority})", parts.join("/"))
}

fn table(dump: &ProxyConfigDump, section: Section) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "proxy {}/{} ({}) node {}",
        dump.namespace,
        dump.name,
        if dump.connected {
            "connected"
        } else {
            "not connected"
        },
        if dump.node_id.is_empty() {
            "-"
        } else {
            &dump.node_id
        }
    );
    for t in dump.types.iter().filter(|t| section.includes(&t.type_name)) {
        let state = if let Some(n) = &t.nack {
            format!(
                "NACKED v{}: {}",
                n.rejected_version.chars().take(12).collect::<String>(),
                n.message
            )
        } else if t.acked {
            "ACKED".to_string()
        } else if t.sent_version.is_some() {
            "SENT (not acked yet)".to_string()
        } else {
            "NOT SENT".to_string()
        };
        let _ = writeln!(
            out,
            "\n{} sent={} acked={} {state}",
            t.type_name.to_uppercase(),
            short(&t.sent_version),
            short(&t.acked_version)
        );
        for r in &t.resources {
            let _ = writeln!(out, "  {:<60} {}", r.name, detail(&t.type_name, &r.config));
        }
    }
    if section.includes("secrets") {
        let _ = writeln!(
            out,
            "\nFILE SECRETS (file-based SDS; key material never shown)"
        );
        for s in &dump.file_secrets {
            let _ = writeln!(
                out,
                "  {:<8} {} notAfter={} {}",
                s.name,
                if s.uri_sans.is_empty() {
                    s.subject.clone()
                } else {
                    s.uri_sans.join(",")
                },
                s.not_after.map_or("-".into(), |t| t.to_string()),
                s.source
            );
        }
    }
    out
}

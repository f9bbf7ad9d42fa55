//! `trellis status`: prints what a running (or last) `trellis up` wrote to
//! `<state-dir>/status.json`.
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};
use trellis_local::status::{read_status, render};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The state directory `trellis up` uses.
    #[arg(long, default_value = ".trellis")]
    state_dir: PathBuf,
    /// Print the raw status.json instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: StatusArgs) -> ExitCode {
    let path = args.state_dir.join("status.json");
    let status = match read_status(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "trellis status: {e} (is `trellis up --state-dir {}` running?)",
                args.state_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&status) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("trellis status: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        print!("{}", render(&status, now));
    }
    ExitCode::SUCCESS
}

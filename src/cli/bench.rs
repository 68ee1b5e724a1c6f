//! `tron-actors bench`.
use super::CliError;
use clap::Args;
use tron_actors::tools::bench::{BenchError, BenchOptions};

#[derive(Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    options: BenchOptions,
    /// Print the report as JSON (the one-line summary stays the last line).
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: BenchArgs) -> Result<(), CliError> {
    let daemon_exe = super::own_exe()?;
    let options = BenchOptions {
        daemon_exe,
        ..args.options
    };
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build; figures for BENCHMARKS.md come from --release");
    }
    let report = tron_actors::tools::bench::run(&options, |line| eprintln!("{line}"))
        .await
        .map_err(|error| match error {
            BenchError::Options(problem) => CliError::Refused(problem),
            error => CliError::Failed(error.to_string()),
        })?;
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(error) => eprintln!("error: cannot render the report: {error}"),
        }
    } else {
        print!("{}", report.table());
    }
    println!("{}", report.line());
    Ok(())
}

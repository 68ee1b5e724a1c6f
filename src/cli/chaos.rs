//! `tron-actors chaos`: the seeded chaos harness (logic in `tron_actors::tools::chaos`).
use super::CliError;
use clap::Args;
use tron_actors::tools::chaos::ChaosOptions;

#[derive(Args)]
pub(crate) struct ChaosArgs {
    #[command(flatten)]
    options: ChaosOptions,
    /// Print the report as JSON (the one line still goes to stderr).
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: ChaosArgs) -> Result<(), CliError> {
    tron_actors::telemetry::init_logs(tron_actors::config::LogFormat::Auto, tracing::Level::WARN);
    let daemon_exe = super::own_exe()?;
    let seed = args.options.seed;
    let options = ChaosOptions {
        daemon_exe,
        ..args.options
    };
    let report = tron_actors::tools::chaos::run(options)
        .await
        .map_err(|error| CliError::Failed(format!("chaos seed={seed}: {error}")))?;
    if args.json {
        eprintln!("{}", report.line());
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(error) => eprintln!("error: cannot print the report: {error}"),
        }
    } else {
        for problem in &report.problems {
            eprintln!("  {problem:?}");
        }
        println!("{}", report.line());
    }
    if report.is_exact() {
        Ok(())
    } else {
        Err(CliError::Reported)
    }
}

//! `tron-actors verify --from A --to B`: checks a range of the stream against the node.
use super::{load_config, node_client, open_store, CliError};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tron_actors::verify::VerifyOptions;

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// First block of the range.
    #[arg(long)]
    from: u64,
    /// Last block of the range (included).
    #[arg(long)]
    to: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Times each block is asked from the node, the first included, before it is called
    /// unverifiable (the node has bad moments: `{"Error"}` answers, 5xx, timeouts).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    attempts: u32,
    /// Pause before asking again, in ms; doubled before each further attempt, up to 4 s.
    #[arg(long, default_value_t = 250)]
    retry_backoff_ms: u64,
}

pub(crate) async fn run(config_file: Option<PathBuf>, args: VerifyArgs) -> Result<(), CliError> {
    let config = load_config(config_file)?;
    tron_actors::telemetry::init_logs(config.log.format, tracing::Level::WARN);
    let store = open_store(&config)?;
    let client = node_client(&config)?;
    let stream = store.keys().events();
    let options = VerifyOptions {
        attempts: args.attempts,
        backoff: Duration::from_millis(args.retry_backoff_ms),
    };
    let report = tron_actors::verify::verify(
        Arc::new(client),
        store.connection(),
        &stream,
        args.from,
        args.to,
        &options,
    )
    .await
    .map_err(|error| CliError::Failed(error.to_string()))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", report.summary());
    }
    if report.is_exact() {
        Ok(())
    } else {
        Err(CliError::Reported)
    }
}

//! `tron-actors verify --from A --to B`.
use super::store_for;
use crate::{load_config, VerifyArgs, EXIT_CONFIG, EXIT_RUNTIME};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tron_actors::tron::TronClient;
use tron_actors::verify::VerifyOptions;

pub(crate) async fn run(config_file: Option<PathBuf>, args: VerifyArgs) -> ExitCode {
    let config = match load_config(config_file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    tron_actors::telemetry::init_logs(config.log.format, tracing::Level::WARN);
    let store = match store_for(&config) {
        Ok(store) => store,
        Err(code) => return code,
    };
    let client = match TronClient::new(config.client_config()) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: node: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let stream = store.keys().events();
    let options = VerifyOptions {
        attempts: args.attempts,
        backoff: Duration::from_millis(args.retry_backoff_ms),
    };
    match tron_actors::verify::verify(
        Arc::new(client),
        store.connection(),
        &stream,
        args.from,
        args.to,
        &options,
    )
    .await
    {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                print!("{}", report.summary());
            }
            if report.is_exact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_RUNTIME)
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

//! `tron-actors demo`: a simulated node, a Redis, and the daemon catching up and following.
use super::run::follow;
use super::{init_telemetry, load_config, shutdown_signal, CliError};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Clone)]
pub(crate) struct DemoArgs {
    /// Blocks the simulated node has already produced; the daemon catches them all up.
    #[arg(long, default_value_t = 3000)]
    history: u64,
    /// Average transactions per simulated block.
    #[arg(long, default_value_t = 300)]
    txs_per_block: u32,
    /// Time between simulated blocks.
    #[arg(long, default_value_t = 3000)]
    block_interval_ms: u64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    seconds: Option<u64>,
    /// Write to the Redis at redis.url (under the prefix {tron-demo}) instead of a private
    /// redis-server started for the demo and removed on exit.
    #[arg(long)]
    existing_redis: bool,
}

pub(crate) async fn run(config_file: Option<PathBuf>, args: DemoArgs) -> Result<(), CliError> {
    let mut config = load_config(config_file)?;
    let telemetry = init_telemetry(&config)?;
    let demo = tron_actors::tools::demo::prepare(
        &mut config,
        args.history,
        args.txs_per_block,
        args.block_interval_ms,
        args.existing_redis,
    )
    .await
    .map_err(|error| CliError::Failed(error.to_string()))?;
    let stop = async {
        match args.seconds {
            Some(seconds) => {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(seconds)) => {},
                    _ = shutdown_signal() => {},
                }
            }
            None => shutdown_signal().await,
        }
    };
    let result = tokio::select! {
        result = follow(&config, stop, Some(&telemetry)) => result,
        _ = demo.report_progress() => Ok(()),
    };
    let left_behind = demo.finish().await;
    telemetry.shutdown();
    eprintln!("{left_behind}");
    result
}

//! `tron-actors chaos`: the seeded chaos harness (logic in `tron_actors::chaos`).
use super::CliError;
use clap::Args;
use std::time::Duration;
use tron_actors::tools::chaos::ChaosOptions;

#[derive(Args)]
pub(crate) struct ChaosArgs {
    /// Seeds the chain, the node's faults, the plan of kills and restarts, and the panics.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Backlog: blocks the simulated node has produced when the daemon first starts (the live
    /// head keeps moving during the run and is part of the range).
    #[arg(long, default_value_t = 20_000)]
    blocks: u64,
    /// Average transactions per block. Mainnet has about 300; the default is lower so that a
    /// 20,000-block run fits in minutes.
    #[arg(long, default_value_t = 50)]
    txs_per_block: u32,
    /// Time between new head blocks.
    #[arg(long, default_value_t = 1_000)]
    block_interval_ms: u64,
    /// Daemon SIGKILLs (each followed by a new daemon process).
    #[arg(long, default_value_t = 5)]
    kills: u32,
    /// redis-server SIGKILLs (each followed by a restart on its AOF).
    #[arg(long, default_value_t = 3)]
    redis_restarts: u32,
    /// A worker panics after about one claimed batch in this many (0: never).
    #[arg(long, default_value_t = 40)]
    panic_one_in: u64,
    /// Chance per node request of each of: HTTP 500, 503, connection reset, truncated JSON,
    /// `{}` for an existing block, `[]` infos, `{"Error": ...}`, slow answer.
    #[arg(long, default_value_t = 0.01)]
    fault_rate: f64,
    /// Chance per node request of each of HTTP 429 and 403 (TronGrid's body, then a penalty).
    #[arg(long, default_value_t = 0.001)]
    rate_limit_rate: f64,
    /// The node's penalty after a 429/403 (TronGrid: 30,000), scaled down for the run.
    #[arg(long, default_value_t = 300)]
    penalty_ms: u64,
    /// How late a slow answer comes.
    #[arg(long, default_value_t = 300)]
    slow_ms: u64,
    /// Fail if the run has not finished after this many seconds.
    #[arg(long, default_value_t = 3_600)]
    duration_cap: u64,
    /// Keep the working directory (Redis files, daemon logs) even when the run is exact.
    #[arg(long)]
    keep_dir: bool,
    /// Print the report as JSON (the one line still goes to stderr).
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: ChaosArgs) -> Result<(), CliError> {
    tron_actors::telemetry::init_logs("auto", "warn");
    let daemon_exe = std::env::current_exe().map_err(|error| {
        CliError::Failed(format!(
            "cannot find this binary to run the daemon with: {error}"
        ))
    })?;
    let options = ChaosOptions {
        seed: args.seed,
        blocks: args.blocks,
        txs_per_block: args.txs_per_block,
        block_interval_ms: args.block_interval_ms,
        kills: args.kills,
        redis_restarts: args.redis_restarts,
        panic_one_in: args.panic_one_in,
        fault_rate: args.fault_rate,
        rate_limit_rate: args.rate_limit_rate,
        penalty_ms: args.penalty_ms,
        slow_ms: args.slow_ms,
        duration_cap: Duration::from_secs(args.duration_cap),
        daemon_exe,
        keep_dir: args.keep_dir,
    };
    let report = tron_actors::tools::chaos::run(options)
        .await
        .map_err(|error| CliError::Failed(format!("chaos seed={}: {error}", args.seed)))?;
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

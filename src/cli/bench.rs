//! `tron-actors bench`.
use super::CliError;
use clap::Args;
use tron_actors::tools::bench::{BenchError, BenchOptions};

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Backlog the daemon drains, in blocks (a week is 201,600).
    #[arg(long, default_value_t = 20_000)]
    blocks: u64,
    /// Average transactions per simulated block (mainnet: about 300).
    #[arg(long, default_value_t = 300)]
    txs_per_block: u32,
    /// Time between simulated blocks.
    #[arg(long, default_value_t = 3000)]
    block_interval_ms: u64,
    /// Head blocks timed once in sync (p50/p99 of block timestamp to commit).
    #[arg(long, default_value_t = 100)]
    head_blocks: usize,
    /// Blocks per ceiling measurement (node alone, decoding alone, Redis alone).
    #[arg(long, default_value_t = 1000)]
    ceiling_blocks: u64,
    /// Also measure the naive design (one block at a time, one XADD per event) on this many
    /// blocks, for the gain as a ratio measured in the same run.
    #[arg(long)]
    naive: bool,
    /// Blocks for the naive design.
    #[arg(long, default_value_t = 1000)]
    naive_blocks: u64,
    /// Limit the simulated node to this many requests/s (429 and a 30 s penalty above it, like
    /// TronGrid) and the daemon's `node.rate_limit_rps` to the same. Skips the ceilings.
    #[arg(long)]
    node_rps: Option<u32>,
    /// Seeds the simulated chain.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print the report as JSON (the one-line summary stays the last line).
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: BenchArgs) -> Result<(), CliError> {
    let daemon_exe = std::env::current_exe().map_err(|error| {
        CliError::Failed(format!(
            "cannot find this program's own path to run the daemon: {error}"
        ))
    })?;
    let options = BenchOptions {
        blocks: args.blocks,
        txs_per_block: args.txs_per_block,
        block_interval_ms: args.block_interval_ms,
        head_blocks: args.head_blocks,
        ceiling_blocks: args.ceiling_blocks,
        naive_blocks: if args.naive { args.naive_blocks } else { 0 },
        node_rps: args.node_rps,
        seed: args.seed,
        daemon_exe,
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

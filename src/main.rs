//! The `tron-actors` command line: parses, then hands the subcommand to its module in `cli/`.

mod cli;

use clap::{Parser, Subcommand};
use cli::CliError;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tron-actors",
    version,
    about = "Follows the TRON chain and publishes every event to a Redis stream, exactly once",
    long_about = "Follows a TRON node's HTTP API (TronGrid or a self-hosted java-tron) and publishes \
every event of every block to a Redis stream kept 7 days. Gaps after downtime are filled through a \
priority queue (<= 20 blocks) or a backlog (up to 201,600 blocks), newest first.\n\n\
Configuration: config/default.toml (built in), then --config FILE, then environment variables \
TRON_ACTORS_<SECTION>__<KEY> (e.g. TRON_ACTORS_NODE__URL, TRON_ACTORS_REDIS__URL, \
TRON_ACTORS_NODE__API_KEY or TRON_ACTORS_NODE__API_KEY_FILE; the key is never shown).\n\n\
Exit codes: 0 done, 1 failed while running (or a check failed), 2 refused to start (bad \
configuration or arguments)."
)]
struct Cli {
    /// A TOML file overriding the built-in defaults (environment variables override it).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Follow the node and publish events (the daemon). With --dry-run: check the configuration,
    /// Redis and the node, print where it would start, and exit.
    Run(cli::run::RunArgs),
    /// Serve a simulated TRON node (same endpoints, JSON shapes and quirks as java-tron).
    Sim(cli::sim::SimArgs),
    /// Try it without a node: a simulated node, a private redis-server (the configured Redis only
    /// with --existing-redis), and the daemon catching up a history and following the head.
    Demo(cli::demo::DemoArgs),
    /// Inspect and act on the dead-letter set (blocks that failed every retry).
    Dlq {
        #[command(subcommand)]
        action: cli::dlq::DlqAction,
    },
    /// Check a block range of the stream against the node: missing, duplicated and unexpected
    /// events per block. Exits 0 only when the range is exact.
    Verify(cli::verify::VerifyArgs),
    /// Show the sync state from Redis and the node: head, last synced, lag, queue depths, leases
    /// by slot, retries, dead letters, stream length and memory. The daemon need not run.
    Status(cli::status::StatusArgs),
    /// Print the stream's entries as they come: JSON lines when piped, aligned lines on a
    /// terminal; filters by kind, contract and address; start at a block, a time, an id or now;
    /// through a consumer group that resumes where it stopped.
    Tail(cli::tail::TailArgs),
    /// Ask a running daemon's /healthz (or /readyz with --ready) on metrics.listen; exit 0 when
    /// it answers 200. The container's HEALTHCHECK (no curl needed).
    Health(cli::health::HealthArgs),
    /// Measure catch-up speed, head latency, memory and node requests on this machine against
    /// its own ceilings (private redis-server, simulated node, the daemon as a child process).
    Bench(cli::bench::BenchArgs),
    /// Seeded chaos run: a faulty simulated node, daemon SIGKILLs, worker panics and Redis
    /// restarts during a 20,000-block catch-up, then verify over the whole range.
    Chaos(cli::chaos::ChaosArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return CliError::Failed(format!("cannot start the async runtime: {error}")).report()
        }
    };
    let config = cli.config;
    runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => cli::run::run(config, args).await,
            Command::Sim(args) => cli::sim::run(args).await,
            Command::Demo(args) => cli::demo::run(config, args).await,
            Command::Dlq { action } => cli::dlq::run(config, action).await,
            Command::Verify(args) => cli::verify::run(config, args).await,
            Command::Status(args) => cli::status::run(config, args).await,
            Command::Tail(args) => cli::tail::run(config, args).await,
            Command::Health(args) => cli::health::run(config, args).await,
            Command::Bench(args) => cli::bench::run(args).await,
            Command::Chaos(args) => cli::chaos::run(args).await,
        }
        .map_or_else(CliError::report, |()| ExitCode::SUCCESS)
    })
}

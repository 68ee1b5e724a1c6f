//! The `tron-actors` command line.

mod cli;

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tron_actors::config::Config;
use tron_actors::daemon::DaemonHandle;
use tron_actors::tron::TronClient;
use tron_sim::{SimFaults, SimParams};

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
    Sim(SimArgs),
    /// Try it without a node: a simulated node, a Redis (the configured one if reachable, else a
    /// private redis-server), and the daemon catching up a history and following the head.
    Demo(DemoArgs),
    /// Inspect and act on the dead-letter set (blocks that failed every retry).
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Check a block range of the stream against the node: missing, duplicated and unexpected
    /// events per block. Exits 0 only when the range is exact.
    Verify(VerifyArgs),
    /// Show the sync state from Redis and the node: head, last synced, lag, queue depths, leases
    /// by slot, retries, dead letters, stream length and memory. The daemon need not run.
    Status(cli::status::StatusArgs),
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

#[derive(Subcommand)]
pub(crate) enum DlqAction {
    /// List dead letters: block, attempts, last error, when.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put dead-lettered blocks back to work with a fresh retry schedule.
    Requeue(DlqTarget),
    /// Delete dead letters (the blocks are then never published).
    Purge(DlqTarget),
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub(crate) struct DlqTarget {
    /// The block numbers.
    pub blocks: Vec<u64>,
    /// Every dead letter.
    #[arg(long)]
    pub all: bool,
}

#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// First block of the range.
    #[arg(long)]
    pub from: u64,
    /// Last block of the range (included).
    #[arg(long)]
    pub to: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Clone)]
struct SimArgs {
    #[command(flatten)]
    params: SimParams,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    #[command(flatten)]
    faults: SimFaults,
}

#[derive(Args, Clone)]
struct DemoArgs {
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
}

/// Exit codes: 0 fine, 1 failed while running, 2 refused to start (bad config or arguments).
pub(crate) const EXIT_RUNTIME: u8 = 1;
pub(crate) const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Run(args) if args.dry_run => cli::run::dry_run(cli.config).await,
            Command::Run(_) => run(cli.config).await,
            Command::Sim(args) => sim(args).await,
            Command::Demo(args) => demo(cli.config, args).await,
            Command::Dlq { action } => cli::dlq::run(cli.config, action).await,
            Command::Verify(args) => cli::verify::run(cli.config, args).await,
            Command::Status(args) => cli::status::run(cli.config, args).await,
            Command::Health(args) => cli::health::run(cli.config, args).await,
            Command::Bench(args) => cli::bench::run(args).await,
            Command::Chaos(args) => cli::chaos::run(args).await,
        }
    })
}

pub(crate) fn load_config(file: Option<PathBuf>) -> Result<Config, ExitCode> {
    Config::load(file.as_deref()).map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Logs, and traces when an OTLP endpoint is configured.
fn init_telemetry(config: &Config) -> Result<tron_actors::telemetry::Telemetry, ExitCode> {
    tron_actors::telemetry::init(
        &config.log.format,
        &config.log.level,
        &config.otel_settings(),
    )
    .map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn run(config_file: Option<PathBuf>) -> ExitCode {
    let config = match load_config(config_file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let telemetry = match init_telemetry(&config) {
        Ok(telemetry) => telemetry,
        Err(code) => return code,
    };
    let code = follow(&config, shutdown_signal(), Some(&telemetry)).await;
    telemetry.shutdown();
    code
}

/// Runs the daemon until `stop` resolves (graceful shutdown, exit 0) or the tree gives up.
async fn follow(
    config: &Config,
    stop: impl std::future::Future<Output = ()>,
    telemetry: Option<&tron_actors::telemetry::Telemetry>,
) -> ExitCode {
    let client = match TronClient::new(config.client_config()) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("error: node: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    tracing::info!(
        node = %tron_actors::config::redact_url(&config.node.url),
        redis = %tron_actors::config::redact_url(&config.redis.url),
        prefix = %config.redis.prefix,
        start = %config.sync.start_block.map_or_else(|| "last synced, or the head on a first run".to_string(), |b| format!("block {b} on a first run")),
        "Starting tron-actors"
    );
    let node_metrics = client.clone();
    let mut extra: Vec<tron_actors::metrics::ExtraMetrics> =
        vec![Arc::new(move || node_metrics.stats().render_prometheus())];
    if let Some(telemetry) = telemetry {
        let trace_stats = telemetry.stats.clone();
        extra.push(Arc::new(move || {
            tron_actors::metrics::render_trace_stats(&trace_stats)
        }));
        if telemetry.tracing_enabled() {
            tracing::info!("Exporting one trace per block over OTLP");
        }
    }
    let mut daemon = match DaemonHandle::start_with_metrics(config, Arc::new(client), extra).await {
        Ok(daemon) => daemon,
        Err(error) => {
            tracing::error!(%error, "Could not start");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let progress = tron_actors::progress::spawn(
        daemon.store.clone(),
        daemon.stats.clone(),
        tron_actors::progress::Mode::choose(&config.log.format, config.log.progress_ms),
    );
    tokio::select! {
        _ = stop => {
            drop(progress);
            tracing::info!("Shutting down: finishing in-flight blocks");
            match daemon.shutdown().await {
                Ok(()) => {
                    tracing::info!("Stopped cleanly");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    tracing::error!(%error, "Shutdown failed");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
        error = daemon.wait() => {
            tracing::error!(%error, "Exiting");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

async fn sim(args: SimArgs) -> ExitCode {
    tron_actors::telemetry::init_logs("auto", "info");
    match tron_sim::serve_until(args.params, args.faults, args.listen, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

async fn demo(config_file: Option<PathBuf>, args: DemoArgs) -> ExitCode {
    let mut config = match load_config(config_file) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let telemetry = match init_telemetry(&config) {
        Ok(telemetry) => telemetry,
        Err(code) => return code,
    };
    match tron_actors::tools::demo::prepare(
        &mut config,
        args.history,
        args.txs_per_block,
        args.block_interval_ms,
    )
    .await
    {
        Ok(demo) => {
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
            let code = tokio::select! {
                code = follow(&config, stop, Some(&telemetry)) => code,
                _ = demo.report_progress() => ExitCode::SUCCESS,
            };
            demo.finish().await;
            telemetry.shutdown();
            code
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

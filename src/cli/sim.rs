//! `tron-actors sim`: serves the simulated node of the `tron-sim` crate until SIGINT or SIGTERM.
use super::{shutdown_signal, CliError};
use clap::Args;
use std::net::SocketAddr;
use tron_sim::{SimFaults, SimParams};

#[derive(Args, Clone)]
pub(crate) struct SimArgs {
    #[command(flatten)]
    params: SimParams,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    #[command(flatten)]
    faults: SimFaults,
}

pub(crate) async fn run(args: SimArgs) -> Result<(), CliError> {
    tron_actors::telemetry::init_logs(tron_actors::config::LogFormat::Auto, tracing::Level::INFO);
    tron_sim::serve_until(args.params, args.faults, args.listen, shutdown_signal())
        .await
        .map_err(|error| CliError::Refused(error.to_string()))
}

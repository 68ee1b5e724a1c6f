//! One module per subcommand that is more than a few lines.
pub mod bench;
pub mod chaos;
pub mod dlq;
pub mod health;
pub mod run;
pub mod status;
pub mod verify;

use crate::EXIT_CONFIG;
use std::process::ExitCode;
use std::time::Duration;
use tron_actors::config::Config;
use tron_actors::tron::TronClient;

pub(crate) fn store_for(config: &Config) -> Result<tron_actors::store::RedisStore, ExitCode> {
    tron_actors::store::RedisStore::new(&config.store_config()).map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(EXIT_CONFIG)
    })
}

pub(crate) fn node_client(config: &Config) -> Result<TronClient, ExitCode> {
    TronClient::new(config.client_config()).map_err(|error| {
        eprintln!("error: node: {error}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// A check gives up after this long, retries included, so a command never hangs on a dead host.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// The node's head header, or why there is none.
pub(crate) async fn node_head(client: &TronClient) -> Result<actors::model::BlockHeader, String> {
    use actors::chain::Chain;
    match tokio::time::timeout(CHECK_TIMEOUT, client.head()).await {
        Ok(Ok(header)) => Ok(header),
        Ok(Err(error)) => Err(match &error {
            actors::chain::ChainError::Http { status: 401 } => {
                format!("{error} (the node refused the API key: check node.api_key)")
            }
            _ => format!("{error} (check node.url, and that the node runs)"),
        }),
        Err(_) => Err(format!(
            "no answer within {}s (check node.url)",
            CHECK_TIMEOUT.as_secs()
        )),
    }
}

/// "set (redacted)" or "not set": all any output ever says about the API key.
pub(crate) fn api_key_shown(config: &Config) -> &'static str {
    if config.node.api_key.is_empty() {
        "not set"
    } else {
        "<redacted>"
    }
}

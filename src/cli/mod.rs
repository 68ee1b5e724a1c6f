//! One module per subcommand that is more than a few lines.
pub mod bench;
pub mod chaos;
pub mod dlq;
pub mod verify;

use crate::EXIT_CONFIG;
use std::process::ExitCode;
use tron_actors::config::Config;

pub(crate) fn store_for(config: &Config) -> Result<tron_actors::store::RedisStore, ExitCode> {
    tron_actors::store::RedisStore::new(&config.store_config()).map_err(|error| {
        eprintln!("error: {error}");
        ExitCode::from(EXIT_CONFIG)
    })
}

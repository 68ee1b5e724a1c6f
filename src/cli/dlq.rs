//! `tron-actors dlq list|requeue|purge`.
use super::{load_config, open_store, CliError};
use clap::{Args, Subcommand};
use std::path::PathBuf;

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

pub(crate) fn format_time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm), to print UTC times
    // without a date crate.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

pub(crate) async fn run(config_file: Option<PathBuf>, action: DlqAction) -> Result<(), CliError> {
    let config = load_config(config_file)?;
    let store = open_store(&config)?;
    let result = match action {
        DlqAction::List { json } => store.dead_letters().await.map(|letters| {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&letters).unwrap_or_default()
                );
            } else if letters.is_empty() {
                println!("no dead letters");
            } else {
                println!(
                    "{:>12}  {:>8}  {:<20}  {:<8}  last error",
                    "block", "attempts", "when (UTC)", "queue"
                );
                for letter in &letters {
                    println!(
                        "{:>12}  {:>8}  {:<20}  {:<8}  {}",
                        letter.block,
                        letter.attempts,
                        format_time(letter.at_ms),
                        letter.path,
                        letter.error
                    );
                }
                println!("{} dead letter(s)", letters.len());
            }
        }),
        DlqAction::Requeue(target) => {
            let blocks = if target.all {
                Vec::new()
            } else {
                target.blocks
            };
            store.requeue_dead(&blocks).await.map(|moved| {
                report_dlq_action("requeued", &blocks, &moved);
            })
        }
        DlqAction::Purge(target) => {
            let blocks = if target.all {
                Vec::new()
            } else {
                target.blocks
            };
            store.purge_dead(&blocks).await.map(|moved| {
                report_dlq_action("purged", &blocks, &moved);
            })
        }
    };
    result.map_err(|error| CliError::Failed(format!("redis at {}: {error}", config.redis.url)))
}

fn report_dlq_action(verb: &str, asked: &[u64], done: &[u64]) {
    println!(
        "{verb} {} block(s){}",
        done.len(),
        if done.is_empty() {
            String::new()
        } else {
            format!(": {done:?}")
        }
    );
    let absent: Vec<u64> = asked
        .iter()
        .copied()
        .filter(|b| !done.contains(b))
        .collect();
    if !absent.is_empty() {
        println!("not in the dead-letter set: {absent:?}");
    }
}

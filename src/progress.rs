//! Progress while catching up: blocks left, rate and ETA, read from Redis (the shared truth, so
//! the figures count every worker and survive restarts) and the head the TipWatcher last saw.
//!
//! On a terminal (with human-readable logs) a one-line bar on stderr is redrawn every second;
//! otherwise a log line goes out every `log.progress_ms` with the same figures, so that a
//! container's log shows how far a long backfill has got. Nothing is shown while in sync.

use crate::store::RedisStore;
use actors::stats::TreeStats;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The rate is measured over this window: long enough to smooth batch commits, short enough to
/// follow a node that slows down.
const RATE_WINDOW: Duration = Duration::from_secs(30);
/// How often the terminal bar is redrawn.
const BAR_EVERY: Duration = Duration::from_secs(1);
/// The tip block in flight is not "catching up".
const IN_SYNC_MAX_LEFT: u64 = 1;

/// True while a bar is on screen, so a log line can clear it first (see `telemetry`).
static BAR_VISIBLE: AtomicBool = AtomicBool::new(false);

/// Whether a bar is drawn on the current line; the caller is about to overwrite it.
pub fn take_bar_visible() -> bool {
    BAR_VISIBLE.swap(false, Ordering::Relaxed)
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A redrawn line on stderr.
    Bar,
    /// A log line every so often.
    Log(Duration),
    /// No progress output: not on a terminal and `log.progress_ms = 0`.
    Off,
}

impl Mode {
    /// A bar when stderr is a terminal and logs are human-readable, else log lines every
    /// `every_ms` (0 = never).
    pub fn choose(log_format: crate::config::LogFormat, every_ms: u64) -> Mode {
        use std::io::IsTerminal;
        let terminal = std::io::stderr().is_terminal();
        if terminal && log_format != crate::config::LogFormat::Json {
            Mode::Bar
        } else if every_ms == 0 {
            Mode::Off
        } else {
            Mode::Log(Duration::from_millis(every_ms))
        }
    }
}

/// What one look at the store says.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    pub(crate) head: u64,
    pub(crate) last_synced: u64,
    /// Blocks not yet published: the lag, [`StoreSnapshot::lag_blocks`](crate::store::StoreSnapshot::lag_blocks).
    pub blocks_left: u64,
    /// Blocks published per second over the last 30 s (`RATE_WINDOW`).
    pub blocks_per_s: f64,
    /// `None` while nothing is being published.
    pub eta: Option<Duration>,
}

/// Rate over a sliding window of (time, published) samples.
#[derive(Debug, Default)]
pub struct RateMeter {
    samples: VecDeque<(Instant, u64)>,
}

impl RateMeter {
    /// Adds a sample and returns blocks per second since the oldest one in the window.
    pub fn observe(&mut self, at: Instant, published: u64) -> f64 {
        self.samples.push_back((at, published));
        while self.samples.len() > 2
            && self
                .samples
                .front()
                .is_some_and(|(t, _)| at.duration_since(*t) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        match self.samples.front() {
            Some((first_at, first)) if at > *first_at => {
                published.saturating_sub(*first) as f64 / at.duration_since(*first_at).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// ETA for `left` blocks at `rate` blocks per second.
pub fn eta(left: u64, rate: f64) -> Option<Duration> {
    (rate > 0.0 && rate.is_finite()).then(|| Duration::from_secs_f64(left as f64 / rate))
}

/// `1h02m`, `3m20s`, `45s`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

/// `[#######-------------]  35%  12,345 blocks left  230 blocks/s  ETA 53s`.
pub fn render_bar(figures: &Figures, total: u64, width: usize) -> String {
    let done = total.saturating_sub(figures.blocks_left);
    let fraction = if total == 0 {
        1.0
    } else {
        done as f64 / total as f64
    };
    let filled = ((fraction * width as f64).round() as usize).min(width);
    // A slow node (or a debug build) publishes under one block per second: keep a decimal there.
    let rate = if figures.blocks_per_s < 10.0 {
        format!("{:.1}", figures.blocks_per_s)
    } else {
        format!("{:.0}", figures.blocks_per_s)
    };
    format!(
        "[{}{}] {:>3}%  {} blocks left  {rate} blocks/s  ETA {}",
        "#".repeat(filled),
        "-".repeat(width - filled),
        (fraction * 100.0).floor() as u64,
        group_thousands(figures.blocks_left),
        figures.eta.map_or_else(|| "?".to_string(), format_duration)
    )
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Reports until dropped.
pub struct Reporter {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.task.abort();
        if take_bar_visible() {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(b"\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

/// Starts reporting in the background.
pub fn spawn(store: RedisStore, tree: Arc<TreeStats>, mode: Mode) -> Reporter {
    Reporter {
        task: tokio::spawn(report(store, tree, mode)),
    }
}

async fn report(store: RedisStore, tree: Arc<TreeStats>, mode: Mode) {
    let every = match mode {
        Mode::Off => return,
        Mode::Bar => BAR_EVERY,
        Mode::Log(every) => every,
    };
    let mut meter = RateMeter::default();
    // The largest number of blocks left seen in this catch-up: the bar's 100%.
    let mut total = 0u64;
    let mut catching_up_since: Option<Instant> = None;
    // Sampled every second at least, so that the first line already has a rate and the catch-up
    // is counted from its start, whatever the interval between lines.
    let sample_every = every.min(Duration::from_secs(1));
    let mut last_line: Option<Instant> = None;
    let mut ticker = tokio::time::interval(sample_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let head = tree.head.load(Ordering::Relaxed);
        // Before the first head poll the figures would be meaningless.
        if head == 0 {
            continue;
        }
        let snapshot = match store.snapshot().await {
            Ok(snapshot) => snapshot,
            // The workers already report a Redis outage, once; progress just waits.
            Err(_) => continue,
        };
        let now = Instant::now();
        let blocks_per_s = meter.observe(now, snapshot.stats.published());
        let left = snapshot.lag_blocks(head);
        let figures = Figures {
            head,
            last_synced: snapshot.last_synced.unwrap_or(0),
            blocks_left: left,
            blocks_per_s,
            eta: eta(left, blocks_per_s),
        };
        if left <= IN_SYNC_MAX_LEFT {
            if let Some(since) = catching_up_since.take() {
                if take_bar_visible() {
                    let mut err = std::io::stderr().lock();
                    let _ = err.write_all(b"\r\x1b[2K");
                    let _ = err.flush();
                }
                tracing::info!(
                    blocks = total,
                    seconds = since.elapsed().as_secs(),
                    "Caught up"
                );
            }
            total = 0;
            last_line = None;
            continue;
        }
        catching_up_since.get_or_insert(now);
        total = total.max(left);
        // The first line comes one interval into the catch-up, with a rate to show.
        let since_line = now.duration_since(*last_line.get_or_insert(now));
        if since_line + sample_every / 2 < every {
            continue;
        }
        last_line = Some(now);
        match mode {
            Mode::Bar => {
                let line = render_bar(&figures, total, 30);
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{line}");
                let _ = err.flush();
                BAR_VISIBLE.store(true, Ordering::Relaxed);
            }
            Mode::Log(_) => tracing::info!(
                blocks_left = figures.blocks_left,
                blocks_per_s = (figures.blocks_per_s * 10.0).round() / 10.0,
                eta_s = figures.eta.map(|d| d.as_secs()),
                head = figures.head,
                last_synced = figures.last_synced,
                priority = snapshot.priority,
                backlog = snapshot.backlog,
                retry = snapshot.retry,
                leased = snapshot.leased(),
                "Catching up"
            ),
            Mode::Off => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_measured_over_the_window() {
        let mut meter = RateMeter::default();
        let t0 = Instant::now();
        assert_eq!(meter.observe(t0, 0), 0.0);
        assert_eq!(meter.observe(t0 + Duration::from_secs(10), 500), 50.0);
        assert_eq!(meter.observe(t0 + Duration::from_secs(20), 1000), 50.0);
        // 40 s after the start, the first sample has left the 30 s window.
        assert_eq!(
            meter.observe(t0 + Duration::from_secs(40), 1000),
            500.0 / 30.0
        );
    }

    #[test]
    fn eta_and_its_format() {
        assert_eq!(eta(100, 0.0), None);
        assert_eq!(eta(300, 100.0), Some(Duration::from_secs(3)));
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(200)), "3m20s");
        assert_eq!(format_duration(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn the_bar_shows_the_share_done_blocks_left_rate_and_eta() {
        let figures = Figures {
            head: 0,
            last_synced: 0,
            blocks_left: 12_345,
            blocks_per_s: 230.4,
            eta: Some(Duration::from_secs(53)),
        };
        assert_eq!(
            render_bar(&figures, 20_000, 10),
            "[####------]  38%  12,345 blocks left  230 blocks/s  ETA 53s"
        );
        let stalled = Figures {
            eta: None,
            blocks_per_s: 0.0,
            ..figures
        };
        assert!(render_bar(&stalled, 20_000, 10).ends_with("  0.0 blocks/s  ETA ?"));
    }
}

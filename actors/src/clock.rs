//! The tree's clock.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch, the clock of leases, retries and stream trimming.
///
/// Read from the wall clock once, then advanced by tokio's monotonic clock: a wall-clock step
/// (NTP) cannot expire every lease at once, and tests with paused tokio time move it too.
pub fn now_ms() -> u64 {
    static ANCHOR: OnceLock<(u64, tokio::time::Instant)> = OnceLock::new();
    let (wall_ms, instant) = ANCHOR.get_or_init(|| {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        (wall_ms, tokio::time::Instant::now())
    });
    wall_ms + instant.elapsed().as_millis() as u64
}

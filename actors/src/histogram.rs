//! A lock-free latency histogram with fixed buckets, rendered as a Prometheus histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds in seconds: 1 ms to 10 s.
pub const BUCKETS_SECONDS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Latencies counted per bucket of [`BUCKETS_SECONDS`], shared by every thread that observes.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Non-cumulative counts per bucket; the last slot is +Inf.
    counts: [AtomicU64; BUCKETS_SECONDS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Counts one latency.
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let index = BUCKETS_SECONDS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(BUCKETS_SECONDS.len());
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Latencies counted so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Prometheus text lines for metric `name` with extra `labels` (e.g. `endpoint="x"`).
    pub fn render(&self, name: &str, labels: &str) -> String {
        let mut out = String::new();
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in BUCKETS_SECONDS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            out.push_str(&format!(
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}\n"
            ));
        }
        cumulative += self.counts[BUCKETS_SECONDS.len()].load(Ordering::Relaxed);
        out.push_str(&format!(
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}\n"
        ));
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        out.push_str(&format!("{name}_sum{braces} {sum}\n"));
        out.push_str(&format!("{name}_count{braces} {cumulative}\n"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(20));
        let text = h.render("x_seconds", "");
        assert!(
            text.contains("x_seconds_bucket{le=\"0.001\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("x_seconds_bucket{le=\"0.05\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"10\"} 2\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("x_seconds_count 3\n"), "{text}");
    }
}

//! What a bench run found, and its table and one-line summary.

use super::CEILING_CONCURRENCY;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A rate over a measured stretch.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Rate {
    pub(crate) blocks: u64,
    pub(crate) events: u64,
    pub(crate) seconds: f64,
}

impl Rate {
    pub(crate) fn bps(&self) -> f64 {
        per_second(self.blocks, self.seconds)
    }
    pub(crate) fn eps(&self) -> f64 {
        per_second(self.events, self.seconds)
    }
}

pub(super) fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Quantiles of a set of latencies, in ms.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Latency {
    pub(crate) samples: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

impl Latency {
    pub(super) fn of(mut values: Vec<f64>) -> Latency {
        if values.is_empty() {
            return Latency::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            // Nearest rank: the smallest value with at least q of the samples at or below it.
            let rank = (q * values.len() as f64).ceil().max(1.0) as usize;
            values[rank.min(values.len()) - 1]
        };
        Latency {
            samples: values.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// What `tron-actors bench` measured: each stage alone, then the daemon draining a backlog.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BenchReport {
    pub(crate) txs_per_block: u32,
    pub(crate) block_interval_ms: u64,
    pub(crate) node_rps: Option<u32>,
    /// The node serving bodies in ranges and infos per block, answers discarded.
    pub serve_alone: Rate,
    /// Decoding node JSON into events, one core.
    pub decode_alone: Rate,
    /// Pre-built blocks through the commit script, one at a time (as the StreamPublisher).
    pub commit_alone_serial: Rate,
    /// The same with several commits in flight: what Redis can absorb.
    pub commit_alone_parallel: Rate,
    pub(crate) drain: Rate,
    /// Blocks that arrived at the head during the drain and went through the tip or priority.
    pub head_blocks_during_drain: u64,
    pub(crate) requests_during_drain: u64,
    pub(crate) requests_by_endpoint: BTreeMap<String, u64>,
    pub(crate) node_429: u64,
    pub(crate) head_while_draining: Latency,
    pub(crate) head_in_sync: Latency,
    pub(crate) head_polls_per_sec: f64,
    pub(crate) rss_peak_mb: f64,
    pub(crate) stream_entries: u64,
    pub(crate) stream_bytes: u64,
    pub(crate) redis_used_memory_delta: u64,
    pub(crate) naive: Option<Rate>,
    /// CPU seconds used during the drain by the daemon, redis-server, and this process (the
    /// simulated node and the bench's own polling).
    pub drain_cpu: CpuUse,
}

/// CPU seconds by process.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CpuUse {
    pub(crate) daemon_s: f64,
    pub(crate) redis_s: f64,
    pub(crate) node_s: f64,
}

impl BenchReport {
    pub(crate) fn ceiling_eps(&self) -> f64 {
        let commit = self
            .commit_alone_serial
            .eps()
            .max(self.commit_alone_parallel.eps());
        commit.min(self.serve_alone.eps())
    }

    pub(crate) fn ratio(&self) -> f64 {
        let ceiling = self.ceiling_eps();
        if ceiling > 0.0 {
            self.drain.eps() / ceiling
        } else {
            0.0
        }
    }

    pub(crate) fn req_per_block(&self) -> f64 {
        let blocks = self.drain.blocks + self.head_blocks_during_drain;
        self.requests_during_drain as f64 / blocks.max(1) as f64
    }

    pub(crate) fn redis_bytes_per_event(&self) -> f64 {
        self.stream_bytes as f64 / self.stream_entries.max(1) as f64
    }

    /// The figures as a table, for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let row = |out: &mut String, what: &str, rate: &Rate| {
            if rate.blocks == 0 {
                // Not measured (the ceilings are skipped under a node rate limit).
                return;
            }
            let _ = writeln!(
                out,
                "{:<44} {:>9} {:>11} {:>8.1} {:>10.0} {:>12.0}",
                what,
                rate.blocks,
                rate.events,
                rate.seconds,
                rate.bps(),
                rate.eps()
            );
        };
        let _ = writeln!(
            out,
            "tron-actors bench: {} txs/block, blocks every {} ms, node limit {}",
            self.txs_per_block,
            self.block_interval_ms,
            self.node_rps
                .map_or_else(|| "none".to_string(), |r| format!("{r} req/s"))
        );
        let _ = writeln!(
            out,
            "{:<44} {:>9} {:>11} {:>8} {:>10} {:>12}",
            "measure", "blocks", "events", "seconds", "blocks/s", "events/s"
        );
        row(&mut out, "ceiling: node serving alone", &self.serve_alone);
        row(
            &mut out,
            "ceiling: decoding alone (1 core)",
            &self.decode_alone,
        );
        row(
            &mut out,
            "ceiling: redis commit alone (1 in flight)",
            &self.commit_alone_serial,
        );
        row(
            &mut out,
            &format!("ceiling: redis commit alone ({CEILING_CONCURRENCY} in flight)"),
            &self.commit_alone_parallel,
        );
        row(&mut out, "daemon: backlog drain", &self.drain);
        if let Some(naive) = &self.naive {
            row(
                &mut out,
                "naive: 1 block at a time, 1 XADD per event",
                naive,
            );
        }
        let _ = writeln!(out);
        if self.ceiling_eps() > 0.0 {
            let _ = writeln!(
                out,
                "ceiling (min of node, redis)        {:>12.0} events/s",
                self.ceiling_eps()
            );
            let _ = writeln!(
                out,
                "drain / ceiling                     {:>12.2}",
                self.ratio()
            );
        } else {
            let _ = writeln!(
                out,
                "ceilings not measured (under a node rate limit they would only measure the limit)"
            );
        }
        if let Some(naive) = &self.naive {
            let gain = if naive.eps() > 0.0 {
                self.drain.eps() / naive.eps()
            } else {
                0.0
            };
            let _ = writeln!(out, "drain / naive                       {:>12.1}x", gain);
        }
        let endpoints: Vec<String> = self
            .requests_by_endpoint
            .iter()
            .map(|(path, n)| format!("{}={n}", path.rsplit('/').next().unwrap_or(path)))
            .collect();
        let _ = writeln!(
            out,
            "node requests per block (drain)     {:>12.3}   ({} requests for {} blocks: {})",
            self.req_per_block(),
            self.requests_during_drain,
            self.drain.blocks + self.head_blocks_during_drain,
            endpoints.join(" ")
        );
        let _ = writeln!(
            out,
            "node requests per second (drain)    {:>12.1}",
            per_second(self.requests_during_drain, self.drain.seconds)
        );
        let _ = writeln!(
            out,
            "node 429 answers                    {:>12}",
            self.node_429
        );
        let latency = |out: &mut String, what: &str, l: &Latency| {
            let _ = writeln!(
                out,
                "{what:<35} p50 {:>6.0} ms  p99 {:>6.0} ms  max {:>6.0} ms  ({} blocks)",
                l.p50_ms, l.p99_ms, l.max_ms, l.samples
            );
        };
        latency(
            &mut out,
            "head latency while draining",
            &self.head_while_draining,
        );
        latency(&mut out, "head latency in sync", &self.head_in_sync);
        let _ = writeln!(
            out,
            "head polls per second (in sync)     {:>12.2}",
            self.head_polls_per_sec
        );
        let cpu = &self.drain_cpu;
        let _ = writeln!(
            out,
            "CPU during the drain                daemon {:.1} s, redis-server {:.1} s, node {:.1} s ({:.1} s wall, 2 cores = {:.1} CPU s)",
            cpu.daemon_s,
            cpu.redis_s,
            cpu.node_s,
            self.drain.seconds,
            self.drain.seconds * 2.0
        );
        let _ = writeln!(
            out,
            "daemon peak RSS                     {:>12.1} MB",
            self.rss_peak_mb
        );
        let _ = writeln!(
            out,
            "redis stream bytes per event        {:>12.0}   ({} entries, {:.1} MB; used_memory grew {:.1} MB)",
            self.redis_bytes_per_event(),
            self.stream_entries,
            self.stream_bytes as f64 / 1e6,
            self.redis_used_memory_delta as f64 / 1e6
        );
        out
    }

    /// The one-line summary the issue asks for, always the last line printed.
    pub fn line(&self) -> String {
        format!(
            "drain_bps={:.1} drain_eps={:.0} ceiling_eps={:.0} ratio={:.2} req_per_block={:.3} \
             head_p50_ms={:.0} head_p99_ms={:.0} rss_mb={:.1} redis_bytes_per_event={:.0}",
            self.drain.bps(),
            self.drain.eps(),
            self.ceiling_eps(),
            self.ratio(),
            self.req_per_block(),
            self.head_in_sync.p50_ms,
            self.head_in_sync.p99_ms,
            self.rss_peak_mb,
            self.redis_bytes_per_event()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let l = Latency::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (l.p50_ms, l.p99_ms, l.max_ms, l.samples),
            (50.0, 99.0, 100.0, 100)
        );
        let one = Latency::of(vec![7.0]);
        assert_eq!((one.p50_ms, one.p99_ms), (7.0, 7.0));
        assert_eq!(Latency::of(Vec::new()).samples, 0);
    }

    #[test]
    fn the_last_line_has_every_figure_the_issue_names() {
        let report = BenchReport {
            drain: Rate {
                blocks: 1000,
                events: 300_000,
                seconds: 10.0,
            },
            serve_alone: Rate {
                blocks: 100,
                events: 60_000,
                seconds: 1.0,
            },
            commit_alone_serial: Rate {
                blocks: 100,
                events: 40_000,
                seconds: 1.0,
            },
            requests_during_drain: 1010,
            stream_entries: 1000,
            stream_bytes: 500_000,
            ..BenchReport::default()
        };
        assert_eq!(
            report.line(),
            "drain_bps=100.0 drain_eps=30000 ceiling_eps=40000 ratio=0.75 req_per_block=1.010 \
             head_p50_ms=0 head_p99_ms=0 rss_mb=0.0 redis_bytes_per_event=500"
        );
    }
}

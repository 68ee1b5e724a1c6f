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

/// Entries XADDed pipelined into a fresh stream without the commit script: the physical ceiling
/// of writing the stream, and what its entries cost in memory.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StreamCeiling {
    /// The blocks and events written, and how long the XADDs took.
    pub(crate) rate: Rate,
    /// Stream entries written: one per event, plus one `block` entry per block in v2.
    pub(crate) entries: u64,
    /// MEMORY USAGE of the stream once written (every entry, block entries included).
    pub(crate) stream_bytes: u64,
}

impl StreamCeiling {
    pub(crate) fn entries_per_sec(&self) -> f64 {
        per_second(self.entries, self.rate.seconds)
    }

    /// Stream bytes over event entries: block entries are paid for, not counted.
    pub(crate) fn bytes_per_event(&self) -> f64 {
        self.stream_bytes as f64 / self.rate.events.max(1) as f64
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
    /// The same blocks' entries in the v1 shape, XADDed pipelined without the script.
    pub xadd_v1: StreamCeiling,
    /// The same blocks' entries exactly as the v2 commit writes them, XADDed pipelined without
    /// the script.
    pub xadd_v2: StreamCeiling,
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
    /// XLEN of the drained stream: events, `block` and `finalized` entries.
    pub(crate) stream_entries: u64,
    /// Event entries in it, as the stats hash counts them.
    pub(crate) stream_events: u64,
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

    /// The drain's events/s over the raw XADD events/s of v2 entries: how close the daemon comes
    /// to what appending its entries to the stream costs at all.
    pub(crate) fn xadd_ratio(&self) -> f64 {
        let ceiling = self.xadd_v2.rate.eps();
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

    /// Stream bytes over event entries: the `block` and `finalized` entries are paid for, not
    /// counted.
    pub(crate) fn redis_bytes_per_event(&self) -> f64 {
        self.stream_bytes as f64 / self.stream_events.max(1) as f64
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
        row(
            &mut out,
            "ceiling: raw XADD, v1-shaped entries",
            &self.xadd_v1.rate,
        );
        row(
            &mut out,
            "ceiling: raw XADD, v2 entries",
            &self.xadd_v2.rate,
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
        if self.xadd_v2.rate.blocks > 0 {
            let xadd = |out: &mut String, what: &str, c: &StreamCeiling, blocks: &str| {
                let _ = writeln!(
                    out,
                    "{what:<35} {:>12.0}   ({} entries for {} events{blocks}; {:.0} bytes/event)",
                    c.entries_per_sec(),
                    c.entries,
                    c.rate.events,
                    c.bytes_per_event()
                );
            };
            xadd(&mut out, "raw XADD v1-shaped, entries/s", &self.xadd_v1, "");
            xadd(
                &mut out,
                "raw XADD v2, entries/s",
                &self.xadd_v2,
                ", block entries included",
            );
            let _ = writeln!(
                out,
                "drain / raw XADD v2                 {:>12.2}   (drain events/s / raw XADD events/s)",
                self.xadd_ratio()
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
            "redis stream bytes per event        {:>12.0}   (block entries included: {:.1} MB over {} events; {} entries; used_memory grew {:.1} MB)",
            self.redis_bytes_per_event(),
            self.stream_bytes as f64 / 1e6,
            self.stream_events,
            self.stream_entries,
            self.redis_used_memory_delta as f64 / 1e6
        );
        out
    }

    /// The one-line summary the issue asks for, always the last line printed.
    pub fn line(&self) -> String {
        format!(
            "drain_bps={:.1} drain_eps={:.0} ceiling_eps={:.0} ratio={:.2} req_per_block={:.3} \
             head_p50_ms={:.0} head_p99_ms={:.0} rss_mb={:.1} redis_bytes_per_event={:.0} \
             xadd_v1_entries_s={:.0} xadd_v2_entries_s={:.0} drain_to_xadd_v2={:.2} \
             xadd_v1_bytes_per_event={:.0} xadd_v2_bytes_per_event={:.0}",
            self.drain.bps(),
            self.drain.eps(),
            self.ceiling_eps(),
            self.ratio(),
            self.req_per_block(),
            self.head_in_sync.p50_ms,
            self.head_in_sync.p99_ms,
            self.rss_peak_mb,
            self.redis_bytes_per_event(),
            self.xadd_v1.entries_per_sec(),
            self.xadd_v2.entries_per_sec(),
            self.xadd_ratio(),
            self.xadd_v1.bytes_per_event(),
            self.xadd_v2.bytes_per_event()
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

    /// A run of 1000 blocks of 30 events: the drain at 30,000 events/s, its stream 1,100
    /// entries (1,000 events, 100 block entries) in 250,000 bytes; the raw XADD ceilings on 100
    /// blocks, v1 in 0.5 s and v2 (100 more entries) in 0.25 s.
    fn measured() -> BenchReport {
        BenchReport {
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
            xadd_v1: StreamCeiling {
                rate: Rate {
                    blocks: 100,
                    events: 30_000,
                    seconds: 0.5,
                },
                entries: 30_000,
                stream_bytes: 14_190_000,
            },
            xadd_v2: StreamCeiling {
                rate: Rate {
                    blocks: 100,
                    events: 30_000,
                    seconds: 0.25,
                },
                entries: 30_100,
                stream_bytes: 7_200_000,
            },
            requests_during_drain: 1010,
            stream_entries: 1100,
            stream_events: 1000,
            stream_bytes: 250_000,
            ..BenchReport::default()
        }
    }

    #[test]
    fn the_last_line_has_every_figure_the_issue_names() {
        assert_eq!(
            measured().line(),
            "drain_bps=100.0 drain_eps=30000 ceiling_eps=40000 ratio=0.75 req_per_block=1.010 \
             head_p50_ms=0 head_p99_ms=0 rss_mb=0.0 redis_bytes_per_event=250 \
             xadd_v1_entries_s=60000 xadd_v2_entries_s=120400 drain_to_xadd_v2=0.25 \
             xadd_v1_bytes_per_event=473 xadd_v2_bytes_per_event=240"
        );
    }

    #[test]
    fn the_table_shows_both_raw_xadd_ceilings_and_the_drain_against_v2() {
        let table = measured().table();
        let lines: Vec<&str> = table.lines().collect();
        for expected in [
            "ceiling: raw XADD, v1-shaped entries               100       30000      0.5        200        60000",
            "ceiling: raw XADD, v2 entries                      100       30000      0.2        400       120000",
            "raw XADD v1-shaped, entries/s              60000   (30000 entries for 30000 events; 473 bytes/event)",
            "raw XADD v2, entries/s                    120400   (30100 entries for 30000 events, block entries included; 240 bytes/event)",
            "drain / raw XADD v2                         0.25   (drain events/s / raw XADD events/s)",
            "redis stream bytes per event                 250   (block entries included: 0.2 MB over 1000 events; 1100 entries; used_memory grew 0.0 MB)",
        ] {
            assert!(
                lines.contains(&expected),
                "missing line {expected:?} in\n{table}"
            );
        }
    }

    #[test]
    fn without_the_ceilings_the_table_has_no_raw_xadd_lines() {
        let report = BenchReport {
            xadd_v1: StreamCeiling::default(),
            xadd_v2: StreamCeiling::default(),
            ..measured()
        };
        let table = report.table();
        assert!(!table.contains("raw XADD"), "{table}");
        assert!(report.line().contains(" drain_to_xadd_v2=0.00 "));
    }
}

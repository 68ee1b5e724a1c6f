//! The simulated chain: which blocks exist (a head that advances with wall time), what each
//! block contains (a pure function of the seed and its number), and forks near the head.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;

use crate::domain;
use crate::expected;
use crate::json::{self, Ctx};
use crate::model::{block_id, draw_header, generate_txs, AddressBook, SimBlock};
use crate::SimError;
use actors::rng::{key, Rng};

/// How far the irreversible ("solidified") head trails the head, as on mainnet.
pub const SOLID_LAG: u64 = 19;

/// Rendered blocks kept: a block is typically asked for twice (block, then infos) by the same
/// worker within milliseconds, so a few dozen suffice. One 300-tx block is about 0.5 MB.
const CACHE_BLOCKS: usize = 64;

/// The chain's shape. Every field has a default fit for a demo; the `sim` command takes all but
/// `genesis_ms` and `frozen` as flags (`help` is the flag's text, the doc the field's).
#[derive(Clone, Debug, PartialEq, clap::Args)]
pub struct SimParams {
    /// Seeds every block's content. Default 42.
    #[arg(
        long,
        default_value_t = 42,
        help = "Seeds every block's content: the same seed gives the same chain"
    )]
    pub seed: u64,
    /// The first block that exists; below it the node answers `{}`. Default 60,000,000.
    #[arg(
        long,
        default_value_t = 60_000_000,
        help = "The first block that exists"
    )]
    pub start_block: u64,
    /// Blocks that exist at start: the head at start is `start_block + history - 1`. Default 100.
    #[arg(long, default_value_t = 100, help = "Blocks already produced at start")]
    pub history: u64,
    /// Time between blocks, in ms. Default 3000.
    #[arg(long, default_value_t = 3000, help = "Time between blocks")]
    pub block_interval_ms: u64,
    /// Average transactions per block (actual counts vary ±20%, ~5% of blocks are empty).
    /// Default 300.
    #[arg(
        long,
        default_value_t = 300,
        help = "Average transactions per block (mainnet: about 300)"
    )]
    pub txs_per_block: u32,
    /// Timestamp of `start_block`, in ms. `None` (default): chosen at start so that the head's
    /// timestamp is about now. Give it to get byte-identical JSON across runs.
    #[arg(skip)]
    pub genesis_ms: Option<u64>,
    /// When true the head does not move with time, only through [`SimChain::advance`]. Default
    /// false.
    #[arg(skip)]
    pub frozen: bool,
    /// Chance (0..1) that a window of `fork_window` blocks starts with a fork: its first blocks are first
    /// served in another version, then replaced once the head passes them. Default 0.
    #[arg(
        long,
        default_value_t = 0.0,
        help = "Chance (0..1) that a window of --fork-window blocks starts with a fork: its first \
                blocks are served in another version while the head is among them, then replaced"
    )]
    pub fork_rate: f64,
    /// Forks start only at multiples of this: at most one fork covers any block. Default 32.
    #[arg(
        long,
        default_value_t = 32,
        help = "Forks start only at multiples of this many blocks (more than --max-fork-depth)"
    )]
    pub fork_window: u64,
    /// Forks replace 1 to this many blocks (at most 19, so irreversible blocks never change).
    /// Default 3.
    #[arg(
        long,
        default_value_t = 3,
        help = "Forks replace 1 to this many blocks (1..=19: irreversible blocks never change)"
    )]
    pub max_fork_depth: u64,
    /// When set, every node API request must carry it as `TRON-PRO-API-KEY` or get TronGrid's
    /// 401, so tests can prove the daemon sends the key on every request. Default none.
    #[arg(
        long,
        value_name = "KEY",
        help = "Answer 401, as TronGrid does, to every node request without this TRON-PRO-API-KEY"
    )]
    pub api_key: Option<String>,
}

impl Default for SimParams {
    fn default() -> Self {
        SimParams {
            seed: 42,
            start_block: 60_000_000,
            history: 100,
            block_interval_ms: 3000,
            txs_per_block: 300,
            genesis_ms: None,
            frozen: false,
            fork_rate: 0.0,
            fork_window: 32,
            max_fork_depth: 3,
            api_key: None,
        }
    }
}

impl SimParams {
    /// Every problem at once, so a bad command line is fixed in one go.
    pub fn validate(&self) -> Result<(), SimError> {
        let mut problems = Vec::new();
        if self.history == 0 {
            problems.push("history must be at least 1".to_string());
        }
        if self.block_interval_ms == 0 {
            problems.push("block_interval_ms must be at least 1".to_string());
        }
        if self.txs_per_block > 100_000 {
            problems.push("txs_per_block must be at most 100000".to_string());
        }
        // Transaction ids pack (number, index) into 64 bits.
        if self.start_block.saturating_add(self.history) > 1 << 40 {
            problems.push("start_block + history must stay below 2^40".to_string());
        }
        if !(0.0..=1.0).contains(&self.fork_rate) {
            problems.push("fork_rate must be within 0..1".to_string());
        }
        if !(1..=SOLID_LAG).contains(&self.max_fork_depth) {
            problems.push(format!("max_fork_depth must be within 1..={SOLID_LAG}"));
        }
        if self.fork_window <= self.max_fork_depth {
            problems.push("fork_window must be more than max_fork_depth".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SimError::InvalidParams(problems.join("; ")))
        }
    }
}

/// A block rendered as the node prints it.
pub(crate) struct Rendered {
    pub block: Bytes,
    pub header: Bytes,
    pub infos: Bytes,
    pub tx_count: usize,
}

#[derive(Default)]
struct Cache {
    map: HashMap<(u64, u32), Arc<Rendered>>,
    order: VecDeque<(u64, u32)>,
}

/// The simulated chain. Cheap to share (`Arc`); all methods take `&self`.
pub struct SimChain {
    params: SimParams,
    genesis_ms: u64,
    /// When the head at start was produced: the head moves one block per interval after it.
    epoch: Instant,
    advanced: AtomicU64,
    /// Time's blocks at the moment [`SimChain::halt`] was called; `u64::MAX` while time runs.
    halted_ticks: AtomicU64,
    book: AddressBook,
    cache: Mutex<Cache>,
}

/// The wall clock in ms: block timestamps are on it, as on a real node.
pub fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl SimChain {
    /// A chain whose head is `start_block + history - 1` now and moves on every
    /// `block_interval_ms`; settings it cannot honour are refused.
    pub fn new(params: SimParams) -> Result<Self, SimError> {
        params.validate()?;
        let interval = params.block_interval_ms;
        let (genesis_ms, behind) = match params.genesis_ms {
            Some(genesis) => (genesis, 0),
            None => {
                let now = wall_clock_ms();
                let head_ts = now - now % interval;
                let genesis = head_ts.saturating_sub((params.history - 1) * interval);
                (genesis, now - head_ts)
            }
        };
        // Backdating the epoch makes the next block appear when the wall clock reaches its
        // timestamp, not one full interval after start.
        let started = Instant::now();
        let epoch = started
            .checked_sub(Duration::from_millis(behind))
            .unwrap_or(started);
        Ok(SimChain {
            book: AddressBook::new(params.seed),
            params,
            genesis_ms,
            epoch,
            advanced: AtomicU64::new(0),
            halted_ticks: AtomicU64::new(u64::MAX),
            cache: Mutex::new(Cache::default()),
        })
    }

    /// The settings it was made with (the harnesses read the first block and the pace from them).
    pub fn params(&self) -> &SimParams {
        &self.params
    }

    /// Timestamp of `start_block`, in ms.
    pub fn genesis_ms(&self) -> u64 {
        self.genesis_ms
    }

    /// The newest block that exists now.
    pub fn head(&self) -> u64 {
        let p = &self.params;
        let ticks = if p.frozen {
            0
        } else {
            let elapsed = self.epoch.elapsed().as_millis() as u64 / p.block_interval_ms;
            elapsed.min(self.halted_ticks.load(Ordering::Relaxed))
        };
        p.start_block + p.history - 1 + ticks + self.advanced.load(Ordering::Relaxed)
    }

    /// The irreversible head, `head - 19`. It may be below `start_block` with a short history.
    pub fn solid_head(&self) -> u64 {
        self.head().saturating_sub(SOLID_LAG)
    }

    /// Stops the head where it is now (time brings no more blocks; `advance` still does), so
    /// that a harness can let a follower settle on a head that forks no more. Returns the head.
    pub fn halt(&self) -> u64 {
        let p = &self.params;
        if !p.frozen {
            let elapsed = self.epoch.elapsed().as_millis() as u64 / p.block_interval_ms;
            let _ = self.halted_ticks.fetch_min(elapsed, Ordering::Relaxed);
        }
        self.head()
    }

    /// Produces `blocks` more blocks at once, on top of those time brings.
    pub fn advance(&self, blocks: u64) {
        self.advanced.fetch_add(blocks, Ordering::Relaxed);
    }

    /// Block `number`'s timestamp (whether or not it exists yet).
    pub fn timestamp_of(&self, number: u64) -> u64 {
        self.genesis_ms
            + number.saturating_sub(self.params.start_block) * self.params.block_interval_ms
    }

    pub(crate) fn exists(&self, number: u64, head: u64) -> bool {
        number >= self.params.start_block && number <= head
    }

    /// Depth of the fork starting at `window_start`, if one does.
    fn fork_depth(&self, window_start: u64) -> Option<u64> {
        let p = &self.params;
        if p.fork_rate <= 0.0 || window_start <= p.start_block {
            return None;
        }
        let mut r = Rng::new(key(&[p.seed, domain::FORK, window_start]));
        r.chance(p.fork_rate).then(|| r.range(1, p.max_fork_depth))
    }

    /// The fork that replaces block `number`, as (first block, depth): such a block has two
    /// versions.
    fn fork_of(&self, number: u64) -> Option<(u64, u64)> {
        let start = number - number % self.params.fork_window;
        self.fork_depth(start)
            .filter(|&depth| number < start + depth)
            .map(|depth| (start, depth))
    }

    /// Which version of block `number` a node with head `head` serves: 1 while a fork that will
    /// replace it is the node's best chain, else 0 (canonical, final).
    pub fn version_at(&self, number: u64, head: u64) -> u32 {
        match self.fork_of(number) {
            Some((start, depth)) if head < start + depth => 1,
            _ => 0,
        }
    }

    /// Blocks that a fork replaces, as (first block, depth), for windows intersecting
    /// `from..=to`: what a test needs to know which retractions to expect.
    pub fn forks_between(&self, from: u64, to: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let window = self.params.fork_window;
        let mut start = from - from % window;
        while start <= to {
            if let Some(depth) = self.fork_depth(start) {
                out.push((start, depth));
            }
            start += window;
        }
        out
    }

    /// `blockID` (hex) of block `number` as a node with head `head` serves it. Defined below the
    /// first block too, where the node reports the irreversible block of a short history.
    pub fn id_at(&self, number: u64, head: u64) -> String {
        let version = self.version_at(number, head);
        actors::address::bytes_to_hex(&block_id(self.params.seed, number, version))
    }

    /// The model of block `number` as the node serves it when its head is `head`.
    pub fn block_at(&self, number: u64, head: u64) -> Option<SimBlock> {
        if !self.exists(number, head) {
            return None;
        }
        let p = &self.params;
        let version = self.version_at(number, head);
        let parent_id = match number.checked_sub(1) {
            Some(parent) => block_id(p.seed, parent, self.version_at(parent, head)),
            None => [0; 32],
        };
        let draw = draw_header(p.seed, number, version, p.txs_per_block);
        Some(SimBlock {
            number,
            version,
            id: block_id(p.seed, number, version),
            parent_id,
            timestamp_ms: self.timestamp_of(number),
            witness: draw.witness,
            cosmetic: draw.cosmetic,
            txs: generate_txs(&self.book, p.seed, number, version, draw.tx_count),
        })
    }

    /// The model of block `number` as served now; `None` when it does not exist (yet).
    pub fn block(&self, number: u64) -> Option<SimBlock> {
        self.block_at(number, self.head())
    }

    /// The events block `number` yields, as served now; `None` when it does not exist (yet).
    pub fn expected_block(&self, number: u64) -> Option<actors::model::Block> {
        self.expected_block_at(number, self.head())
    }

    /// The events block `number` yields on a node whose head is `head`. With a head far enough
    /// ahead (19 blocks), this is the final, canonical block.
    pub fn expected_block_at(&self, number: u64, head: u64) -> Option<actors::model::Block> {
        self.block_at(number, head)
            .map(|block| expected::expected_block(&self.book, &block))
    }

    /// The `getblockbynum` JSON of block `number` as served now.
    pub fn block_json(&self, number: u64) -> Option<String> {
        let rendered = self.rendered(number, self.head())?;
        Some(String::from_utf8_lossy(&rendered.block).into_owned())
    }

    /// The `gettransactioninfobyblocknum` JSON of block `number` as served now.
    pub fn infos_json(&self, number: u64) -> Option<String> {
        let rendered = self.rendered(number, self.head())?;
        Some(String::from_utf8_lossy(&rendered.infos).into_owned())
    }

    /// The rendered JSON of block `number`, from the cache when it is there.
    pub(crate) fn rendered(&self, number: u64, head: u64) -> Option<Arc<Rendered>> {
        if !self.exists(number, head) {
            return None;
        }
        let cache_key = (number, self.version_at(number, head));
        if let Some(hit) = self.lock_cache().map.get(&cache_key) {
            return Some(Arc::clone(hit));
        }
        // Rendered outside the lock: two workers may render the same block, which is cheaper
        // than making every request wait on one renderer.
        let block = self.block_at(number, head)?;
        let ctx = Ctx {
            book: &self.book,
            seed: self.params.seed,
        };
        let mut full = Vec::with_capacity(block.txs.len() * 1300 + 600);
        json::write_block(&ctx, &block, true, &mut full);
        let mut header = Vec::with_capacity(600);
        json::write_block(&ctx, &block, false, &mut header);
        let mut infos = Vec::with_capacity(block.txs.len() * 800 + 2);
        json::write_infos(&ctx, &block, &mut infos);
        let rendered = Arc::new(Rendered {
            block: Bytes::from(full),
            header: Bytes::from(header),
            infos: Bytes::from(infos),
            tx_count: block.txs.len(),
        });
        let mut cache = self.lock_cache();
        if cache.map.insert(cache_key, Arc::clone(&rendered)).is_none() {
            cache.order.push_back(cache_key);
            while cache.order.len() > CACHE_BLOCKS {
                if let Some(old) = cache.order.pop_front() {
                    cache.map.remove(&old);
                }
            }
        }
        Some(rendered)
    }

    /// Block `number` in the version a node with head `head` does *not* serve: what a node that
    /// switches branches between two requests answers the second one with. `None` for a block
    /// with one version, and for an irreversible one (a node never switches below those).
    pub(crate) fn rendered_other_version(&self, number: u64, head: u64) -> Option<Arc<Rendered>> {
        let (start, depth) = self.fork_of(number)?;
        if !self.exists(number, head) || number <= head.saturating_sub(SOLID_LAG) {
            return None;
        }
        // A head at which the other version is served: version 0 once the head has passed the
        // fork, version 1 when the block itself is the head.
        let other_head = if self.version_at(number, head) == 1 {
            start + depth
        } else {
            number
        };
        self.rendered(number, other_head)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // The cache holds no invariant a panicking holder could break.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

//! What this machine can do without the daemon: the node serving, the decoder decoding and
//! Redis committing, each alone; and the naive design on the same kind of blocks.

use crate::store::{Keys, RedisStore, RedisStoreConfig};
use crate::tron::{decode, TronClient, TronClientConfig};
use actors::chain::Chain;
use actors::model::Block;
use actors::store::{Origin, Store};
use std::sync::Arc;
use std::time::Instant;
use tron_sim::chain::wall_clock_ms;
use tron_sim::SimHandle;

use super::report::Rate;
use super::{
    connect, events_in, BenchError, CEILING_CONCURRENCY, CEILING_PREFIX, NAIVE_PREFIX, RANGE,
};

/// Bodies in ranges of 100 and infos per block over plain HTTP, answers read and dropped.
pub(super) async fn serve_alone(
    sim: &SimHandle,
    (from, to): (u64, u64),
) -> Result<Rate, BenchError> {
    crate::tls::install_crypto_provider();
    let http = reqwest::Client::builder()
        .build()
        .map_err(|e| BenchError::Client(e.to_string()))?;
    let base = sim.url();
    let started = Instant::now();
    let post = |path: &'static str, body: serde_json::Value| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let answer = http
                .post(url)
                .json(&body)
                .send()
                .await
                .map_err(|e| BenchError::Client(e.to_string()))?;
            let bytes = answer
                .bytes()
                .await
                .map_err(|e| BenchError::Client(e.to_string()))?;
            Ok::<usize, BenchError>(bytes.len())
        }
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(CEILING_CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    let mut start = from;
    while start < to {
        let end = (start + RANGE).min(to);
        let permit = permits.clone();
        let request = post(
            "/wallet/getblockbylimitnext",
            serde_json::json!({"startNum": start, "endNum": end}),
        );
        tasks.spawn(async move {
            let _permit = permit.acquire_owned().await;
            request.await
        });
        for n in start..end {
            let permit = permits.clone();
            let request = post(
                "/wallet/gettransactioninfobyblocknum",
                serde_json::json!({ "num": n }),
            );
            tasks.spawn(async move {
                let _permit = permit.acquire_owned().await;
                request.await
            });
        }
        start = end;
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| BenchError::Client(e.to_string()))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Rate {
        blocks: to - from,
        events: events_in(sim, (from, to)),
        seconds,
    })
}

/// The daemon's decoder over the node's JSON of the same blocks, on one core.
pub(super) fn decode_alone(sim: &SimHandle, (from, to): (u64, u64)) -> Result<Rate, BenchError> {
    let chain = sim.chain();
    let mut inputs = Vec::new();
    for n in from..to {
        if let (Some(body), Some(infos)) = (chain.block_json(n), chain.infos_json(n)) {
            inputs.push((n, body, infos));
        }
    }
    let started = Instant::now();
    let mut events = 0u64;
    for (n, body, infos) in &inputs {
        let block = decode::decode_block(*n, body.as_bytes(), infos.as_bytes())?;
        events += block.events.len() as u64;
    }
    Ok(Rate {
        blocks: inputs.len() as u64,
        events,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Pre-built blocks through the exactly-once commit script: first one at a time, then
/// `CEILING_CONCURRENCY` at once. Each half of the range is its own measurement.
pub(super) async fn commit_alone(
    sim: &SimHandle,
    redis_url: &str,
    (from, to): (u64, u64),
) -> Result<(Rate, Rate), BenchError> {
    let head = sim.chain().head();
    let blocks: Vec<Block> = (from..to)
        .filter_map(|n| sim.chain().expected_block_at(n, head))
        .collect();
    let store = RedisStore::new(&RedisStoreConfig {
        url: redis_url.to_string(),
        prefix: CEILING_PREFIX.to_string(),
        ..crate::config::Config::default().store_config()
    })?;
    let (serial_blocks, parallel_blocks) = blocks.split_at(blocks.len() / 2);

    let started = Instant::now();
    let mut events = 0;
    for block in serial_blocks {
        store
            .commit(Origin::Backlog, block, wall_clock_ms())
            .await?;
        events += block.events.len() as u64;
    }
    let serial = Rate {
        blocks: serial_blocks.len() as u64,
        events,
        seconds: started.elapsed().as_secs_f64(),
    };

    let shared: Arc<Vec<Block>> = Arc::new(parallel_blocks.to_vec());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CEILING_CONCURRENCY {
        let (store, shared, next) = (store.clone(), shared.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(block) = shared.get(i) else {
                    return Ok::<(), actors::store::StoreError>(());
                };
                store
                    .commit(Origin::Backlog, block, wall_clock_ms())
                    .await?;
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| BenchError::Client(e.to_string()))??;
    }
    let parallel = Rate {
        blocks: shared.len() as u64,
        events: shared.iter().map(|b| b.events.len() as u64).sum(),
        seconds: started.elapsed().as_secs_f64(),
    };
    store.delete_all_keys().await?;
    Ok((serial, parallel))
}

/// The design we compare with: one block at a time (two requests each, no ranges) and one XADD
/// round trip per event, then the done marker.
pub(super) async fn naive(
    sim: &SimHandle,
    redis_url: &str,
    (from, to): (u64, u64),
) -> Result<Rate, BenchError> {
    let client = TronClient::new(TronClientConfig {
        url: sim.url(),
        rate_limit_rps: 0.0,
        use_range_fetch: false,
        ..crate::config::Config::default().client_config()
    })
    .map_err(|e| BenchError::Client(e.to_string()))?;
    let keys = Keys::new(NAIVE_PREFIX);
    let mut conn = connect(redis_url).await?;
    let started = Instant::now();
    let mut events = 0;
    for n in (from..to).rev() {
        let block = client.block(n, actors::chain::Lane::Backlog).await?;
        for event in &block.events {
            let fields = event.stream_fields(&block.header);
            let _: String = redis::cmd("XADD")
                .arg(keys.events())
                .arg("*")
                .arg(&fields)
                .query_async(&mut conn)
                .await?;
        }
        let _: u8 = redis::cmd("SETBIT")
            .arg(keys.done())
            .arg(n)
            .arg(1)
            .query_async(&mut conn)
            .await?;
        events += block.events.len() as u64;
    }
    let rate = Rate {
        blocks: to - from,
        events,
        seconds: started.elapsed().as_secs_f64(),
    };
    let _: () = redis::cmd("DEL")
        .arg(keys.events())
        .arg(keys.done())
        .query_async(&mut conn)
        .await?;
    Ok(rate)
}

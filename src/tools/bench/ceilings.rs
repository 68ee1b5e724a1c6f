//! What this machine can do without the daemon: the node serving, the decoder decoding, Redis
//! committing and Redis merely appending the same entries, each alone; and the naive design on
//! the same kind of blocks.

use crate::store::{Keys, RedisStore, RedisStoreConfig};
use crate::tron::{decode, TronClient, TronClientConfig};
use actors::chain::Chain;
use actors::model::{Block, BlockHeader, Event, EventBody};
use actors::store::{Origin, Store};
use std::sync::Arc;
use std::time::Instant;
use tron_sim::chain::wall_clock_ms;
use tron_sim::SimHandle;

use super::report::{Rate, StreamCeiling};
use super::{
    connect, events_in, BenchError, CEILING_CONCURRENCY, CEILING_PREFIX, NAIVE_PREFIX, RANGE,
    XADD_PREFIX,
};

/// XADDs sent per pipeline by the raw append ceiling: enough that the round trip is a small part
/// of each batch's time.
const XADD_BATCH: usize = 1_000;

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

/// Which contract's entries the raw append ceiling writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EntryShape {
    /// The v1 shape (see [`v1_event_fields`]): one entry per event, nothing per block.
    V1,
    /// Exactly what the commit script writes for contract v2: each event's
    /// [`Event::stream_fields`], then the block's [`BlockHeader::block_entry_fields`].
    V2,
}

/// The same entries the drain writes, XADDed pipelined (`XADD_BATCH` per pipeline, one pipeline
/// at a time) into a fresh stream, without the commit script: what appending to the stream costs
/// at all, and what the entries cost in memory (MEMORY USAGE, exact). The stream is deleted after.
pub(super) async fn xadd_alone(
    sim: &SimHandle,
    redis_url: &str,
    (from, to): (u64, u64),
    shape: EntryShape,
) -> Result<StreamCeiling, BenchError> {
    let head = sim.chain().head();
    let blocks: Vec<Block> = (from..to)
        .filter_map(|n| sim.chain().expected_block_at(n, head))
        .collect();
    let mut entries: Vec<Vec<(&'static str, String)>> = Vec::new();
    for block in &blocks {
        match shape {
            EntryShape::V1 => entries.extend(
                block
                    .events
                    .iter()
                    .map(|event| v1_event_fields(event, &block.header)),
            ),
            EntryShape::V2 => {
                entries.extend(
                    block
                        .events
                        .iter()
                        .map(|event| event.stream_fields(block.header.number)),
                );
                entries.push(block.header.block_entry_fields(block.events.len()));
            }
        }
    }
    let stream = format!("{XADD_PREFIX}:{shape:?}:events");
    // Built before the clock starts: the ceiling is Redis appending, not this process
    // formatting.
    let pipelines: Vec<redis::Pipeline> = entries
        .chunks(XADD_BATCH)
        .map(|batch| {
            let mut pipe = redis::pipe();
            for fields in batch {
                pipe.cmd("XADD").arg(&stream).arg("*").arg(fields).ignore();
            }
            pipe
        })
        .collect();
    let mut conn = connect(redis_url).await?;
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut conn)
        .await?;
    let started = Instant::now();
    for pipe in &pipelines {
        let _: () = pipe.query_async(&mut conn).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let stream_bytes = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&stream)
        .arg("SAMPLES")
        .arg(0)
        .query_async::<Option<u64>>(&mut conn)
        .await?
        .unwrap_or(0);
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut conn)
        .await?;
    Ok(StreamCeiling {
        rate: Rate {
            blocks: blocks.len() as u64,
            events: blocks.iter().map(|b| b.events.len() as u64).sum(),
            seconds,
        },
        entries: entries.len() as u64,
        stream_bytes,
    })
}

/// An event's entry in the v1 shape: the old contract, `v=1 kind uid block block_hash
/// block_time tx`, then the kind's fields. The v1 shape, kept only to measure: the model writes
/// v2, and this copy is frozen so that the v1 figure stays comparable whatever v2 becomes.
fn v1_event_fields(event: &Event, header: &BlockHeader) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("v", "1".to_string()),
        ("kind", v1_kind(&event.body).to_string()),
        ("uid", event.uid.clone()),
        ("block", header.number.to_string()),
        ("block_hash", header.hash.clone()),
        ("block_time", header.timestamp_ms.to_string()),
        ("tx", event.tx.clone()),
    ];
    match &event.body {
        EventBody::Trc20Transfer {
            contract,
            from,
            to,
            value,
        } => fields.extend([
            ("contract", contract.clone()),
            ("from", from.clone()),
            ("to", to.clone()),
            ("value", value.clone()),
        ]),
        EventBody::Trc721Transfer {
            contract,
            from,
            to,
            token_id,
        } => fields.extend([
            ("contract", contract.clone()),
            ("from", from.clone()),
            ("to", to.clone()),
            ("token_id", token_id.clone()),
        ]),
        EventBody::Approval {
            contract,
            owner,
            spender,
            value,
        } => fields.extend([
            ("contract", contract.clone()),
            ("owner", owner.clone()),
            ("spender", spender.clone()),
            ("value", value.clone()),
        ]),
        EventBody::Log {
            contract,
            topics,
            data,
        } => fields.extend([
            ("contract", contract.clone()),
            ("topics", topics.join(",")),
            ("data", data.clone()),
        ]),
        EventBody::TrxTransfer { from, to, value } => fields.extend([
            ("from", from.clone()),
            ("to", to.clone()),
            ("value", value.clone()),
        ]),
        EventBody::Trc10Transfer {
            from,
            to,
            value,
            token,
        } => fields.extend([
            ("from", from.clone()),
            ("to", to.clone()),
            ("value", value.clone()),
            ("token", token.clone()),
        ]),
        EventBody::InternalTransfer {
            from,
            to,
            value,
            token,
        } => {
            fields.extend([
                ("from", from.clone()),
                ("to", to.clone()),
                ("value", value.clone()),
            ]);
            if let Some(token) = token {
                fields.push(("token", token.clone()));
            }
        }
    }
    fields
}

/// The `kind` strings of contract v1.
fn v1_kind(body: &EventBody) -> &'static str {
    match body {
        EventBody::Trc20Transfer { .. } => "trc20_transfer",
        EventBody::Trc721Transfer { .. } => "trc721_transfer",
        EventBody::Approval { .. } => "approval",
        EventBody::Log { .. } => "log",
        EventBody::TrxTransfer { .. } => "trx_transfer",
        EventBody::Trc10Transfer { .. } => "trc10_transfer",
        EventBody::InternalTransfer { .. } => "internal_transfer",
    }
}

/// The design we compare with: one block at a time (two requests each, no ranges) and one XADD
/// round trip per event, then the done marker.
pub(super) async fn naive(
    sim: &SimHandle,
    redis_url: &str,
    (from, to): (u64, u64),
) -> Result<Rate, BenchError> {
    let client = TronClient::new(TronClientConfig {
        urls: vec![sim.url()],
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
            let fields = event.stream_fields(block.header.number);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v1_shape_is_the_old_contract() {
        let header = BlockHeader {
            number: 7,
            hash: "00".repeat(32),
            parent_hash: "11".repeat(32),
            timestamp_ms: 21_000,
        };
        let event = Event {
            uid: "ab_0".into(),
            tx: "ab".into(),
            body: EventBody::Log {
                contract: "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t".into(),
                topics: vec!["aa".into(), "bb".into()],
                data: "cc".into(),
            },
        };
        let fields = v1_event_fields(&event, &header);
        let names: Vec<_> = fields.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                "v",
                "kind",
                "uid",
                "block",
                "block_hash",
                "block_time",
                "tx",
                "contract",
                "topics",
                "data"
            ]
        );
        let values: Vec<_> = fields.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            values[..7],
            ["1", "log", "ab_0", "7", header.hash.as_str(), "21000", "ab"]
        );
        assert_eq!(values[8], "aa,bb");
    }
}

//! `[filter]` in the daemon: filtered events are not published, every block is still committed
//! with its `block` entry, `verify` with the same filter finds the stream exact, and a bad
//! filter stops the start naming each bad value.
#![allow(clippy::unwrap_used)]

mod common;

use actors::model::{Block, EventBody};
use common::cli::{output, text};
use common::{
    consumer_view, expected_fields, frozen_sim, read_stream, start_daemon, test_config, wait_done,
    TestRedis,
};
use std::collections::HashMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const USDT: &str = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";

fn usdt_transfers_only(mut block: Block) -> Block {
    block.events.retain(|event| {
        matches!(&event.body, EventBody::Trc20Transfer { contract, .. } if contract == USDT)
    });
    block
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usdt_only_filter_publishes_exactly_the_usdt_transfers_and_every_block_entry() {
    let redis = TestRedis::start().await;
    let sim = frozen_sim(40, 20).await;
    let head = sim.chain().head();
    let from = head - 9;
    let start = from.to_string();
    let config = test_config(
        &sim.url(),
        &redis.url(),
        &[
            ("sync.start_block", start.as_str()),
            ("filter.kinds", "trc20"),
            // Hex, as an operator may copy it from an explorer: the stream says base58.
            (
                "filter.contracts",
                "41a614f803b6fd780986a42c78ec9c7f77e6ded13c",
            ),
        ],
    );
    let daemon = start_daemon(&config).await;
    wait_done(&daemon.store, from, head, WAIT).await;
    daemon.shutdown().await.unwrap();

    let entries = read_stream(&mut redis.conn().await, "{tron}:events").await;
    let view = consumer_view(&entries);
    assert!(view.violations.is_empty(), "{:?}", view.violations);
    let mut published = 0;
    let mut unfiltered = 0;
    // Blocks whose `block` entry counts fewer events than the unfiltered block has.
    let mut changed = 0;
    for number in from..=head {
        let node_block = sim.chain().expected_block(number).unwrap();
        unfiltered += node_block.events.len();
        let all = node_block.events.len();
        let expected = usdt_transfers_only(node_block);
        published += expected.events.len();
        changed += usize::from(expected.events.len() != all);
        let got = &view.blocks[&number];
        let mut got_entries: Vec<HashMap<String, String>> = got
            .events
            .iter()
            .map(|fields| fields.iter().cloned().collect())
            .collect();
        got_entries.push(got.block_entry.iter().cloned().collect());
        assert_eq!(got_entries, expected_fields(&expected), "block {number}");
    }
    assert!(
        published > 0 && published < unfiltered,
        "{published} of {unfiltered}"
    );
    assert_eq!(
        view.blocks.keys().copied().collect::<Vec<_>>(),
        (from..=head).collect::<Vec<_>>()
    );

    // verify applies the configured filter to the node's blocks: exact with it, not without.
    let range = [
        "verify",
        "--from",
        &from.to_string(),
        "--to",
        &head.to_string(),
    ]
    .map(str::to_string);
    let args: Vec<&str> = range.iter().map(String::as_str).collect();
    let sim_url = sim.url();
    let redis_url = redis.url();
    let base = [
        ("TRON_ACTORS_NODE__URL", sim_url.as_str()),
        ("TRON_ACTORS_REDIS__URL", redis_url.as_str()),
    ];
    let mut filtered_env = base.to_vec();
    filtered_env.extend([
        ("TRON_ACTORS_FILTER__KINDS", "trc20"),
        ("TRON_ACTORS_FILTER__CONTRACTS", USDT),
    ]);
    let out = output(&args, &filtered_env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let out = output(&args, &base).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    // Every filtered event is missing, and each changed block's `block` entry differs.
    assert!(
        stdout.contains(&format!(
            "missing {}, duplicated 0, unexpected {changed},",
            unfiltered - published + changed
        )),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_bad_filter_is_refused_at_start_naming_every_bad_value() {
    let out = output(
        &["run", "--dry-run"],
        &[
            ("TRON_ACTORS_FILTER__KINDS", "trc20,usdt"),
            (
                "TRON_ACTORS_FILTER__CONTRACTS",
                "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6x",
            ),
            ("TRON_ACTORS_FILTER__ADDRESSES", "41zz"),
        ],
    )
    .await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for named in [
        "filter.kinds: \"usdt\" is not an event kind",
        "filter.contracts: address \"TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6x\" is not a valid base58check address",
        "filter.addresses: address \"41zz\" is not hex",
    ] {
        assert!(stderr.contains(named), "{named} not in {stderr}");
    }
}

//! The production decoder (`tron::decode`) against the simulated node, block by block: the node's
//! own block and infos JSON, decoded, must be exactly the events the simulator says the block
//! yields (rendered from its model, independently of the JSON; docs/EVENTS.md).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use tron_actors::tron::decode::decode_block;
use tron_sim::model::TxKind;
use tron_sim::{SimChain, SimParams};

/// A multiple of 3000, as mainnet timestamps are.
const GENESIS: u64 = 1_700_000_001_000;
const START: u64 = 1_000;

fn chain(seed: u64, txs_per_block: u32, history: u64) -> SimChain {
    SimChain::new(SimParams {
        seed,
        start_block: START,
        history,
        txs_per_block,
        genesis_ms: Some(GENESIS),
        frozen: true,
        ..SimParams::default()
    })
    .unwrap()
}

/// What a run of blocks covered: transaction kinds, event kinds, empty blocks.
#[derive(Default)]
struct Covered {
    tx_kinds: BTreeSet<&'static str>,
    event_kinds: BTreeSet<&'static str>,
    empty_blocks: usize,
    blocks: usize,
}

/// Decodes every block of the chain and compares it with the expected one.
fn decode_every_block(chain: &SimChain, covered: &mut Covered) {
    for number in START..=chain.head() {
        let block_json = chain.block_json(number).unwrap();
        let infos_json = chain.infos_json(number).unwrap();
        let decoded = decode_block(number, block_json.as_bytes(), infos_json.as_bytes())
            .unwrap_or_else(|error| panic!("block {number}: {error}"));
        let expected = chain.expected_block(number).unwrap();
        assert_eq!(decoded, expected, "block {number}");

        let txs = chain.block(number).unwrap().txs;
        if txs.is_empty() {
            covered.empty_blocks += 1;
        }
        covered
            .tx_kinds
            .extend(txs.iter().map(|tx| tx.kind.label()));
        covered
            .event_kinds
            .extend(expected.events.iter().map(|event| event.body.kind()));
        covered.blocks += 1;
    }
}

#[test]
fn the_decoder_yields_exactly_the_simulated_nodes_expected_events_block_by_block() {
    let mut covered = Covered::default();
    // Mainnet-sized blocks, then small ones (more of them empty), on other seeds.
    decode_every_block(&chain(11, 300, 200), &mut covered);
    decode_every_block(&chain(3, 20, 200), &mut covered);
    decode_every_block(&chain(29, 5, 100), &mut covered);

    assert_eq!(covered.blocks, 500);
    assert!(covered.empty_blocks > 0, "no empty block was decoded");
    // `call` is a call to a contract no rule knows: its logs are generic `log` events.
    for kind in TxKind::LABELS {
        assert!(
            covered.tx_kinds.contains(kind),
            "no {kind} transaction among {:?}",
            covered.tx_kinds
        );
    }
    assert_eq!(
        covered.event_kinds.into_iter().collect::<Vec<_>>(),
        ["approval", "internal", "log", "trc10", "trc20", "trc721", "trx"]
    );
}

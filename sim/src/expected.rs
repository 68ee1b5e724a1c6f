//! The events a simulated block must yield, by the rules of `docs/EVENTS.md`, computed from the
//! model (what each transaction is), never from the JSON the simulator serves.

use actors::model::{Block, BlockHeader, Event, EventBody};

use crate::json::to_hex as bytes_to_hex;
use crate::model::{AddressBook, SimBlock, SimInternal, SimLog, TxKind};

pub(crate) fn expected_block(book: &AddressBook, block: &SimBlock) -> Block {
    let mut events = Vec::new();
    for tx in &block.txs {
        tx_events(book, &bytes_to_hex(&tx.id), &tx.kind, &mut events);
    }
    Block {
        header: BlockHeader {
            number: block.number,
            hash: bytes_to_hex(&block.id),
            parent_hash: bytes_to_hex(&block.parent_id),
            timestamp_ms: block.timestamp_ms,
        },
        events,
    }
}

fn event(tx: &str, suffix: &str, body: EventBody) -> Event {
    Event {
        uid: format!("{tx}_{suffix}"),
        tx: tx.to_string(),
        body,
    }
}

fn tx_events(book: &AddressBook, tx: &str, kind: &TxKind, out: &mut Vec<Event>) {
    let b58 = |id| book.base58(id).to_string();
    match kind {
        TxKind::Trx { from, to, amount } => out.push(event(
            tx,
            "trx",
            EventBody::TrxTransfer {
                from: b58(*from),
                to: b58(*to),
                value: amount.to_string(),
            },
        )),
        TxKind::Trc10 {
            from,
            to,
            token,
            amount,
        } => out.push(event(
            tx,
            "trc10",
            EventBody::Trc10Transfer {
                from: b58(*from),
                to: b58(*to),
                value: amount.to_string(),
                token: (*token).to_string(),
            },
        )),
        TxKind::Trc20 {
            token,
            from,
            to,
            value,
        } => out.push(event(
            tx,
            "0",
            EventBody::Trc20Transfer {
                contract: b58(*token),
                from: b58(*from),
                to: b58(*to),
                value: value.to_decimal(),
            },
        )),
        TxKind::Approval {
            token,
            owner,
            spender,
            value,
        } => out.push(event(
            tx,
            "0",
            EventBody::Approval {
                contract: b58(*token),
                owner: b58(*owner),
                spender: b58(*spender),
                value: value.to_decimal(),
            },
        )),
        TxKind::Trc721 {
            contract,
            from,
            to,
            token_id,
        } => out.push(event(
            tx,
            "0",
            EventBody::Trc721Transfer {
                contract: b58(*contract),
                from: b58(*from),
                to: b58(*to),
                token_id: token_id.to_string(),
            },
        )),
        TxKind::Call {
            owner,
            contract,
            call_value,
            logs,
            internals,
            ..
        } => {
            if *call_value > 0 {
                out.push(event(
                    tx,
                    "trx",
                    EventBody::TrxTransfer {
                        from: b58(*owner),
                        to: b58(*contract),
                        value: call_value.to_string(),
                    },
                ));
            }
            for (i, log) in logs.iter().enumerate() {
                out.push(event(tx, &i.to_string(), log_event(book, log)));
            }
            for (j, internal) in internals.iter().enumerate() {
                internal_events(book, tx, j, internal, out);
            }
        }
        // Nothing of a failed transaction took effect on chain.
        TxKind::Failed { .. } => {}
        // Freeze, vote, delegate, ...: no transfer of their own, and no logs.
        TxKind::System(_) => {}
    }
}

fn log_event(book: &AddressBook, log: &SimLog) -> EventBody {
    let b58 = |id| book.base58(id).to_string();
    match log {
        SimLog::Trc20Transfer {
            token,
            from,
            to,
            value,
        } => EventBody::Trc20Transfer {
            contract: b58(*token),
            from: b58(*from),
            to: b58(*to),
            value: value.to_decimal(),
        },
        SimLog::Approval {
            token,
            owner,
            spender,
            value,
        } => EventBody::Approval {
            contract: b58(*token),
            owner: b58(*owner),
            spender: b58(*spender),
            value: value.to_decimal(),
        },
        SimLog::Raw {
            contract,
            topics,
            data,
        } => EventBody::Log {
            contract: b58(*contract),
            topics: topics.iter().map(|t| bytes_to_hex(t)).collect(),
            data: bytes_to_hex(data),
        },
    }
}

fn internal_events(
    book: &AddressBook,
    tx: &str,
    j: usize,
    internal: &SimInternal,
    out: &mut Vec<Event>,
) {
    if internal.rejected {
        return;
    }
    for (k, value) in internal.values.iter().enumerate() {
        if value.amount == 0 {
            continue;
        }
        let suffix = if k == 0 {
            format!("int{j}")
        } else {
            format!("int{j}.{k}")
        };
        out.push(event(
            tx,
            &suffix,
            EventBody::InternalTransfer {
                from: book.base58(internal.caller).to_string(),
                to: book.base58(internal.to).to_string(),
                value: value.amount.to_string(),
                token: value.token.map(str::to_string),
            },
        ));
    }
}

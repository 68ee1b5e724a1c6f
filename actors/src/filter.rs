//! Which events are kept: the daemon's `filter.*` keys (events it does not publish) and
//! `tron-actors tail`'s `--kind`, `--contract` and `--address` (entries it does not print) are the
//! same rule, so a filter means the same thing on both sides of the stream.
//!
//! An event is kept when it passes every list that is not empty: its `kind` is one of `kinds`,
//! its `contract` is one of `contracts`, its `from` or its `to` (an approval's owner or spender)
//! is one of `addresses`. An empty filter keeps everything. Addresses are given in base58
//! (`T...`) or hex (`41...`, 42 characters, or 40 without the `41`) and compared in base58, as
//! the stream writes them; an event without a contract (`trx`, `trc10`, `internal`) never
//! passes a contract list, a `log` (no from/to) never passes an address list.

use crate::address::{any_to_base58, AddressError};
use crate::model::EventBody;
use std::collections::BTreeSet;

/// Every event `kind` of the stream (docs/EVENTS.md), in the order the docs list them.
pub const EVENT_KINDS: [&str; 7] = [
    "trc20", "trc721", "approval", "log", "trx", "trc10", "internal",
];

/// Why a filter cannot be built; each names the list and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A kind that no event has.
    #[error("{list}: {kind:?} is not an event kind (one of {})", EVENT_KINDS.join(", "))]
    UnknownKind {
        /// The list it was given in (`filter.kinds`, `--kind`).
        list: &'static str,
        /// The value as given.
        kind: String,
    },
    /// Not a TRON address in base58 or hex.
    #[error("{list}: {error} (give a base58 address, T..., or 42 hex characters, 41...)")]
    BadAddress {
        /// The list it was given in (`filter.contracts`, `--address`, ...).
        list: &'static str,
        /// What is wrong with it.
        error: AddressError,
    },
}

/// The names of the three lists, as the caller calls them (config keys or command-line flags),
/// for the messages of [`FilterError`].
#[derive(Clone, Copy, Debug)]
pub struct ListNames {
    /// Where `kinds` came from, e.g. `filter.kinds`.
    pub kinds: &'static str,
    /// Where `contracts` came from.
    pub contracts: &'static str,
    /// Where `addresses` came from.
    pub addresses: &'static str,
}

/// The rule of the module docs, with addresses already in base58.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    kinds: BTreeSet<String>,
    contracts: BTreeSet<String>,
    addresses: BTreeSet<String>,
}

impl EventFilter {
    /// Checks and normalizes the three lists; every bad value is reported at once.
    pub fn new(
        kinds: &[String],
        contracts: &[String],
        addresses: &[String],
        names: ListNames,
    ) -> Result<EventFilter, Vec<FilterError>> {
        let mut errors = Vec::new();
        let mut filter = EventFilter::default();
        for kind in kinds {
            let kind = kind.trim();
            if EVENT_KINDS.contains(&kind) {
                filter.kinds.insert(kind.to_string());
            } else {
                errors.push(FilterError::UnknownKind {
                    list: names.kinds,
                    kind: kind.to_string(),
                });
            }
        }
        for (list, given, into) in [
            (names.contracts, contracts, &mut filter.contracts),
            (names.addresses, addresses, &mut filter.addresses),
        ] {
            for address in given {
                match any_to_base58(address.trim()) {
                    Ok(base58) => {
                        into.insert(base58);
                    }
                    Err(error) => errors.push(FilterError::BadAddress { list, error }),
                }
            }
        }
        if errors.is_empty() {
            Ok(filter)
        } else {
            Err(errors)
        }
    }

    /// A filter that keeps no event (`tail --kind block`).
    pub fn none() -> EventFilter {
        EventFilter {
            kinds: BTreeSet::from([String::new()]),
            ..EventFilter::default()
        }
    }

    /// True when it keeps every event.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty() && self.contracts.is_empty() && self.addresses.is_empty()
    }

    /// Whether an event with these fields is kept (`contract`, `from`, `to` empty where the
    /// kind has none, as in the stream).
    pub fn keeps(&self, kind: &str, contract: &str, from: &str, to: &str) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(kind))
            && (self.contracts.is_empty() || self.contracts.contains(contract))
            && (self.addresses.is_empty()
                || (!from.is_empty() && self.addresses.contains(from))
                || (!to.is_empty() && self.addresses.contains(to)))
    }

    /// Whether a decoded event is kept.
    pub fn keeps_event(&self, body: &EventBody) -> bool {
        if self.is_empty() {
            return true;
        }
        let (contract, from, to) = match body {
            EventBody::Trc20Transfer {
                contract, from, to, ..
            }
            | EventBody::Trc721Transfer {
                contract, from, to, ..
            } => (contract.as_str(), from.as_str(), to.as_str()),
            EventBody::Approval {
                contract,
                owner,
                spender,
                ..
            } => (contract.as_str(), owner.as_str(), spender.as_str()),
            EventBody::Log { contract, .. } => (contract.as_str(), "", ""),
            EventBody::TrxTransfer { from, to, .. }
            | EventBody::Trc10Transfer { from, to, .. }
            | EventBody::InternalTransfer { from, to, .. } => ("", from.as_str(), to.as_str()),
        };
        self.keeps(body.kind(), contract, from, to)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const USDT: &str = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";
    const USDT_HEX: &str = "41a614f803b6fd780986a42c78ec9c7f77e6ded13c";
    const NAMES: ListNames = ListNames {
        kinds: "filter.kinds",
        contracts: "filter.contracts",
        addresses: "filter.addresses",
    };

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn trc20(contract: &str, from: &str, to: &str) -> EventBody {
        EventBody::Trc20Transfer {
            contract: contract.into(),
            from: from.into(),
            to: to.into(),
            value: "1".into(),
        }
    }

    #[test]
    fn an_empty_filter_keeps_everything() {
        let filter = EventFilter::new(&[], &[], &[], NAMES).unwrap();
        assert!(filter.is_empty());
        assert!(filter.keeps_event(&trc20("a", "b", "c")));
        assert!(filter.keeps("log", "", "", ""));
    }

    #[test]
    fn a_contract_given_in_hex_matches_its_base58_form() {
        let filter = EventFilter::new(&[], &strings(&[USDT_HEX]), &[], NAMES).unwrap();
        assert!(filter.keeps_event(&trc20(USDT, "x", "y")));
        assert!(!filter.keeps_event(&trc20("Tother", "x", "y")));
        // No contract: never passes a contract list.
        assert!(!filter.keeps_event(&EventBody::TrxTransfer {
            from: "x".into(),
            to: "y".into(),
            value: "1".into()
        }));
    }

    #[test]
    fn every_list_must_pass_and_an_address_matches_either_side() {
        let filter =
            EventFilter::new(&strings(&["approval"]), &[], &strings(&[USDT]), NAMES).unwrap();
        let approval = |owner: &str, spender: &str| EventBody::Approval {
            contract: "c".into(),
            owner: owner.into(),
            spender: spender.into(),
            value: "1".into(),
        };
        assert!(filter.keeps_event(&approval(USDT, "z")));
        assert!(filter.keeps_event(&approval("z", USDT)));
        assert!(!filter.keeps_event(&approval("z", "z")));
        assert!(!filter.keeps_event(&trc20("c", USDT, "z")));
        assert!(!filter.keeps("log", USDT, "", ""));
    }

    #[test]
    fn every_bad_value_is_named() {
        let errors = EventFilter::new(
            &strings(&["trc20", "usdt"]),
            &strings(&["Tnope"]),
            &strings(&["41zz"]),
            NAMES,
        )
        .unwrap_err();
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].starts_with("filter.kinds: \"usdt\" is not an event kind"));
        assert!(messages[1].starts_with("filter.contracts: address \"Tnope\""));
        assert!(messages[2].starts_with("filter.addresses: address \"41zz\""));
    }
}

//! What a new tip means: the sync table of docs/ARCHITECTURE.md as a pure function.

/// The limits the rule works with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GapLimits {
    /// Gaps up to this many blocks (head excluded... see `decide`) go to the priority queue: 20.
    pub priority_max_gap: u64,
    /// The backlog never reaches further back than this many blocks below the head: 201,600.
    pub backlog_max: u64,
}

/// The coordinator's decision for a head `H` given last_synced_block `L`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TipDecision {
    /// `H == L`: nothing new.
    InSync,
    /// First run (`L` missing or 0) or `H == L + 1`: lease `H` to the tip, set `L = H`.
    Next {
        /// The head, leased to the tip.
        head: u64,
    },
    /// `1 < H - L <= 20`: `L+1 ..= H-1` to the priority queue, then as `Next`.
    SmallGap {
        /// First block of the gap.
        from: u64,
        /// Last block of the gap.
        to: u64,
        /// The head, leased to the tip.
        head: u64,
    },
    /// `H - L > 20`: `max(H - 201600, L + 1) ..= H-1` to the backlog, then as `Next`.
    /// `skipped` counts the blocks older than the cap that will never be fetched.
    LargeGap {
        /// First block queued.
        from: u64,
        /// Last block queued.
        to: u64,
        /// The head, leased to the tip.
        head: u64,
        /// Blocks below `from` that are never fetched.
        skipped: u64,
    },
    /// `H < L`: the node is behind us (a lagging load-balanced node); change nothing.
    Behind {
        /// The node's head.
        head: u64,
        /// last_synced_block.
        last: u64,
    },
}

impl TipDecision {
    /// The head block this decision leases to the tip, if any.
    pub fn leased_head(&self) -> Option<u64> {
        match *self {
            TipDecision::Next { head }
            | TipDecision::SmallGap { head, .. }
            | TipDecision::LargeGap { head, .. } => Some(head),
            TipDecision::InSync | TipDecision::Behind { .. } => None,
        }
    }
}

/// Applies the sync table. `last = None` (or `Some(0)`) is a first run.
pub fn decide(last: Option<u64>, head: u64, limits: GapLimits) -> TipDecision {
    let last = match last {
        None | Some(0) => return TipDecision::Next { head },
        Some(last) => last,
    };
    if head == last {
        return TipDecision::InSync;
    }
    if head < last {
        return TipDecision::Behind { head, last };
    }
    let distance = head - last;
    if distance == 1 {
        TipDecision::Next { head }
    } else if distance <= limits.priority_max_gap {
        TipDecision::SmallGap {
            from: last + 1,
            to: head - 1,
            head,
        }
    } else {
        let from = head.saturating_sub(limits.backlog_max).max(last + 1);
        TipDecision::LargeGap {
            from,
            to: head - 1,
            head,
            skipped: from - (last + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(last: Option<u64>, head: u64) -> TipDecision {
        decide(last, head, crate::settings::Settings::for_tests().limits)
    }

    #[test]
    fn head_equal_to_last_is_in_sync() {
        assert_eq!(d(Some(100), 100), TipDecision::InSync);
    }

    #[test]
    fn first_run_starts_at_the_head() {
        assert_eq!(d(None, 100), TipDecision::Next { head: 100 });
        assert_eq!(d(Some(0), 100), TipDecision::Next { head: 100 });
    }

    #[test]
    fn next_block_goes_to_the_tip() {
        assert_eq!(d(Some(99), 100), TipDecision::Next { head: 100 });
    }

    #[test]
    fn gap_of_two_to_twenty_goes_to_priority() {
        assert_eq!(
            d(Some(98), 100),
            TipDecision::SmallGap {
                from: 99,
                to: 99,
                head: 100
            }
        );
        assert_eq!(
            d(Some(80), 100),
            TipDecision::SmallGap {
                from: 81,
                to: 99,
                head: 100
            }
        );
    }

    #[test]
    fn gap_over_twenty_goes_to_backlog() {
        assert_eq!(
            d(Some(79), 100),
            TipDecision::LargeGap {
                from: 80,
                to: 99,
                head: 100,
                skipped: 0
            }
        );
    }

    #[test]
    fn backlog_is_capped_at_seven_days() {
        let head = 1_000_000;
        assert_eq!(
            d(Some(1), head),
            TipDecision::LargeGap {
                from: head - 201_600,
                to: head - 1,
                head,
                skipped: head - 201_600 - 2
            }
        );
    }

    #[test]
    fn head_below_last_changes_nothing() {
        assert_eq!(
            d(Some(100), 90),
            TipDecision::Behind {
                head: 90,
                last: 100
            }
        );
    }

    #[test]
    fn leased_head_only_when_moving() {
        assert_eq!(d(Some(100), 100).leased_head(), None);
        assert_eq!(d(Some(100), 90).leased_head(), None);
        assert_eq!(d(Some(90), 100).leased_head(), Some(100));
    }
}

//! The walk back over a fork: which committed blocks the node no longer has, found by comparing
//! the links kept of committed blocks with the headers the node serves now.
//!
//! Every committed block above the finalized one keeps a link (its hash and parent's), and a
//! commit is refused when it contradicts a neighbour's link ([`CommitOutcome::Unlinked`]). So
//! each run of adjacent committed blocks is one chain, checked pair by pair, and a fork shows as
//! a run whose newest blocks the node now serves in other versions. The walk goes down the
//! links from the newest, asks the node for each one's header, and stops at the first block the
//! node still has as committed at or below the block the contradiction was found at (the
//! common ancestor). A contradiction that reaches the finalized block is a node that rewrites
//! final history: refused, never applied.
//!
//! [`CommitOutcome::Unlinked`]: crate::store::CommitOutcome::Unlinked

use crate::chain::{Chain, ChainError};
use crate::store::{BlockLink, Store, StoreError};

/// Why a walk back did not end in a list of orphans to retract.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForkError {
    /// The node has not got a block that was committed: it is behind (a lagging node behind a
    /// load balancer, or a shorter branch). Nothing is retracted on its word; the walk is tried
    /// again later.
    #[error("the node has no block {0}, which was committed: it is behind, walk back postponed")]
    NodeBehind(u64),
    /// The node contradicts a block at or below the finalized one: a broken or lying node.
    #[error(
        "the node serves block {block} as {node_hash}, but {stored_hash} was committed and is \
         final (finalized block {finalized}): refusing to rewrite final history"
    )]
    BeyondFinalized {
        /// The final block contradicted.
        block: u64,
        /// What was committed.
        stored_hash: String,
        /// What the node serves now.
        node_hash: String,
        /// The finalized block.
        finalized: u64,
    },
    /// The node failed to answer.
    #[error("walk back: {0}")]
    Chain(#[from] ChainError),
    /// The store failed to answer.
    #[error("walk back: {0}")]
    Store(#[from] StoreError),
}

impl ForkError {
    /// A short, stable label, for logs and dead-letter records.
    pub fn kind(&self) -> &'static str {
        match self {
            ForkError::NodeBehind(_) => "fork_node_behind",
            ForkError::BeyondFinalized { .. } => "fork_beyond_finalized",
            ForkError::Chain(error) => error.kind(),
            ForkError::Store(error) => error.kind(),
        }
    }
}

/// The committed blocks the node no longer has, newest first, found walking down from the
/// newest link to the first block at or below `at` that the node still has as committed.
/// `finalized` is the finalized block as published: a contradiction at or below it is refused.
pub async fn orphans(
    chain: &dyn Chain,
    store: &dyn Store,
    at: u64,
    finalized: Option<u64>,
) -> Result<Vec<BlockLink>, ForkError> {
    let links = store.links(finalized.unwrap_or(0), u64::MAX).await?;
    let mut orphans = Vec::new();
    for link in links.into_iter().rev() {
        let node = match chain.header(link.number).await {
            Ok(header) => header,
            Err(ChainError::NotProduced(number)) => return Err(ForkError::NodeBehind(number)),
            Err(error) => return Err(error.into()),
        };
        if node.hash == link.hash {
            if link.number <= at {
                break;
            }
            continue;
        }
        if let Some(finalized) = finalized.filter(|f| link.number <= *f) {
            return Err(ForkError::BeyondFinalized {
                block: link.number,
                stored_hash: link.hash,
                node_hash: node.hash,
                finalized,
            });
        }
        orphans.push(link);
    }
    Ok(orphans)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::fakes::{fake_hash, FakeChain, FakeStore};
    use crate::store::{CommitOutcome, Origin};

    /// A store holding blocks `from..=to` committed as the chain serves them now.
    async fn committed(chain: &FakeChain, from: u64, to: u64) -> FakeStore {
        let store = FakeStore::default();
        for number in from..=to {
            let outcome = store
                .commit(Origin::Tip, &chain.served(number), 0)
                .await
                .unwrap();
            assert!(matches!(outcome, CommitOutcome::Published { .. }));
        }
        store
    }

    fn numbers(links: &[BlockLink]) -> Vec<u64> {
        links.iter().map(|l| l.number).collect()
    }

    /// The node switches to a branch `depth` blocks deep under the committed head 100; the
    /// next block's commit is refused, and the walk back from where it was refused finds the
    /// `depth` orphans, newest first, with the hashes that were committed.
    async fn fork_of_depth(depth: u64) {
        let chain = FakeChain::with_head(100);
        let store = committed(&chain, 60, 100).await;
        store.finalize(100 - 19, "", 0).await.unwrap();
        chain.fork(101 - depth, depth);
        chain.head.store(101, std::sync::atomic::Ordering::SeqCst);
        let next = chain.served(101);
        let refused = store.commit(Origin::Tip, &next, 0).await.unwrap();
        assert_eq!(refused, CommitOutcome::Unlinked { at: 100 });

        let found = orphans(&chain, &store, 100, Some(81)).await.unwrap();
        assert_eq!(
            numbers(&found),
            (101 - depth..=100).rev().collect::<Vec<_>>()
        );
        assert!(found.iter().all(|l| l.hash == fake_hash(l.number, 0)));

        let reverted = store.revert(&found, 0).await.unwrap();
        assert_eq!(reverted, (101 - depth..=100).rev().collect::<Vec<_>>());
        // The new branch now links: its head commits, and so do the replaced blocks, in any order.
        let outcome = store.commit(Origin::Tip, &next, 0).await.unwrap();
        assert!(matches!(outcome, CommitOutcome::Published { .. }));
        for number in 101 - depth..=100 {
            let outcome = store
                .commit(Origin::Priority, &chain.served(number), 0)
                .await
                .unwrap();
            assert!(
                matches!(outcome, CommitOutcome::Published { .. }),
                "{number}"
            );
        }
        assert!(orphans(&chain, &store, 101, Some(81))
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn a_fork_one_block_deep_is_walked_back_to_its_ancestor() {
        fork_of_depth(1).await;
    }

    #[tokio::test]
    async fn a_fork_five_blocks_deep_is_walked_back_to_its_ancestor() {
        fork_of_depth(5).await;
    }

    #[tokio::test]
    async fn a_fork_nineteen_blocks_deep_is_walked_back_to_its_ancestor() {
        fork_of_depth(19).await;
    }

    #[tokio::test]
    async fn a_fork_reaching_the_finalized_block_is_refused() {
        let chain = FakeChain::with_head(100);
        let store = committed(&chain, 60, 100).await;
        store.finalize(81, "", 0).await.unwrap();
        chain.fork(81, 20);
        let error = orphans(&chain, &store, 100, Some(81)).await.unwrap_err();
        match error {
            ForkError::BeyondFinalized {
                block, finalized, ..
            } => assert_eq!((block, finalized), (81, 81)),
            other => panic!("{other:?}"),
        }
        // Nothing was retracted on a broken node's word.
        assert_eq!(store.state.lock().unwrap().links.len(), 20);
    }

    #[tokio::test]
    async fn a_node_without_a_committed_block_retracts_nothing() {
        let chain = FakeChain::with_head(100);
        let store = committed(&chain, 90, 100).await;
        chain.head.store(98, std::sync::atomic::Ordering::SeqCst);
        let error = orphans(&chain, &store, 100, None).await.unwrap_err();
        assert!(matches!(error, ForkError::NodeBehind(100)), "{error:?}");
    }

    #[tokio::test]
    async fn a_child_that_names_another_parent_is_refused_and_its_branch_walked_back() {
        // The backlog commits highest first: 100 and 99 are in, from the old branch; the node
        // then switches 98..=100, and block 98 of the new branch does not link to 99.
        let chain = FakeChain::with_head(100);
        let store = committed(&chain, 99, 100).await;
        chain.fork(98, 3);
        let refused = store
            .commit(Origin::Backlog, &chain.served(98), 0)
            .await
            .unwrap();
        assert_eq!(refused, CommitOutcome::Unlinked { at: 99 });
        let found = orphans(&chain, &store, 99, None).await.unwrap();
        assert_eq!(numbers(&found), vec![100, 99]);
    }
}

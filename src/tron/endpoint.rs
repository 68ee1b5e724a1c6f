//! The node's HTTP endpoints the client uses: their paths, and their labels in metrics.

/// The node endpoints the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/wallet/getnowblock`: the head.
    NowBlock,
    /// `/wallet/getblockbynum`: one block with its transactions.
    BlockByNum,
    /// `/wallet/gettransactioninfobyblocknum`: a block's receipts and logs.
    TransactionInfoByBlockNum,
    /// `/wallet/getblockbylimitnext`: a range of blocks.
    BlockByLimitNext,
    /// `/wallet/getblock` without detail: one block's header, for a walk back over a fork.
    Block,
    /// `/wallet/getnodeinfo`: the irreversible ("solidified") block.
    NodeInfo,
}

impl Endpoint {
    /// In declaration order: `index` is the position here.
    pub(crate) const ALL: [Endpoint; 6] = [
        Endpoint::NowBlock,
        Endpoint::BlockByNum,
        Endpoint::TransactionInfoByBlockNum,
        Endpoint::BlockByLimitNext,
        Endpoint::Block,
        Endpoint::NodeInfo,
    ];

    pub(crate) fn path(self) -> &'static str {
        match self {
            Endpoint::NowBlock => "/wallet/getnowblock",
            Endpoint::BlockByNum => "/wallet/getblockbynum",
            Endpoint::TransactionInfoByBlockNum => "/wallet/gettransactioninfobyblocknum",
            Endpoint::BlockByLimitNext => "/wallet/getblockbylimitnext",
            Endpoint::Block => "/wallet/getblock",
            Endpoint::NodeInfo => "/wallet/getnodeinfo",
        }
    }

    /// A short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::NowBlock => "getnowblock",
            Endpoint::BlockByNum => "getblockbynum",
            Endpoint::TransactionInfoByBlockNum => "gettransactioninfobyblocknum",
            Endpoint::BlockByLimitNext => "getblockbylimitnext",
            Endpoint::Block => "getblock",
            Endpoint::NodeInfo => "getnodeinfo",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

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
}

impl Endpoint {
    pub(crate) const ALL: [Endpoint; 4] = [
        Endpoint::NowBlock,
        Endpoint::BlockByNum,
        Endpoint::TransactionInfoByBlockNum,
        Endpoint::BlockByLimitNext,
    ];

    pub(crate) fn path(self) -> &'static str {
        match self {
            Endpoint::NowBlock => "/wallet/getnowblock",
            Endpoint::BlockByNum => "/wallet/getblockbynum",
            Endpoint::TransactionInfoByBlockNum => "/wallet/gettransactioninfobyblocknum",
            Endpoint::BlockByLimitNext => "/wallet/getblockbylimitnext",
        }
    }

    /// A short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::NowBlock => "getnowblock",
            Endpoint::BlockByNum => "getblockbynum",
            Endpoint::TransactionInfoByBlockNum => "gettransactioninfobyblocknum",
            Endpoint::BlockByLimitNext => "getblockbylimitnext",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

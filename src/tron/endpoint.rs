//! The node's HTTP endpoints the client uses: their paths, and their labels in metrics.

/// The node endpoints the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    NowBlock,
    BlockByNum,
    TransactionInfoByBlockNum,
    BlockByLimitNext,
}

impl Endpoint {
    pub const ALL: [Endpoint; 4] = [
        Endpoint::NowBlock,
        Endpoint::BlockByNum,
        Endpoint::TransactionInfoByBlockNum,
        Endpoint::BlockByLimitNext,
    ];

    pub fn path(self) -> &'static str {
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

//! The spans the client opens in a block's trace: `fetch` (the body and its transaction
//! infos) and `decode` beside it, marked failed the way `actors::trace` reads them.

use actors::chain::ChainError;

/// Where the body in a block's `fetch` span came from.
#[derive(Clone, Copy, Debug)]
pub(super) enum BodySource {
    /// Asked for alone (`getblockbynum`), within the span.
    Node,
    /// In a range answer (`getblockbylimitnext`), the linked `node.get_blocks` trace.
    Range,
    /// The head poll's answer, reused.
    Head,
}

impl BodySource {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            BodySource::Node => "node",
            BodySource::Range => "range",
            BodySource::Head => "head",
        }
    }
}

/// A block's `fetch` span, a child of the current span (the block's root span when the actors
/// ask). Its fields include those `actors::trace` records a failure with.
pub(super) fn fetch_span(number: u64, body: BodySource) -> tracing::Span {
    tracing::info_span!(
        "fetch",
        block = number,
        body = body.as_str(),
        "otel.status_code" = tracing::field::Empty,
        "otel.status_description" = tracing::field::Empty,
        "error.type" = tracing::field::Empty,
        "error.message" = tracing::field::Empty,
    )
}

/// A block's `decode` span, beside its `fetch` span.
pub(super) fn decode_span(number: u64) -> tracing::Span {
    tracing::info_span!(
        "decode",
        block = number,
        "otel.status_code" = tracing::field::Empty,
        "otel.status_description" = tracing::field::Empty,
        "error.type" = tracing::field::Empty,
        "error.message" = tracing::field::Empty,
    )
}

/// Marks `span` failed (status Error, error kind and message) when `result` is an error.
pub(super) fn failed_in<T>(
    span: &tracing::Span,
    result: Result<T, ChainError>,
) -> Result<T, ChainError> {
    if let Err(error) = &result {
        actors::trace::record_failure(span, error.kind(), &error.to_string());
    }
    result
}

//! How a span says that its work failed, in `tracing` field names only, so this crate needs no
//! OpenTelemetry dependency: the binary's tracing-opentelemetry layer turns `otel.status_code`
//! and `otel.status_description` into the span's status, the other fields into attributes, and
//! an event named `exception` into the span's exception event (OpenTelemetry's conventions).
//!
//! A span can only be given fields it declared when it was created (as `Empty`): see
//! `job::block_span` for the full set.

use tracing::Span;

/// Status Error with `message`, and the attributes `error.type` (a short, stable kind such as
/// `ChainError::kind`, to filter on) and `error.message`.
pub fn record_failure(span: &Span, kind: &str, message: &str) {
    // The code alone would leave the description empty; the description alone would do, but
    // both say what is meant.
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_description", message);
    span.record("error.type", kind);
    span.record("error.message", message);
}

/// [`record_failure`] plus an `exception` event on `span`. The event is for traces only (the
/// binary keeps it out of the logs, which already have the failure's own line).
pub fn record_exception(span: &Span, kind: &str, message: &str) {
    record_failure(span, kind, message);
    tracing::event!(
        name: "exception",
        parent: span,
        tracing::Level::ERROR,
        { "exception.type" = kind, "exception.message" = message }
    );
}

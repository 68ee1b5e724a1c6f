//! Logs and traces through `tracing`.
//!
//! Logs: human-readable on a terminal, JSON lines otherwise (or as configured); `RUST_LOG`
//! overrides the level. Lines logged inside a block's span carry its number and trace id.
//!
//! Traces: one trace per block and attempt (root span `block`), exported over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `otel.endpoint`) is set: gRPC by default, HTTP/protobuf when
//! `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf` (or `otel.protocol`). `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES` work as everywhere. Spans go through a batch processor with a
//! bounded queue on its own thread: export never blocks block processing, a missing collector
//! only costs failed exports (counted), and what is queued is flushed on shutdown.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, LogLevel, OtlpProtocol};

/// Where traces go; an empty endpoint and an unset protocol fall back to the standard `OTEL_*`
/// variables.
#[derive(Clone, Debug, Default)]
pub struct OtelSettings {
    /// The OTLP endpoint; empty = `OTEL_EXPORTER_OTLP_ENDPOINT`, else no export.
    pub endpoint: String,
    pub(crate) protocol: Option<OtlpProtocol>,
}

/// Counts of the span pipeline, for /metrics.
#[derive(Debug, Default)]
pub struct TraceStats {
    pub(crate) spans_exported: AtomicU64,
    pub(crate) export_failures: AtomicU64,
}

/// Keeps the tracer provider; `shutdown` flushes queued spans.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// Spans exported and failed, for /metrics.
    pub stats: Arc<TraceStats>,
}

impl Telemetry {
    /// Whether spans are exported (an endpoint was configured or found in the environment).
    pub fn tracing_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes what is queued (bounded by the exporter's timeout) and stops the exporter.
    pub fn shutdown(&self) {
        if let Some(provider) = &self.provider {
            if let Err(error) = provider.force_flush() {
                eprintln!("warning: flushing traces failed: {error}");
            }
            let _ = provider.shutdown_with_timeout(Duration::from_secs(5));
        }
    }
}

/// Why logging or trace export cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An OTLP protocol other than `grpc` or `http/protobuf`.
    #[error("otel protocol {0:?} is not supported: use grpc or http/protobuf")]
    Protocol(String),
    /// The exporter refused its settings.
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
    /// The HTTP exporter's builder, run on a thread of its own, panicked instead of answering.
    #[error("cannot build the OTLP exporter: the exporter builder panicked")]
    ExporterPanicked,
}

/// Wraps the OTLP exporter to count what left and what failed.
#[derive(Debug)]
struct CountingExporter<E> {
    inner: E,
    stats: Arc<TraceStats>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => self.stats.spans_exported.fetch_add(n, Ordering::Relaxed),
            Err(_) => self.stats.export_failures.fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

fn env_or(value: &str, var: &str) -> String {
    if value.is_empty() {
        std::env::var(var).unwrap_or_default()
    } else {
        value.to_string()
    }
}

fn tracer_provider(
    otel: &OtelSettings,
    stats: Arc<TraceStats>,
) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    // reqwest (HTTP export) is built without a default TLS crypto provider: install ours first.
    crate::tls::install_crypto_provider();
    let endpoint = env_or(&otel.endpoint, "OTEL_EXPORTER_OTLP_ENDPOINT");
    let endpoint = env_or(&endpoint, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    if endpoint.is_empty() {
        return Ok(None);
    }
    let protocol = match otel.protocol {
        Some(protocol) => protocol,
        None => match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL")
            .unwrap_or_default()
            .as_str()
        {
            "" => OtlpProtocol::Grpc,
            name => OtlpProtocol::from_name(name)
                .ok_or_else(|| TelemetryError::Protocol(name.to_string()))?,
        },
    };
    let exporter = match protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(5))
            .build(),
        OtlpProtocol::HttpProtobuf => {
            let base = endpoint.trim_end_matches('/');
            let url = if base.ends_with("/v1/traces") {
                base.to_string()
            } else {
                format!("{base}/v1/traces")
            };
            // The blocking HTTP client must not be built on a tokio thread (it owns a runtime
            // of its own); it is used from the batch processor's thread, never from tokio.
            std::thread::spawn(move || {
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_endpoint(url)
                    .with_timeout(Duration::from_secs(5))
                    .build()
            })
            .join()
            .map_err(|_| TelemetryError::ExporterPanicked)?
        }
    }
    .map_err(TelemetryError::Exporter)?;
    let exporter = CountingExporter {
        inner: exporter,
        stats,
    };
    // A bounded queue: when the collector is slow or away, spans are dropped, never waited on.
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(8192)
        .with_max_export_batch_size(512)
        .with_scheduled_delay(Duration::from_millis(500))
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch)
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(
            std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "tron-actors".to_string()),
        )
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build(),
    ))
}

/// Installs logs (and traces when an endpoint is known). Later calls are ignored (tests start
/// many daemons in one process); they get a `Telemetry` without a provider.
pub fn init(
    format: LogFormat,
    level: &LogLevel,
    otel: &OtelSettings,
) -> Result<Telemetry, TelemetryError> {
    let stats = Arc::new(TraceStats::default());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{},ractor=warn,hyper=warn,reqwest=warn,h2=warn,tonic=warn,opentelemetry_sdk=warn",
            level.as_str()
        ))
    });
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let fmt_layer = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        // Colour codes only for a terminal: in a redirected file they are noise
        // (`log.format = "text"` > daemon.log).
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(|| ClearBarWriter { first: true })
            .boxed()
    };
    // Exception events repeat, for traces, a failure the logs already have a line for.
    let fmt_layer = fmt_layer.with_filter(tracing_subscriber::filter::filter_fn(|meta| {
        !is_exception_event(meta)
    }));
    let provider = tracer_provider(otel, stats.clone())?;
    let otel_layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("tron-actors"))
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                // Only our spans make traces; library internals stay out. Of the events, only
                // exception events: log lines in traces would cost a span event each.
                (meta.is_span() || is_exception_event(meta))
                    && (meta.target().starts_with("actors")
                        || meta.target().starts_with("tron_actors"))
            }))
    });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer)
        .with(otel_layer)
        .try_init()
        .is_ok();
    if installed {
        if let Some(provider) = &provider {
            opentelemetry::global::set_tracer_provider(provider.clone());
        }
    }
    Ok(Telemetry {
        provider: if installed { provider } else { None },
        stats,
    })
}

/// An event named `exception` (see `actors::trace`): a failure as a span event, for traces only.
fn is_exception_event(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_event() && meta.name() == "exception"
}

/// Stderr for human-readable logs: a line first wipes the progress bar when one is drawn (the
/// bar redraws itself below at its next tick), so the two never share a line.
struct ClearBarWriter {
    first: bool,
}

impl std::io::Write for ClearBarWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        if std::mem::take(&mut self.first) && crate::progress::take_bar_visible() {
            err.write_all(b"\r\x1b[2K")?;
        }
        err.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Logs only (for commands that export nothing).
pub fn init_logs(format: LogFormat, level: tracing::Level) {
    let _ = init(format, &LogLevel::from(level), &OtelSettings::default());
}

/// Records the current trace id on a block span, so log lines inside it lead to the trace.
pub fn record_trace_id(span: &tracing::Span) {
    let context = span.context();
    let trace_id = opentelemetry::trace::TraceContextExt::span(&context)
        .span_context()
        .trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

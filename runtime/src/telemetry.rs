//! What a service process tells its operators: log lines (text, or JSON objects for a log
//! pipeline) and, when a collector is configured, OpenTelemetry traces over OTLP.
//!
//! - Logs go to stderr, filtered by `FOLLOWERS_LOG` (default `info`), coloured only on a terminal.
//! - Traces are off until `--otlp-endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT` names a collector.
//!   Spans are then exported over OTLP/HTTP (protobuf) from a background thread in batches, and
//!   the W3C Trace Context propagator is installed, so the trace context travels in NATS headers
//!   ([`followers_store::trace`]): a caller's request, its command, the stored commit, the
//!   projection's apply and the follower sync's commands end up in one trace.
//! - The exporter speaks plain HTTP: it is meant for a collector next to the service (an agent
//!   or sidecar), which forwards over TLS where needed. Spans carry ids, names, subjects, command
//!   names and positions, never request bodies.
//! - Traces are recorded at `info` whatever `FOLLOWERS_LOG` says, so quieter logs do not cut a
//!   trace short.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// How a service logs, and where it sends traces.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TelemetryArgs {
    /// Export traces to this OpenTelemetry collector over OTLP/HTTP, e.g.
    /// `http://127.0.0.1:4318` (`/v1/traces` is added). Traces are off when unset.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Log lines as `text` or as `json` objects, one per line.
    #[arg(long, env = "FOLLOWERS_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Why telemetry could not be set up; the process should not start without what it was asked for.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The endpoint is not usable: fix `--otlp-endpoint`.
    #[error("traces cannot be exported to {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// Something else in this process set up logging first: call [`init`] once, at start.
    #[error("logging was already set up in this process: {0}")]
    AlreadySet(#[source] tracing_subscriber::util::TryInitError),
}

/// The running exporter, if any. [`Telemetry::shutdown`] sends the spans still buffered.
#[derive(Debug)]
#[must_use = "shut it down at exit, or the last spans are lost"]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are being exported.
    pub fn exports_traces(&self) -> bool {
        self.traces.is_some()
    }

    /// Exports the spans ended so far, waiting until the collector has them.
    pub fn flush(&self) {
        if let Some(traces) = &self.traces
            && let Err(e) = traces.force_flush()
        {
            tracing::warn!(error = %e, "spans could not be exported");
        }
    }

    /// Exports the spans still buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(traces) = self.traces
            && let Err(e) = traces.shutdown()
        {
            tracing::warn!(error = %e, "the last spans could not be exported");
        }
    }
}

/// Sets up logging and, if configured, trace export for the process named `service` (the
/// `service.name` of its spans). Call once, before anything logs.
pub fn init(args: &TelemetryArgs, service: &'static str) -> Result<Telemetry, TelemetryError> {
    let traces = match &args.otlp_endpoint {
        Some(endpoint) => Some(tracer_provider(endpoint, service)?),
        None => None,
    };
    let otel = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(service))
            .with_filter(EnvFilter::new("info"))
    });
    Registry::default()
        .with(log_lines(args.log_format))
        .with(otel)
        .try_init()
        .map_err(TelemetryError::AlreadySet)?;
    if traces.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }
    Ok(Telemetry { traces })
}

/// Text logs to stderr and no traces: for the command-line tools.
pub fn init_logging() {
    if let Err(e) = Registry::default()
        .with(log_lines(LogFormat::Text))
        .try_init()
    {
        eprintln!("{e}");
    }
}

fn log_lines(format: LogFormat) -> Box<dyn Layer<Registry> + Send + Sync> {
    let filter =
        EnvFilter::try_from_env("FOLLOWERS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => lines
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => lines.json().with_filter(filter).boxed(),
    }
}

fn tracer_provider(
    endpoint: &str,
    service: &'static str,
) -> Result<SdkTracerProvider, TelemetryError> {
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .build()
        .map_err(|source| TelemetryError::Exporter {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build())
}

//! Distributed traces across NATS: the W3C Trace Context (`traceparent`, `tracestate`) in NATS
//! message headers, so that one trace shows a caller's request, the command it became, the commit
//! it stored, and the projection's apply and the follower sync's commands that followed.
//!
//! - **Out:** [`inject_current`] writes the current `tracing` span's context into a message's
//!   headers: a request (the client) or a history message (the JetStream store's append).
//! - **In:** [`request_span`] (NATS headers) and [`request_span_with`] (HTTP) make the span of
//!   serving a request the child of the caller's; [`continue_commit`] makes a span the child of
//!   the command that wrote a stored commit ([`TraceContext`], kept by [`of_message`]).
//! - The formats belong to OpenTelemetry's global propagator, which a process sets when it exports
//!   traces (`followers_runtime::telemetry`). Until then injecting writes nothing and continuing
//!   does nothing, so the cost is one lookup per message.
//! - A context sent by a caller is untrusted input: the propagator parses and checks it, and one
//!   it cannot read starts a new trace instead. It only ever names the caller's own trace.

use async_nats::HeaderMap;
use followers_shared::store::TraceContext;
use opentelemetry::propagation::{Extractor, Injector};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// Writes the current span's trace context into `headers`, if a trace is being recorded.
pub fn inject_current(headers: &mut HeaderMap) {
    let context = Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut Writer(headers))
    });
}

/// The span of serving a request (`name`: `command request` or `query request`) that arrived in
/// a caller's trace, its child; none for a request without a trace context, so those cost nothing.
pub fn request_span(name: &'static str, subject: &str, headers: Option<&HeaderMap>) -> Span {
    match headers {
        Some(headers) => span_of(name, subject, &Reader(headers)),
        None => Span::none(),
    }
}

/// [`request_span`] for a request whose headers are not NATS's (HTTP): `header` looks one up.
pub fn request_span_with<'h>(
    name: &'static str,
    target: &str,
    header: impl Fn(&str) -> Option<&'h str>,
) -> Span {
    span_of(name, target, &Lookup(header, std::marker::PhantomData))
}

fn span_of(name: &'static str, target: &str, carrier: &dyn Extractor) -> Span {
    if carrier.get(TRACEPARENT).is_none() {
        return Span::none();
    }
    let span = tracing::info_span!(
        "request",
        otel.name = name,
        otel.kind = "server",
        subject = target
    );
    let parent =
        opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(carrier));
    set_parent(&span, parent);
    span
}

/// Makes `span` (not yet entered) a child of the trace a stored commit was written in.
pub fn continue_commit(span: &Span, trace: Option<&TraceContext>) {
    let Some(trace) = trace else { return };
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&Stored(trace))
    });
    set_parent(span, parent);
}

/// The trace context a history message's headers carry, kept as written.
pub fn of_message(headers: Option<&HeaderMap>) -> Option<TraceContext> {
    let headers = headers?;
    let traceparent = headers.get(TRACEPARENT)?.as_str().to_owned();
    let tracestate = headers.get(TRACESTATE).map(|v| v.as_str().to_owned());
    Some(TraceContext {
        traceparent,
        tracestate,
    })
}

fn set_parent(span: &Span, parent: opentelemetry::Context) {
    use opentelemetry::trace::TraceContextExt;
    if parent.span().span_context().is_valid() {
        // Fails only for a disabled span, which records nothing to attach.
        let _ = span.set_parent(parent);
    }
}

struct Writer<'a>(&'a mut HeaderMap);

impl Injector for Writer<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct Reader<'a>(&'a HeaderMap);

impl Extractor for Reader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

/// `'h` on the struct ties a lookup's answers to the headers it reads, which outlive it.
struct Lookup<'h, F>(F, std::marker::PhantomData<&'h str>);

impl<'h, F: Fn(&str) -> Option<&'h str>> Extractor for Lookup<'h, F> {
    fn get(&self, key: &str) -> Option<&str> {
        (self.0)(key)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

struct Stored<'a>(&'a TraceContext);

impl Extractor for Stored<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => Some(&self.0.traceparent),
            TRACESTATE => self.0.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

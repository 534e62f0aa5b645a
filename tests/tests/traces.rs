#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: one trace shows a caller's command and everything it caused, and history
//! messages say what they hold in their headers (docs/operations.md, "Traces").
//!
//! This process is the caller and hosts both services, exporting to an OTLP collector the test
//! runs on loopback. The trace context crosses every hop in NATS headers only (the request, the
//! history message the projection and the follower sync read back): nothing in memory carries it,
//! so a hop that drops it starts a new trace and the test fails.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use followers_client::{Account, Client, Reply, system, user};
use followers_runtime::telemetry::{self, Telemetry, TelemetryArgs};
use followers_shared::access::Action;
use followers_shared::bounded::Users;
use followers_shared::command::{ChangeOwner, CreateContact, CreateOpportunity};
use followers_shared::ids::{AccountId, ContactId, OpportunityId, UserId};
use followers_shared::model::RecordRef;
use followers_store::JetStreamConfig;
use followers_store::jetstream::{
    CAUSATION_HEADER, COMMAND_ID_HEADER, CORRELATION_HEADER, EVENTS_HEADER,
};
use followers_tests::NatsServer;
use followers_tests::stack::{TEAM, open_team, start_command_service, start_projection_service};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct Received {
    trace: Vec<u8>,
    id: Vec<u8>,
    parent: Vec<u8>,
    name: String,
    attributes: HashMap<String, String>,
}

/// An OTLP/HTTP trace receiver on loopback that keeps every span it is sent.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                kept.lock().unwrap().extend(received(request));
                ""
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, spans }
    }

    /// The spans of `trace` once `done` holds for them, flushing the exporter while waiting.
    async fn wait_for(
        &self,
        telemetry: &Telemetry,
        trace: &[u8],
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            tokio::task::block_in_place(|| telemetry.flush());
            let spans: Vec<Received> = (self.spans.lock().unwrap().iter())
                .filter(|s| s.trace == trace)
                .cloned()
                .collect();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "the trace stayed incomplete: {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn received(request: ExportTraceServiceRequest) -> Vec<Received> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let spans = request
        .resource_spans
        .into_iter()
        .flat_map(|r| r.scope_spans);
    let spans = spans.flat_map(|s| s.spans);
    spans
        .map(|span| Received {
            trace: span.trace_id,
            id: span.span_id,
            parent: span.parent_span_id,
            name: span.name,
            attributes: (span.attributes.into_iter())
                .filter_map(|kv| match kv.value?.value? {
                    Value::StringValue(s) => Some((kv.key, s)),
                    Value::IntValue(i) => Some((kv.key, i.to_string())),
                    _ => None,
                })
                .collect(),
        })
        .collect()
}

fn named<'a>(spans: &'a [Received], name: &str) -> Vec<&'a Received> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn attribute<'a>(span: &'a Received, key: &str) -> Option<&'a str> {
    span.attributes.get(key).map(String::as_str)
}

fn trace_of(span: &tracing::Span) -> Vec<u8> {
    span.context()
        .span()
        .span_context()
        .trace_id()
        .to_bytes()
        .to_vec()
}

fn span_of(span: &tracing::Span) -> Vec<u8> {
    span.context()
        .span()
        .span_context()
        .span_id()
        .to_bytes()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn id(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn contact() -> RecordRef {
    RecordRef::Contact(ContactId::new("c-1").unwrap())
}

/// acme's team, a contact owned by ann and an opportunity on it: a new owner of the contact is
/// mirrored onto the opportunity by the follower sync (R7).
async fn acme_with_a_deal(client: &Client) -> Account {
    let acme = client.account(AccountId::new("acme").unwrap());
    open_team(&acme, TEAM).await;
    let ann = user(&id("ann"));
    let create = CreateContact {
        contact: ContactId::new("c-1").unwrap(),
        owner: Some(id("ann")),
        followers: Users::default(),
    };
    acme.command(ann.clone(), create).await.unwrap();
    let deal = CreateOpportunity {
        opportunity: OpportunityId::new("o-1").unwrap(),
        contact: ContactId::new("c-1").unwrap(),
        owner: Some(id("ann")),
        followers: Users::default(),
    };
    acme.command(ann, deal).await.unwrap();
    acme
}

/// The history message the follower sync wrote in answer to `cause`'s first event.
async fn reaction_to(
    server: &NatsServer,
    cause: &Reply,
) -> async_nats::jetstream::message::StreamMessage {
    let js = async_nats::jetstream::new(server.client().await);
    let stream = js
        .get_stream(JetStreamConfig::default().stream)
        .await
        .unwrap();
    let event = cause.events()[0].meta.event_id.to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut next = cause.position().0 + 1;
    loop {
        match stream.get_raw_message(next).await {
            Ok(message) => {
                let causation = message.headers.get(CAUSATION_HEADER).map(|v| v.as_str());
                if causation == Some(event.as_str()) {
                    return message;
                }
                next += 1;
            }
            Err(_) => {
                assert!(
                    Instant::now() < deadline,
                    "no reaction to {event} was stored"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_and_everything_it_caused_are_one_trace() {
    let collector = Collector::start().await;
    let args = TelemetryArgs {
        otlp_endpoint: Some(collector.url.clone()),
        ..TelemetryArgs::default()
    };
    let telemetry = telemetry::init(&args, "followers-tests").expect("telemetry");
    let server = NatsServer::start();
    let _commands = start_command_service(&server, &[]).await;
    let queries = start_projection_service(&server, &[]).await;
    let client = Client::new(server.client().await);
    let acme = acme_with_a_deal(&client).await;

    let caller = tracing::info_span!("caller");
    let (trace, caller_id) = (trace_of(&caller), span_of(&caller));
    let change = ChangeOwner {
        record: contact(),
        owner: Some(id("bob")),
    };
    let reply = async {
        let reply = acme.command(user(&id("ann")), change).await.unwrap();
        let bob = (acme.after(&reply))
            .check_access(&id("bob"), Action::Edit, &contact())
            .await
            .unwrap();
        assert!(bob.allowed, "R3: the new owner may edit");
        // A dashboard's read over HTTP, in the same trace.
        let url = format!("http://{}/v1/accounts/acme", queries.http_addr);
        let traceparent = format!(
            "00-{}-{}-01",
            hex(&trace_of(&tracing::Span::current())),
            hex(&span_of(&tracing::Span::current()))
        );
        let http = reqwest::Client::new()
            .get(url)
            .header("traceparent", traceparent);
        assert!(http.send().await.unwrap().status().is_success());
        reply
    }
    .instrument(caller.clone())
    .await;
    drop(caller);

    let spans = collector
        .wait_for(&telemetry, &trace, |spans| {
            named(spans, "follower_sync").len() >= 2
                && named(spans, "command").len() >= 2
                && named(spans, "apply").len() >= 4
                && named(spans, "query request").len() == 2
        })
        .await;

    // The caller's command, served in its trace.
    let request = named(&spans, "command request");
    assert_eq!(request.len(), 1, "{spans:#?}");
    assert_eq!(
        request[0].parent, caller_id,
        "the request continues the caller's span"
    );
    let commands = named(&spans, "command");
    let change_owner = commands
        .iter()
        .find(|s| attribute(s, "command") == Some("change_owner"))
        .expect("the change_owner command span");
    assert_eq!(change_owner.parent, request[0].id);

    // Its commit applied by both services' models, read back from the history.
    let position = reply.position().0.to_string();
    let applied = named(&spans, "apply");
    let of_change: Vec<_> = (applied.iter())
        .filter(|s| attribute(s, "position") == Some(&position))
        .collect();
    let both = "the command's and the projection's model";
    assert_eq!(of_change.len(), 2, "{both}: {applied:#?}");
    assert!(of_change.iter().all(|s| s.parent == change_owner.id));

    // The follower sync's reaction, and its command, in the same trace.
    let syncs = named(&spans, "follower_sync");
    let sync = (syncs.iter())
        .find(|s| attribute(s, "position") == Some(position.as_str()))
        .expect("the sync's reaction to the owner change");
    assert_eq!(sync.parent, change_owner.id);
    let mirrored = commands
        .iter()
        .find(|s| attribute(s, "command") == Some("align_owner"))
        .expect("R7: the sync's align_owner command span");
    assert_eq!(mirrored.parent, sync.id);
    // ...whose own commit the sync passes in turn, still in the trace.
    assert!(syncs.iter().any(|s| s.parent == mirrored.id), "{syncs:#?}");

    // The read after the write, too.
    let reads = named(&spans, "query request");
    assert!(
        reads.iter().all(|s| s.parent == caller_id),
        "NATS and HTTP: {reads:#?}"
    );
    let over_http = reads
        .iter()
        .find(|s| attribute(s, "subject") == Some("/v1/accounts/acme"));
    assert!(over_http.is_some(), "{reads:#?}");
    telemetry.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_messages_say_what_they_hold_in_headers() {
    let server = NatsServer::start();
    let _commands = start_command_service(&server, &[]).await;
    let client = Client::new(server.client().await);
    let acme = acme_with_a_deal(&client).await;
    let change = ChangeOwner {
        record: contact(),
        owner: Some(id("bob")),
    };
    let reply = acme.command(system(), change).await.unwrap();

    let js = async_nats::jetstream::new(server.client().await);
    let stream = js
        .get_stream(JetStreamConfig::default().stream)
        .await
        .unwrap();
    let stored = stream.get_raw_message(reply.position().0).await.unwrap();
    let header = |name: &str| stored.headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(header(EVENTS_HEADER).as_deref(), Some("owner_changed"));
    let command_id = reply.command_id().unwrap().to_string();
    assert_eq!(header(COMMAND_ID_HEADER), Some(command_id));
    let correlation = reply.events()[0].meta.correlation.to_string();
    assert_eq!(header(CORRELATION_HEADER), Some(correlation.clone()));
    assert_eq!(
        header(CAUSATION_HEADER),
        None,
        "an outside command has no cause"
    );

    // R7: the sync's reaction names the owner change as its cause, in the same correlation.
    let reaction = reaction_to(&server, &reply).await;
    let header = |name: &str| reaction.headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(header(EVENTS_HEADER).as_deref(), Some("owner_changed"));
    assert_eq!(header(CORRELATION_HEADER), Some(correlation));
}

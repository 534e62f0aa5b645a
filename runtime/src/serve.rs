//! The request loop both services run, written once, on the NATS services API (the "micro"
//! protocol): each service registers under its name with one endpoint per command or query,
//! so `nats micro ls`, `nats micro info` and `nats micro stats` show it, its endpoints, their
//! queue group, request counts and processing times.
//!
//! The loop admits a request before anything is spent on it (so a flood costs neither tasks
//! nor memory), answers a request that can be answered at once in the loop itself and spawns a
//! task only for one that has to wait, answers every request that has a reply subject, and on
//! shutdown takes no new requests and finishes the ones in flight. Replies are the services' JSON bodies, refusals
//! included: the micro error headers carry no body, so they are not used.
//!
//! What a service answers, and what its limits are, is its [`Responder`]'s business.

use std::future::Future;
use std::sync::Arc;

use async_nats::service::{Request, ServiceExt};
use bytes::Bytes;
use followers_shared::partition::Partitions;
use followers_shared::wire::subject;
use futures::StreamExt;
use futures::stream::SelectAll;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A service's side of the request loop.
pub trait Responder: Send + Sync + 'static {
    /// A request's place in the service's limits, held until its reply is ready.
    type Ticket: Send + 'static;

    /// Admits a request of `bytes` bytes, or returns the reply that refuses it (too large, too
    /// many in flight). Runs in the loop itself: it must answer at once.
    fn admit(&self, bytes: usize) -> Result<Self::Ticket, Bytes>;

    /// The reply to an admitted request. Every request gets one; none panics.
    fn respond(
        &self,
        ticket: Self::Ticket,
        request: &async_nats::Message,
    ) -> impl Future<Output = Bytes> + Send;
}

/// How a service shows itself in the NATS services API.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// The service's name (`followers-command`, `followers-projection`).
    pub name: &'static str,
    pub description: &'static str,
    /// Instances in the same queue group share the requests.
    pub queue_group: String,
    /// Each endpoint's name (a command or query name) and subject.
    pub endpoints: Vec<(String, String)>,
}

/// The endpoints of a service taking requests `names` of kind `kind` (`cmd`, `query`): one per
/// name on `{prefix}.{kind}.*.{name}`. In a partitioned history the server's mapping adds the
/// partition (`{prefix}.{kind}.{partition}.{account}.{name}`, docs/scaling.md): an instance
/// serving every partition takes them all on `{prefix}.{kind}.*.*.{name}`, one serving some
/// takes each of theirs, as `{name}-p{partition}`. All in the service's queue group, so
/// instances serving the same partition share its requests.
pub fn endpoints(
    prefix: &str,
    kind: &str,
    names: &[&str],
    partitions: &Partitions,
) -> Vec<(String, String)> {
    if partitions.count.is_none() {
        return names
            .iter()
            .map(|name| (name.to_string(), format!("{prefix}.{kind}.*.{name}")))
            .collect();
    }
    if partitions.owns_all() {
        return names
            .iter()
            .map(|name| (name.to_string(), format!("{prefix}.{kind}.*.*.{name}")))
            .collect();
    }
    let served = partitions.served();
    served
        .iter()
        .flat_map(|&p| {
            names.iter().map(move |name| {
                let subject = subject::partition_filter(prefix, kind, p, name);
                (format!("{name}-p{p}"), subject)
            })
        })
        .collect()
}

/// A service registered with the NATS services API, with the requests of all its endpoints.
pub struct Registered {
    service: async_nats::service::Service,
    requests: SelectAll<async_nats::service::endpoint::Endpoint>,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("service", &self.service)
            .field("endpoints", &self.requests.len())
            .finish()
    }
}

/// Requests up to this size are answered in the serve loop when they can be at once; larger
/// ones always get a task (a single check is about 150 bytes, a batch of 100 about 7 KB).
const INLINE_MAX_BYTES: usize = 1024;

/// Registers `spec` on `client`: the service and each of its endpoints.
pub async fn register(
    client: &async_nats::Client,
    spec: &ServiceSpec,
) -> Result<Registered, async_nats::Error> {
    let service = client
        .service_builder()
        .description(spec.description)
        .queue_group(&spec.queue_group)
        .start(spec.name, env!("CARGO_PKG_VERSION"))
        .await?;
    let mut requests = SelectAll::new();
    for (name, subject) in &spec.endpoints {
        let endpoint = service.endpoint_builder().name(name).add(subject).await?;
        requests.push(endpoint);
    }
    Ok(Registered { service, requests })
}

/// Serves the requests of `registered` until `shutdown`, then stops the service (its endpoints
/// unsubscribe), finishes the requests in flight and flushes their replies.
pub async fn serve<R: Responder>(
    client: async_nats::Client,
    registered: Registered,
    responder: Arc<R>,
    shutdown: CancellationToken,
) {
    let Registered {
        service,
        mut requests,
    } = registered;
    let tasks = TaskTracker::new();
    loop {
        let request = tokio::select! {
            () = shutdown.cancelled() => break,
            r = requests.next() => match r { Some(r) => r, None => break },
        };
        if request.message.reply.is_none() {
            tracing::debug!(subject = %request.message.subject, "ignoring a request without a reply subject");
            continue;
        }
        let ticket = match responder.admit(request.message.payload.len()) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                reply(&request, refusal).await;
                continue;
            }
        };
        let responder = responder.clone();
        let small = request.message.payload.len() <= INLINE_MAX_BYTES;
        let mut answering = Box::pin(async move {
            let answer = responder.respond(ticket, &request.message).await;
            reply(&request, answer).await;
        });
        // Most queries are small and answered from memory at once: those are answered right
        // here, as a task per request cost more than the answer itself. A request that has to
        // wait (a command for its store, a query for a position) gets a task of its own, and so
        // does a large one (a batch of checks), so that large ones use every core.
        if !small || futures::poll!(answering.as_mut()).is_pending() {
            tasks.spawn(answering);
        }
    }
    if let Err(e) = service.stop().await {
        tracing::debug!(error = %e, "stopping the service failed");
    }
    drop(requests);
    tasks.close();
    tasks.wait().await;
    if let Err(e) = client.flush().await {
        tracing::debug!(error = %e, "flush failed");
    }
}

async fn reply(request: &Request, body: Bytes) {
    if let Err(e) = request.respond(Ok(body)).await {
        tracing::warn!(error = %e, "cannot send a reply");
    }
}

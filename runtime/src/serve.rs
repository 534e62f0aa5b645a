//! The request loop both services run on their NATS subscription, written once: admission
//! before a task is spawned (so a flood costs neither tasks nor memory), one task per admitted
//! request, every request with a reply subject answered, and on shutdown no new requests and
//! the ones in flight finished.
//!
//! What a service answers, and what its limits are, is its [`Responder`]'s business.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
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
        request: async_nats::Message,
    ) -> impl Future<Output = Bytes> + Send;
}

/// Serves the requests of `subscription` until `shutdown`, then unsubscribes, finishes the
/// requests in flight and flushes their replies.
pub async fn serve<R: Responder>(
    client: async_nats::Client,
    mut subscription: async_nats::Subscriber,
    responder: Arc<R>,
    shutdown: CancellationToken,
) {
    let tasks = TaskTracker::new();
    loop {
        let request = tokio::select! {
            () = shutdown.cancelled() => break,
            m = subscription.next() => match m { Some(m) => m, None => break },
        };
        let Some(reply_to) = request.reply.clone() else {
            tracing::debug!(subject = %request.subject, "ignoring a request without a reply subject");
            continue;
        };
        let ticket = match responder.admit(request.payload.len()) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                reply(&client, reply_to, refusal).await;
                continue;
            }
        };
        let (client, responder) = (client.clone(), responder.clone());
        tasks.spawn(async move {
            let answer = responder.respond(ticket, request).await;
            reply(&client, reply_to, answer).await;
        });
    }
    if let Err(e) = subscription.unsubscribe().await {
        tracing::debug!(error = %e, "unsubscribe failed");
    }
    tasks.close();
    tasks.wait().await;
    if let Err(e) = client.flush().await {
        tracing::debug!(error = %e, "flush failed");
    }
}

async fn reply(client: &async_nats::Client, to: async_nats::Subject, body: Bytes) {
    if let Err(e) = client.publish(to, body).await {
        tracing::warn!(error = %e, "cannot send a reply");
    }
}

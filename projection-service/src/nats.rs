//! Queries over NATS request-reply: a queue-group subscription on `{prefix}.query.*.*`.

use std::sync::Arc;

use followers_shared::error::ErrorCode;
use followers_shared::wire::{ErrorBody, QueryReply, subject};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::queries::Queries;

/// Serves queries until `shutdown`, then finishes those in flight.
pub async fn serve(
    client: async_nats::Client,
    mut subscription: async_nats::Subscriber,
    queries: Arc<Queries>,
    prefix: String,
    max_request_bytes: usize,
    shutdown: CancellationToken,
) {
    let tasks = TaskTracker::new();
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            m = subscription.next() => match m { Some(m) => m, None => break },
        };
        let Some(reply_to) = message.reply.clone() else {
            continue;
        };
        let (client, queries, prefix) = (client.clone(), queries.clone(), prefix.clone());
        tasks.spawn(async move {
            let body = if message.payload.len() > max_request_bytes {
                serde_json::to_vec(&QueryReply::<()>::failure(ErrorBody::new(
                    ErrorCode::RequestTooLarge,
                    format!(
                        "the query has {} bytes; at most {max_request_bytes} are accepted",
                        message.payload.len()
                    ),
                )))
                .unwrap_or_default()
            } else {
                match subject::split(&prefix, "query", &message.subject) {
                    Some((account, name)) => {
                        queries.answer(account, name, &message.payload).await.body
                    }
                    None => serde_json::to_vec(&QueryReply::<()>::failure(ErrorBody::new(
                        ErrorCode::UnknownCommand,
                        "queries are sent to {prefix}.query.{account}.{query}",
                    )))
                    .unwrap_or_default(),
                }
            };
            if let Err(e) = client.publish(reply_to, body.into()).await {
                tracing::warn!(error = %e, "cannot send a query reply");
            }
        });
    }
    let _ = subscription.unsubscribe().await;
    tasks.close();
    tasks.wait().await;
    let _ = client.flush().await;
}

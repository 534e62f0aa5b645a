//! Queries over NATS request-reply: a queue-group subscription on `{prefix}.query.*.*`.
//!
//! Each query is admitted into the shared [`Budget`](crate::queries::Budget) before a task is
//! spawned for it: one that does not fit is answered `unavailable` from the loop at once, so a
//! flood of queries costs neither tasks nor memory.

use std::sync::Arc;

use followers_shared::error::ErrorCode;
use followers_shared::wire::{ErrorBody, Query, QueryReply, subject};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::queries::{Admission, Queries};

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
        if message.payload.len() > max_request_bytes {
            let refused = failure(ErrorBody::new(
                ErrorCode::RequestTooLarge,
                format!(
                    "the query has {} bytes; at most {max_request_bytes} are accepted",
                    message.payload.len()
                ),
            ));
            publish(&client, reply_to, refused).await;
            continue;
        }
        let admitted = match queries.admit(message.payload.len()) {
            Ok(admitted) => admitted,
            Err(refused) => {
                publish(&client, reply_to, refused.body).await;
                continue;
            }
        };
        let (client, queries, prefix) = (client.clone(), queries.clone(), prefix.clone());
        tasks.spawn(async move {
            let body = match subject::split(&prefix, "query", &message.subject) {
                Some((account, name)) => {
                    answer(&queries, admitted, account, name, &message.payload).await
                }
                None => failure(ErrorBody::new(
                    ErrorCode::UnknownCommand,
                    "queries are sent to {prefix}.query.{account}.{query}",
                )),
            };
            publish(&client, reply_to, body).await;
        });
    }
    let _ = subscription.unsubscribe().await;
    tasks.close();
    tasks.wait().await;
    let _ = client.flush().await;
}

/// Reads query `name` and the `account` token of a subject, then answers it; the query's place
/// in the budget is released when the answer is ready.
async fn answer(
    queries: &Queries,
    admitted: Admission,
    account: &str,
    name: &str,
    body: &[u8],
) -> Vec<u8> {
    let answer = queries.answer_read(account, Query::parse(name, body)).await;
    drop(admitted);
    answer.body
}

fn failure(error: ErrorBody) -> Vec<u8> {
    followers_shared::json::to_vec(&QueryReply::<()>::failure(error))
}

async fn publish(client: &async_nats::Client, to: async_nats::Subject, body: Vec<u8>) {
    if let Err(e) = client.publish(to, body.into()).await {
        tracing::warn!(error = %e, "cannot send a query reply");
    }
}

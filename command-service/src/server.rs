//! The NATS side: a queue-group subscription on `{prefix}.cmd.*.*`, one task per request,
//! a bound on requests in flight, and a drain on shutdown.

use std::sync::Arc;

use chrono::Utc;
use followers_shared::caller::{Caller, CallerPolicy, REQUEST_INFO_HEADER};
use followers_shared::error::ErrorCode;
use followers_shared::store::EventStore;
use followers_shared::wire::{self, CommandReply, ErrorBody, subject};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handler::Handler;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub prefix: String,
    pub queue_group: String,
    pub max_request_bytes: usize,
    pub max_in_flight: usize,
    /// Which NATS callers may send what; `None`: every caller may claim any actor.
    pub caller_policy: Option<Arc<CallerPolicy>>,
}

/// Turns one request into a reply. Every input gets a reply; none panics.
pub async fn process<S: EventStore>(
    handler: &Handler<S>,
    options: &ServeOptions,
    subject_str: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
) -> CommandReply {
    if payload.len() > options.max_request_bytes {
        return CommandReply::failure(
            None,
            ErrorBody::new(
                ErrorCode::RequestTooLarge,
                format!(
                    "the request has {} bytes; at most {} are accepted",
                    payload.len(),
                    options.max_request_bytes
                ),
            ),
        );
    }
    let Some((account, name)) = subject::split(&options.prefix, "cmd", subject_str) else {
        return CommandReply::failure(
            None,
            ErrorBody::new(
                ErrorCode::UnknownCommand,
                "commands are sent to {prefix}.cmd.{account}.{command}",
            ),
        );
    };
    let mut cmd = match wire::parse_command(account, name, payload, Utc::now()) {
        Ok(cmd) => cmd,
        Err((id, error)) => return CommandReply::failure(id, error),
    };
    if let Some(policy) = &options.caller_policy {
        let caller = headers
            .and_then(|h| h.get(REQUEST_INFO_HEADER))
            .and_then(|v| Caller::from_request_info(v.as_str().as_bytes()));
        if let Err(refusal) = policy.permits(caller.as_ref(), &cmd.account, &cmd.meta.actor) {
            return CommandReply::failure(
                Some(cmd.meta.command_id),
                ErrorBody::new(ErrorCode::CallerNotAllowed, refusal.to_string()),
            );
        }
        cmd.meta.caller = caller;
    }
    handler.handle(cmd).await
}

/// Serves commands until `shutdown`, then stops taking new ones and finishes those in flight.
pub async fn serve<S: EventStore>(
    client: async_nats::Client,
    handler: Arc<Handler<S>>,
    options: ServeOptions,
    mut subscription: async_nats::Subscriber,
    shutdown: CancellationToken,
) {
    let options = Arc::new(options);
    let permits = Arc::new(Semaphore::new(options.max_in_flight));
    let tasks = TaskTracker::new();
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            m = subscription.next() => match m { Some(m) => m, None => break },
        };
        let Some(reply_to) = message.reply.clone() else {
            tracing::debug!(subject = %message.subject, "ignoring a command sent without a reply subject");
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let reply = CommandReply::failure(
                None,
                ErrorBody::new(
                    ErrorCode::Unavailable,
                    "too many commands in flight; retry with the same command id",
                ),
            );
            publish(&client, reply_to, &reply).await;
            continue;
        };
        let (client, handler, options) = (client.clone(), handler.clone(), options.clone());
        tasks.spawn(async move {
            let (subject, headers) = (&message.subject, message.headers.as_ref());
            let reply = process(&handler, &options, subject, headers, &message.payload).await;
            publish(&client, reply_to, &reply).await;
            drop(permit);
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

async fn publish(client: &async_nats::Client, to: async_nats::Subject, reply: &CommandReply) {
    let body = followers_shared::json::to_vec(reply);
    if let Err(e) = client.publish(to, body.into()).await {
        tracing::warn!(error = %e, "cannot send a reply");
    }
}

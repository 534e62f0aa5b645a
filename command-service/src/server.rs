//! The command service's side of the NATS request loop: which requests are admitted (a size
//! limit and a bound on commands in flight) and how a request becomes a command and its reply
//! (the subject, strict parsing, the caller policy, the handler). The loop itself, with its
//! draining shutdown, is [`followers_runtime::serve`].

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use followers_runtime::Responder;
use followers_shared::caller::{Caller, CallerPolicy, REQUEST_INFO_HEADER};
use followers_shared::error::ErrorCode;
use followers_shared::store::EventStore;
use followers_shared::wire::{self, CommandReply, ErrorBody, subject};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::handler::Handler;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub prefix: String,
    pub max_request_bytes: usize,
    pub max_in_flight: usize,
    /// Which NATS callers may send what; `None`: every caller may claim any actor.
    pub caller_policy: Option<Arc<CallerPolicy>>,
}

/// Turns one admitted request into a reply. Every input gets a reply; none panics.
pub async fn process<S: EventStore>(
    handler: &Handler<S>,
    options: &ServeOptions,
    subject_str: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
) -> CommandReply {
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

/// The command service's side of the request loop ([`followers_runtime::serve`]): a request
/// is admitted when it is small enough and a place among the commands in flight is free.
#[derive(Debug)]
pub struct Commands<S> {
    handler: Arc<Handler<S>>,
    options: ServeOptions,
    in_flight: Arc<Semaphore>,
}

impl<S> Commands<S> {
    pub fn new(handler: Arc<Handler<S>>, options: ServeOptions) -> Self {
        let in_flight = Arc::new(Semaphore::new(options.max_in_flight));
        Self {
            handler,
            options,
            in_flight,
        }
    }
}

impl<S: EventStore> Responder for Commands<S> {
    type Ticket = OwnedSemaphorePermit;

    fn admit(&self, bytes: usize) -> Result<OwnedSemaphorePermit, Bytes> {
        let limit = self.options.max_request_bytes;
        if bytes > limit {
            return Err(refusal(
                ErrorCode::RequestTooLarge,
                format!("the request has {bytes} bytes; at most {limit} are accepted"),
            ));
        }
        self.in_flight.clone().try_acquire_owned().map_err(|_| {
            refusal(
                ErrorCode::Unavailable,
                "too many commands in flight; retry with the same command id".to_owned(),
            )
        })
    }

    async fn respond(&self, _: OwnedSemaphorePermit, request: async_nats::Message) -> Bytes {
        let (subject, headers) = (&request.subject, request.headers.as_ref());
        let reply = process(
            &self.handler,
            &self.options,
            subject,
            headers,
            &request.payload,
        )
        .await;
        followers_shared::json::to_vec(&reply).into()
    }
}

/// The reply to a request refused before it was read: it names no command id.
fn refusal(code: ErrorCode, message: String) -> Bytes {
    let reply = CommandReply::failure(None, ErrorBody::new(code, message));
    followers_shared::json::to_vec(&reply).into()
}

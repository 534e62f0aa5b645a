//! The command service's side of the NATS request loop: which requests are admitted (a size
//! limit and a bound on commands in flight) and how a request becomes a command and its reply
//! (the subject, strict parsing, the caller policy, the handler). The loop itself, with its
//! draining shutdown, is [`followers_runtime::serve`]. Every reply is counted where it is
//! built: `followers_commands_total{command,outcome}` and `followers_command_seconds{command}`;
//! requests refused before they are read, `followers_commands_refused_total{reason}`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
use followers_runtime::Responder;
use followers_runtime::metrics::{RequestMeters, UNKNOWN};
use followers_shared::caller::{Caller, CallerPolicy, REQUEST_INFO_HEADER};
use followers_shared::command::Command;
use followers_shared::error::ErrorCode;
use followers_shared::ids::{AccountId, CommandId};
use followers_shared::partition::Partitions;
use followers_shared::store::EventStore;
use followers_shared::wire::{self, COMMAND_NAMES, CommandReply, ErrorBody, subject};
use metrics::Counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::handler::{Applied, CommandError, Handler};

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub prefix: String,
    pub max_request_bytes: usize,
    pub max_in_flight: usize,
    /// Which NATS callers may send what; `None`: every caller may claim any actor.
    pub caller_policy: Option<Arc<CallerPolicy>>,
    /// The history's partitions and those this instance serves.
    pub partitions: Partitions,
}

/// The reply to a command for an account of a partition this instance does not serve: only a
/// request sent to another partition's subject, or a server mapping with another number of
/// partitions, gets here. Nothing is decided; retrying reaches the right instance once the
/// routing is right.
pub fn not_served(partitions: &Partitions, account: &AccountId) -> ErrorBody {
    let p = partitions.of(account).map_or(0, |p| p.0);
    ErrorBody::new(
        ErrorCode::Unavailable,
        format!(
            "account {account} is in partition {p}, which this instance does not serve \
             (--partitions {}); check the server's subject mapping (docs/scaling.md)",
            partitions.owned
        ),
    )
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
    if !options.partitions.owns(&cmd.account) {
        let refusal = not_served(&options.partitions, &cmd.account);
        return CommandReply::failure(Some(cmd.meta.command_id), refusal);
    }
    if let Some(policy) = &options.caller_policy {
        let caller = headers
            .and_then(|h| h.get(REQUEST_INFO_HEADER))
            .and_then(|v| Caller::from_request_info(v.as_str().as_bytes()));
        if let Err(refusal) = policy.permits(caller.as_ref(), &cmd.account, &cmd.meta.actor) {
            return CommandReply {
                dry_run: cmd.dry_run,
                ..CommandReply::failure(
                    Some(cmd.meta.command_id),
                    ErrorBody::new(ErrorCode::CallerNotAllowed, refusal.to_string()),
                )
            };
        }
        cmd.meta.caller = caller;
    }
    let handled = handler.handle(&cmd).await;
    reply(&cmd, handled)
}

/// The wire reply to a handled command: every reply to a command the handler saw is built
/// here. The codes and sentences are the protocol's (docs/protocol.md).
pub fn reply(cmd: &Command, handled: Result<Applied, CommandError>) -> CommandReply {
    let id = Some(cmd.meta.command_id);
    let (mut reply, replayed) = match handled {
        Ok(applied) => (
            CommandReply {
                access_changes: applied.access_changes,
                ..CommandReply::success(cmd, applied.events, applied.position)
            },
            applied.replayed,
        ),
        Err(CommandError::Refused { rule, replayed }) => {
            (CommandReply::failure(id, (&rule).into()), replayed)
        }
        Err(e @ CommandError::Conflict { .. }) => (failure(id, ErrorCode::Conflict, &e), false),
        Err(e @ CommandError::Rebuilding) => (failure(id, ErrorCode::Unavailable, &e), false),
        Err(e @ CommandError::Store(_)) => (failure(id, ErrorCode::StoreUnavailable, &e), false),
    };
    reply.replayed = replayed;
    reply.dry_run = cmd.dry_run;
    reply
}

/// A failure whose message is the error's sentence.
fn failure(id: Option<CommandId>, code: ErrorCode, e: &CommandError) -> CommandReply {
    CommandReply::failure(id, ErrorBody::new(code, e.to_string()))
}

/// The command service's side of the request loop ([`followers_runtime::serve`]): a request
/// is admitted when it is small enough and a place among the commands in flight is free.
#[derive(Debug)]
pub struct Commands<S> {
    handler: Arc<Handler<S>>,
    options: ServeOptions,
    in_flight: Arc<Semaphore>,
    meters: Meters,
}

/// The handles of the command metrics, made once.
#[derive(Debug)]
struct Meters {
    replies: RequestMeters,
    too_large: Counter,
    in_flight: Counter,
}

impl Meters {
    fn new() -> Self {
        let refused =
            |reason| metrics::counter!("followers_commands_refused_total", "reason" => reason);
        Self {
            replies: RequestMeters::new(
                "followers_commands_total",
                "followers_command_seconds",
                "command",
                &COMMAND_NAMES,
            ),
            too_large: refused("too_large"),
            in_flight: refused("in_flight"),
        }
    }
}

impl<S> Commands<S> {
    /// Make it after the metrics recorder is installed (if any), so that its meters count.
    pub fn new(handler: Arc<Handler<S>>, options: ServeOptions) -> Self {
        let in_flight = Arc::new(Semaphore::new(options.max_in_flight));
        Self {
            handler,
            options,
            in_flight,
            meters: Meters::new(),
        }
    }
}

impl<S: EventStore> Responder for Commands<S> {
    type Ticket = OwnedSemaphorePermit;

    fn admit(&self, bytes: usize) -> Result<OwnedSemaphorePermit, Bytes> {
        let limit = self.options.max_request_bytes;
        if bytes > limit {
            self.meters.too_large.increment(1);
            return Err(refusal(
                ErrorCode::RequestTooLarge,
                format!("the request has {bytes} bytes; at most {limit} are accepted"),
            ));
        }
        self.in_flight.clone().try_acquire_owned().map_err(|_| {
            self.meters.in_flight.increment(1);
            refusal(
                ErrorCode::Unavailable,
                "too many commands in flight; retry with the same command id".to_owned(),
            )
        })
    }

    async fn respond(&self, _: OwnedSemaphorePermit, request: &async_nats::Message) -> Bytes {
        let started = Instant::now();
        let (subject, headers) = (&request.subject, request.headers.as_ref());
        let span = followers_store::trace::request_span("command request", subject, headers);
        let processing = process(
            &self.handler,
            &self.options,
            subject,
            headers,
            &request.payload,
        );
        let reply = processing.instrument(span).await;
        let command = subject::split(&self.options.prefix, "cmd", subject).map_or(UNKNOWN, |s| s.1);
        let code = reply.error.as_ref().map(|e| e.code);
        self.meters.replies.record(command, code, started.elapsed());
        followers_shared::json::to_vec(&reply).into()
    }
}

/// The reply to a request refused before it was read: it names no command id.
fn refusal(code: ErrorCode, message: String) -> Bytes {
    let reply = CommandReply::failure(None, ErrorBody::new(code, message));
    followers_shared::json::to_vec(&reply).into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use followers_shared::error::DomainError;
    use followers_shared::ids::AccountId;
    use followers_shared::store::{Failed, Position, StoreError};

    use super::*;

    fn open_account(id: uuid::Uuid) -> Command {
        let body =
            serde_json::json!({"command_id": id, "actor": {"kind": "system"}, "name": "Acme"});
        let body = serde_json::to_vec(&body).unwrap();
        wire::parse_command("acme", "open_account", &body, Utc::now()).unwrap()
    }

    /// The reply as it goes on the wire.
    fn json(reply: &CommandReply) -> String {
        String::from_utf8(followers_shared::json::to_vec(reply)).unwrap()
    }

    #[test]
    fn a_store_failure_is_store_unavailable_with_the_command_id() {
        let id = uuid::Uuid::now_v7();
        let cmd = open_account(id);
        let down = StoreError::Unavailable(Failed::doing("NATS at nats://h:4222", "refused"));
        let reply = reply(&cmd, Err(CommandError::Store(down)));
        assert_eq!(
            json(&reply),
            format!(
                r#"{{"ok":false,"command_id":"{id}","error":{{"code":"store_unavailable","message":"the event store failed (the event store cannot be reached: NATS at nats://h:4222: refused); retry with the same command id, which never applies a command twice"}}}}"#
            )
        );
    }

    #[test]
    fn losing_every_race_is_a_conflict_and_a_rebuilding_model_unavailable() {
        let id = uuid::Uuid::now_v7();
        let cmd = open_account(id);
        let conflict = reply(&cmd, Err(CommandError::Conflict { tries: 5 }));
        assert_eq!(
            json(&conflict),
            format!(
                r#"{{"ok":false,"command_id":"{id}","error":{{"code":"conflict","message":"the record changed 5 times while this command was being decided; retry with the same command id"}}}}"#
            )
        );
        let rebuilding = reply(&cmd, Err(CommandError::Rebuilding));
        assert_eq!(
            json(&rebuilding),
            format!(
                r#"{{"ok":false,"command_id":"{id}","error":{{"code":"unavailable","message":"the history was replaced and the model is being rebuilt from it; retry shortly with the same command id"}}}}"#
            )
        );
    }

    #[test]
    fn a_retried_refusal_is_the_same_refusal_marked_replayed() {
        let cmd = open_account(uuid::Uuid::now_v7());
        let rule = DomainError::AccountExists(AccountId::new("acme").unwrap());
        let first = reply(
            &cmd,
            Err(CommandError::Refused {
                rule: rule.clone(),
                replayed: false,
            }),
        );
        let again = reply(
            &cmd,
            Err(CommandError::Refused {
                rule: rule.clone(),
                replayed: true,
            }),
        );
        assert_eq!(
            first,
            CommandReply::failure(Some(cmd.meta.command_id), (&rule).into())
        );
        assert!(again.replayed && !first.replayed);
        assert_eq!(
            CommandReply {
                replayed: false,
                ..again
            },
            first
        );
    }

    #[test]
    fn an_applied_command_replies_with_its_events_and_position() {
        let cmd = open_account(uuid::Uuid::now_v7());
        let applied = Applied {
            events: Vec::new(),
            position: Position(7),
            replayed: true,
            access_changes: None,
        };
        let reply = reply(&cmd, Ok(applied));
        let mut expected = CommandReply::success(&cmd, Vec::new(), Position(7));
        expected.replayed = true;
        assert_eq!(reply, expected);
    }
}

//! The retry policy and the one request loop every command and query goes through.

use std::time::Duration;

use async_nats::client::RequestErrorKind;
use bytes::Bytes;
use followers_shared::ids::CommandId;
use followers_shared::wire::ErrorBody;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::error::{Error, Transient};

/// How long and how often to try a request that gets no considered reply.
///
/// An attempt is tried again when it times out, finds no responder, or is answered
/// `unavailable`, `store_unavailable` or `conflict`; a command keeps its id across attempts, so
/// the service applies it at most once (R24). Waits between attempts double from
/// `first_backoff` up to `max_backoff`. Both bounds hold: at most `attempts` attempts, and none
/// starts after `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts at most, the first included (at least 1).
    pub attempts: u32,
    /// The time all attempts and waits may take together.
    pub total: Duration,
    /// How long one attempt waits for its reply.
    pub attempt_timeout: Duration,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Retry {
    /// 6 attempts within 30 s, 5 s each, waits from 50 ms doubling to 2 s.
    fn default() -> Self {
        Self {
            attempts: 6,
            total: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(5),
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl Retry {
    /// One attempt of at most `timeout`: for callers that measure or retry themselves.
    pub fn once(timeout: Duration) -> Self {
        Self {
            attempts: 1,
            total: timeout,
            attempt_timeout: timeout,
            ..Self::default()
        }
    }

    /// The wait after the `attempt`-th attempt (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.first_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// A reply that may carry an error body.
pub(crate) trait Replied: DeserializeOwned {
    fn ok(&self) -> bool;
    fn failure(&self) -> Option<&ErrorBody>;
}

/// Sends `payload` to `subject` under `policy` until a considered reply comes: `Ok` with the
/// reply and the number of attempts it took when it has no error, [`Error::Refused`] when it
/// has one that asks for no retry.
pub(crate) async fn exchange<R: Replied>(
    nats: &async_nats::Client,
    policy: &Retry,
    subject: &str,
    payload: Bytes,
    command_id: Option<CommandId>,
) -> Result<(R, u32), Error> {
    let deadline = Instant::now() + policy.total;
    let attempts = policy.attempts.max(1);
    let mut last = Transient::TimedOut;
    // The caller's trace, if it records one, continues in the service (docs/client.md).
    let mut headers = async_nats::HeaderMap::new();
    followers_store::trace::inject_current(&mut headers);
    for attempt in 1..=attempts {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(gave_up(attempt - 1, command_id, last));
        }
        let sent = nats.request_with_headers(subject.to_owned(), headers.clone(), payload.clone());
        last = match tokio::time::timeout(policy.attempt_timeout.min(left), sent).await {
            Err(_) => Transient::TimedOut,
            Ok(Err(e)) => match e.kind() {
                RequestErrorKind::TimedOut => Transient::TimedOut,
                RequestErrorKind::NoResponders => Transient::NoResponders,
                _ => {
                    return Err(Error::Nats {
                        command_id,
                        source: e,
                    });
                }
            },
            Ok(Ok(msg)) => match considered::<R>(&msg.payload, command_id)? {
                Ok(reply) => return Ok((reply, attempt)),
                Err(transient) => transient,
            },
        };
        if attempt < attempts {
            let wait = policy
                .backoff(attempt)
                .min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(wait).await;
        }
    }
    Err(gave_up(attempts, command_id, last))
}

/// Reads a reply: the reply, a refusal, or a code that asks to try again.
fn considered<R: Replied>(
    body: &[u8],
    command_id: Option<CommandId>,
) -> Result<Result<R, Transient>, Error> {
    let reply: R = serde_json::from_slice(body).map_err(|e| Error::UnexpectedReply {
        what: String::from_utf8_lossy(body).chars().take(200).collect(),
        source: Some(e),
    })?;
    match reply.failure() {
        None if reply.ok() => Ok(Ok(reply)),
        None => Err(Error::UnexpectedReply {
            what: "`ok: false` without an `error`".to_owned(),
            source: None,
        }),
        Some(e) if Transient::asks_again(e.code) => Ok(Err(Transient::Retry {
            code: e.code,
            message: e.message.clone(),
        })),
        Some(e) => Err(Error::refused(e.clone(), command_id)),
    }
}

fn gave_up(attempts: u32, command_id: Option<CommandId>, last: Transient) -> Error {
    Error::GaveUp {
        attempts,
        command_id,
        last,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let r = Retry {
            first_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(35),
            ..Retry::default()
        };
        assert_eq!(r.backoff(1), Duration::from_millis(10));
        assert_eq!(r.backoff(2), Duration::from_millis(20));
        assert_eq!(r.backoff(3), Duration::from_millis(35));
        assert_eq!(r.backoff(60), Duration::from_millis(35));
    }
}

//! One NATS request, as a caller sends it: for trying a deployment from a shell (the repository
//! ships no NATS command-line client) and for `scripts/run-cluster --smoke`.

use std::time::Duration;

use followers_shared::store::StoreError;
use followers_store::NatsArgs;

/// Why no reply came.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Connect(#[from] StoreError),
    #[error(
        "no reply on {subject}: {source} (no service answered, or the server dropped a request \
         this user may not send)"
    )]
    Request {
        subject: String,
        source: async_nats::RequestError,
    },
}

/// What a reply says of itself: followers replies carry `"ok"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `"ok": true`.
    Ok,
    /// `"ok": false`: the service refused or failed the request (its `error` says why).
    Refused,
    /// Not a JSON object with a boolean `ok`.
    Unknown,
}

impl Outcome {
    pub fn of(reply: &[u8]) -> Self {
        match serde_json::from_slice::<serde_json::Value>(reply)
            .ok()
            .and_then(|v| v.get("ok").and_then(serde_json::Value::as_bool))
        {
            Some(true) => Self::Ok,
            Some(false) => Self::Refused,
            None => Self::Unknown,
        }
    }
}

/// Connects as the user of `nats`, sends `body` to `subject` and returns the reply's payload.
/// Waits for the reply at most `timeout` (a command may take up to the command service's
/// `--append-patience-ms` during a leader election).
pub async fn request(
    nats: &NatsArgs,
    subject: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<bytes::Bytes, RequestError> {
    let (servers, _) = nats.servers()?;
    let client = nats
        .options("followers-admin")
        .await?
        .request_timeout(Some(timeout))
        .connect(servers)
        .await
        .map_err(|e| nats.unreachable(e))?;
    let reply = client
        .request(subject.to_owned(), body.into())
        .await
        .map_err(|source| RequestError::Request {
            subject: subject.to_owned(),
            source,
        })?;
    Ok(reply.payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_is_read_from_the_replys_ok_field() {
        assert_eq!(Outcome::of(br#"{"ok":true,"position":3}"#), Outcome::Ok);
        assert_eq!(
            Outcome::of(br#"{"ok":false,"error":{"code":"account_exists"}}"#),
            Outcome::Refused
        );
        assert_eq!(Outcome::of(b"not json"), Outcome::Unknown);
        assert_eq!(Outcome::of(br#"{"ok":"yes"}"#), Outcome::Unknown);
    }
}

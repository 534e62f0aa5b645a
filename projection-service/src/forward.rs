//! Queries about accounts of partitions this instance does not serve (issue 15,
//! docs/scaling.md): asked over NATS of the instances that serve them, so that any instance's
//! HTTP API answers for every account.
//!
//! The question goes straight to the partition's subject
//! (`{prefix}.query.{partition}.{account}.{query}`), which only instances serving that partition
//! subscribe to, in their queue group: one of them answers, and never this one, so a question
//! cannot go round in circles. The answer is passed on as it came, bytes and error code.

use std::time::Duration;

use followers_shared::error::ErrorCode;
use followers_shared::ids::AccountId;
use followers_shared::partition::Partitions;
use followers_shared::wire::{ErrorBody, Query, QueryReply, subject};
use serde::Deserialize;

use crate::queries::Answer;

/// How to reach the instances serving the other partitions.
#[derive(Debug, Clone)]
pub struct Elsewhere {
    pub client: async_nats::Client,
    pub prefix: String,
    /// The history's partitions and those this instance serves.
    pub partitions: Partitions,
    /// How long an answer may take beyond the query's own wait (`wait_ms`, `min_position`).
    pub patience: Duration,
}

/// Only the error of a reply, to tell the HTTP status: the rest is passed on unread.
#[derive(Deserialize)]
struct Outcome {
    #[serde(default)]
    error: Option<ErrorBody>,
}

impl Elsewhere {
    /// Whether `account`'s queries are answered by another instance.
    pub fn asked_of_others(&self, account: &AccountId) -> bool {
        !self.partitions.owns(account)
    }

    /// Why the HTTP stream of an account's changes is not served here: a stream is not passed
    /// on (the `changes` query is, over NATS and HTTP).
    pub fn feed_not_here(&self, account: &AccountId) -> ErrorBody {
        let p = self.partitions.of(account).map_or(0, |p| p.0);
        ErrorBody::new(
            ErrorCode::Unavailable,
            format!(
                "account {account} is in partition {p}, which this instance does not serve \
                 (--partitions {}); open its stream on an instance that does, or ask the \
                 `changes` query here",
                self.partitions.owned
            ),
        )
    }

    /// Asks `query` about `account` of an instance serving its partition.
    pub async fn ask(&self, account: &AccountId, query: &Query, wait: Duration) -> Answer {
        let Some(partition) = self.partitions.of(account) else {
            return failure(
                ErrorCode::Unavailable,
                "this history has no partitions".into(),
            );
        };
        let to = subject::partitioned(
            &self.prefix,
            "query",
            partition,
            account.as_str(),
            query.name(),
        );
        let request = self.client.request(to, query.to_body().into());
        match tokio::time::timeout(wait + self.patience, request).await {
            Ok(Ok(reply)) => {
                let error = serde_json::from_slice::<Outcome>(&reply.payload)
                    .ok()
                    .and_then(|o| o.error)
                    .map(|e| e.code);
                Answer {
                    error,
                    body: reply.payload.to_vec(),
                }
            }
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => failure(
                ErrorCode::Unavailable,
                format!(
                    "no instance serves partition {partition} (account {account}) now; retry \
                     shortly"
                ),
            ),
            Ok(Err(e)) => failure(
                ErrorCode::Unavailable,
                format!("cannot ask the instances of partition {partition}: {e}"),
            ),
            Err(_) => failure(
                ErrorCode::Timeout,
                format!("the instances of partition {partition} did not answer in time"),
            ),
        }
    }
}

fn failure(code: ErrorCode, message: String) -> Answer {
    let reply = QueryReply::<()>::failure(ErrorBody::new(code, message));
    Answer {
        error: Some(code),
        body: followers_shared::json::to_vec(&reply),
    }
}

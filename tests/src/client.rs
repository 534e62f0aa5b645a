//! Raw requests for the tests whose point is the wire itself: malformed or lenient input,
//! subjects without a responder, the documented examples. Every other test sends its commands
//! and queries with the typed client (`followers-client`, helpers in [`crate::typed`]).

use std::time::Duration;

use followers_shared::wire::{CommandReply, QueryReply};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

/// Sends commands and queries for one account.
#[derive(Debug, Clone)]
pub struct Followers {
    pub client: async_nats::Client,
    pub prefix: String,
    pub account: String,
}

impl Followers {
    pub fn new(client: async_nats::Client, account: &str) -> Self {
        Self {
            client,
            prefix: "followers".to_owned(),
            account: account.to_owned(),
        }
    }

    pub fn for_account(&self, account: &str) -> Self {
        Self {
            account: account.to_owned(),
            ..self.clone()
        }
    }

    /// Whether a request to `{prefix}.{kind}.{account}.{name}` finds no responder: NATS says
    /// so at once when no service has an endpoint on that subject.
    pub async fn finds_no_responder(&self, kind: &str, name: &str) -> bool {
        let subject = format!("{}.{kind}.{}.{name}", self.prefix, self.account);
        let sent = self.client.request(subject, "{}".into());
        let answered = tokio::time::timeout(Duration::from_secs(30), sent)
            .await
            .expect("request timed out");
        matches!(
            answered.map_err(|e| e.kind()),
            Err(async_nats::client::RequestErrorKind::NoResponders)
        )
    }

    /// Sends raw bytes to a command subject and reads the reply.
    pub async fn raw(&self, command: &str, body: Vec<u8>) -> CommandReply {
        let subject = format!("{}.cmd.{}.{command}", self.prefix, self.account);
        let msg = tokio::time::timeout(
            Duration::from_secs(30),
            self.client.request(subject, body.into()),
        )
        .await
        .expect("command timed out")
        .expect("command request failed");
        serde_json::from_slice(&msg.payload).expect("reply is a CommandReply")
    }

    /// Sends `fields` (plus a fresh command id) as `command`, by `actor`.
    pub async fn send(&self, command: &str, actor: Value, fields: Value) -> CommandReply {
        let mut body = fields;
        body["command_id"] = json!(Uuid::now_v7());
        body["actor"] = actor;
        self.raw(command, serde_json::to_vec(&body).unwrap()).await
    }

    /// Sends a query and decodes its answer.
    pub async fn query<T: DeserializeOwned>(&self, query: &str, body: Value) -> QueryReply<T> {
        let subject = format!("{}.query.{}.{query}", self.prefix, self.account);
        let msg = tokio::time::timeout(
            Duration::from_secs(30),
            self.client
                .request(subject, serde_json::to_vec(&body).unwrap().into()),
        )
        .await
        .expect("query timed out")
        .expect("query request failed");
        serde_json::from_slice(&msg.payload).expect("reply is a QueryReply")
    }
}

pub fn system() -> Value {
    json!({"kind": "system"})
}

pub fn user(id: &str) -> Value {
    json!({"kind": "user", "user": id})
}

pub fn workflow(id: &str) -> Value {
    json!({"kind": "workflow", "workflow": id})
}

pub fn contact(id: &str) -> Value {
    json!({"kind": "contact", "id": id})
}

pub fn opportunity(id: &str) -> Value {
    json!({"kind": "opportunity", "id": id})
}

#[cfg(test)]
mod tests {
    /// The test files whose point is the raw wire, and so may send raw requests with
    /// [`super::Followers`] (protocol_examples.rs writes its own, from docs/protocol.md).
    const RAW_WIRE_TESTS: &[&str] = &[
        "commands.rs",
        "limits.rs",
        // Malformed `at_position` / `at_time` values (a string, a negative, a local time),
        // which the typed client cannot send.
        "past_moments.rs",
        "queries.rs",
        "strict_requests.rs",
    ];

    /// Issue 16: tests send well-formed commands and queries with the typed client; only the
    /// files in `RAW_WIRE_TESTS` use the raw one.
    #[test]
    fn only_the_raw_wire_tests_send_raw_requests() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
        let mut raw = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if text.contains("Followers::new") && !RAW_WIRE_TESTS.contains(&name.as_str()) {
                raw.push(name);
            }
        }
        assert!(
            raw.is_empty(),
            "raw requests outside the wire tests: {raw:?}"
        );
    }
}

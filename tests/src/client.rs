//! A small client for the followers protocol, as another service would write it from
//! docs/protocol.md.

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
        self.send_with_id(command, Uuid::now_v7(), actor, fields)
            .await
    }

    pub async fn send_with_id(
        &self,
        command: &str,
        id: Uuid,
        actor: Value,
        fields: Value,
    ) -> CommandReply {
        let mut body = fields;
        body["command_id"] = json!(id);
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

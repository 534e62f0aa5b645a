//! The JSON wire contract: subjects, command requests and replies, queries and answers.
//!
//! Requests are strict (unknown fields are rejected, ids are validated) so that a typo is an
//! error rather than a silently ignored field; replies may gain fields over time, so clients
//! should ignore fields they do not know. `docs/protocol.md` documents every shape, and
//! [`schema`] generates the JSON Schemas of `docs/schemas/` from these types.

mod command;
mod query;
pub mod schema;
pub mod strict;
pub mod subject;

/// Every command name accepted on the wire (from the table in [`crate::command`]).
pub use crate::command::COMMAND_NAMES;
pub use command::{CommandReply, Outcome, parse_command};
pub use query::*;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::access::Reason;
use crate::error::{DomainError, ErrorCode};

/// The error part of a reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// With `follower_limit`: how many followers could still be added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_places: Option<usize>,
    /// With `access_denied`: the access rule's reason (R21).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            free_places: None,
            reason: None,
        }
    }
}

impl From<&DomainError> for ErrorBody {
    fn from(e: &DomainError) -> Self {
        let mut body = ErrorBody::new(e.code(), e.to_string());
        match e {
            DomainError::FollowerLimit { free, .. } => body.free_places = Some(*free),
            DomainError::AccessDenied { reason, .. } => body.reason = Some(*reason),
            _ => {}
        }
        body
    }
}

pub use crate::bounded::{MAX_TEXT_LEN, MAX_USERS_PER_COMMAND};
/// The most checks one batch may carry.
pub const MAX_BATCH_CHECKS: usize = 1000;

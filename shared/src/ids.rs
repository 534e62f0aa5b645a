//! Validated identifiers.
//!
//! Names (accounts, users, contacts, opportunities, workflows) come from other systems, so we accept
//! their own ids, but only from a small alphabet: ASCII letters, digits, `_` and `-`, 1 to 64
//! characters. That alphabet is exactly what is safe inside one NATS subject token (no `.`, `*`,
//! `>` or whitespace) and inside an EventStoreDB stream name, so an id can be put into a subject
//! without escaping and never splits or widens it.
//!
//! Command ids and event ids are UUIDs. Event ids are derived from their command id (see
//! [`EventId::derive`]), so that deciding a command twice yields the same events.

use std::fmt;

use compact_str::CompactString;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

/// Longest accepted name id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} `{value}` is longer than {MAX_ID_LEN} characters")]
    TooLong { what: &'static str, value: String },
    #[error("{what} `{value}` may only contain ASCII letters, digits, `_` and `-`")]
    BadCharacter { what: &'static str, value: String },
}

fn validate(what: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { what });
    }
    if value.len() > MAX_ID_LEN {
        let shown: String = value.chars().take(MAX_ID_LEN).collect();
        return Err(IdError::TooLong {
            what,
            value: shown + "…",
        });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(IdError::BadCharacter {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(CompactString);

        impl $name {
            /// Validates `value` against the id alphabet.
            pub fn new(value: impl AsRef<str>) -> Result<Self, IdError> {
                let value = value.as_ref();
                validate($what, value)?;
                Ok(Self(CompactString::from(value)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(raw.as_ref()).map_err(serde::de::Error::custom)
            }
        }

        /// What `Deserialize` accepts: the id alphabet, 1 to [`MAX_ID_LEN`] characters.
        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                id_schema($what)
            }
        }
    };
}

/// The schema of a name id: `what` and the alphabet, as [`validate`] checks them.
fn id_schema(what: &str) -> Schema {
    json_schema!({
        "description": format!(
            "The {what}: 1 to {MAX_ID_LEN} ASCII letters, digits, `_` and `-`."
        ),
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_ID_LEN,
        "pattern": format!("^[A-Za-z0-9_-]{{1,{MAX_ID_LEN}}}$"),
    })
}

name_id!(
    /// A sub-account: the boundary nothing crosses (R1).
    AccountId,
    "account id"
);
name_id!(
    /// A user; the same user may be a member of several accounts (R2).
    UserId,
    "user id"
);
name_id!(
    /// A contact record.
    ContactId,
    "contact id"
);
name_id!(
    /// An opportunity record.
    OpportunityId,
    "opportunity id"
);
name_id!(
    /// A workflow of the CRM's automation engine, named as an actor (R17, R22).
    WorkflowId,
    "workflow id"
);

/// Identifies one command, chosen by the sender; a retry carries the same id (R24).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct CommandId(pub Uuid);

impl CommandId {
    /// A fresh, time-ordered id (UUID v7).
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// A deterministic id for a command that a process derives from an event (the follower sync):
    /// deriving twice from the same inputs gives the same id, so the reaction is applied once.
    pub fn derive(trigger: EventId, purpose: &str) -> Self {
        let mut name = Vec::with_capacity(16 + purpose.len());
        name.extend_from_slice(trigger.0.as_bytes());
        name.extend_from_slice(purpose.as_bytes());
        Self(Uuid::new_v5(&DERIVED_COMMAND_NAMESPACE, &name))
    }
}

impl Default for CommandId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommandId({})", self.0)
    }
}

/// Identifies one event. Derived from the command id and the event's index in the commit, so a
/// decision replayed for the same command yields the same ids.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct EventId(pub Uuid);

impl EventId {
    pub fn derive(command: CommandId, index: usize) -> Self {
        let mut name = [0u8; 24];
        name[..16].copy_from_slice(command.0.as_bytes());
        name[16..].copy_from_slice(&(index as u64).to_be_bytes());
        Self(Uuid::new_v5(&EVENT_NAMESPACE, &name))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0)
    }
}

const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x5d1f_0c2a_6f7e_4c59_9a43_2f0f_7c1e_a001);
const DERIVED_COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0x5d1f_0c2a_6f7e_4c59_9a43_2f0f_7c1e_a002);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_subject_safe_alphabet() {
        assert!(UserId::new("u-1_A").is_ok());
        assert!(UserId::new("a".repeat(MAX_ID_LEN)).is_ok());
    }

    #[test]
    fn ids_reject_what_would_break_a_subject_token() {
        for bad in ["", "a.b", "a*", ">", "a b", "ü", "a\n"] {
            assert!(ContactId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            AccountId::new("a".repeat(MAX_ID_LEN + 1)),
            Err(IdError::TooLong { .. })
        ));
    }

    #[test]
    fn ids_are_validated_when_deserialized() {
        assert!(serde_json::from_str::<UserId>("\"ok\"").is_ok());
        let err = serde_json::from_str::<UserId>("\"not.ok\"").unwrap_err();
        assert!(err.to_string().contains("user id"));
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let c = CommandId::new();
        assert_eq!(EventId::derive(c, 0), EventId::derive(c, 0));
        assert_ne!(EventId::derive(c, 0), EventId::derive(c, 1));
        let e = EventId::derive(c, 0);
        assert_eq!(CommandId::derive(e, "x"), CommandId::derive(e, "x"));
        assert_ne!(CommandId::derive(e, "x"), CommandId::derive(e, "y"));
    }
}

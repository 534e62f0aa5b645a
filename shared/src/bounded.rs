//! Validated values of commands that are not ids: free text and lists of users.
//!
//! Like the ids ([`crate::ids`]), each is a newtype whose `Deserialize` validates, so a command
//! payload read from the wire is valid as soon as it exists, and a decider never sees a name with
//! a line break or an add of a thousand users. The limits are part of the protocol
//! (docs/protocol.md): a name or an email has 1 to [`MAX_TEXT_LEN`] characters and no control
//! character (a NUL or a line break would corrupt logs, exports and the screens that show it);
//! one command names at most [`MAX_USERS_PER_COMMAND`] users, counted as sent.

use std::fmt;
use std::ops::Deref;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};

use crate::ids::UserId;

/// The longest free text (names, emails) a request may carry, in characters.
pub const MAX_TEXT_LEN: usize = 256;
/// The most users one command may name.
pub const MAX_USERS_PER_COMMAND: usize = 100;

/// Why a value is out of its bounds. The sentence follows the field's name in an error reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundsError {
    #[error("must have 1 to {MAX_TEXT_LEN} characters, not {0}")]
    TextLength(usize),
    #[error("must not contain control characters; found U+{0:04X}")]
    ControlCharacter(u32),
    #[error("names {0} users; at most {MAX_USERS_PER_COMMAND} are accepted")]
    TooManyUsers(usize),
    #[error("needs at least one user")]
    NoUser,
}

/// Free text: 1 to [`MAX_TEXT_LEN`] characters, none of them a control character.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Text(String);

impl Text {
    pub fn new(value: impl Into<String>) -> Result<Self, BoundsError> {
        let value = value.into();
        let n = value.chars().count();
        if n == 0 || n > MAX_TEXT_LEN {
            return Err(BoundsError::TextLength(n));
        }
        if let Some(c) = value.chars().find(|c| c.is_control()) {
            return Err(BoundsError::ControlCharacter(u32::from(c)));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.0
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// What `Deserialize` accepts: 1 to [`MAX_TEXT_LEN`] characters (JSON Schema counts code
/// points, as [`Text::new`] does), none of them a control character (Unicode category Cc:
/// U+0000 to U+001F and U+007F to U+009F, what `char::is_control` is).
impl JsonSchema for Text {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Text".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": format!(
                "Free text: 1 to {MAX_TEXT_LEN} characters, no control character."
            ),
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_TEXT_LEN,
            "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]*$",
        })
    }
}

/// The users one command names: at least `MIN`, at most [`MAX_USERS_PER_COMMAND`], counted as
/// sent (repeats included). See [`Users`] and [`SomeUsers`].
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct UserList<const MIN: usize>(Vec<UserId>);

/// Zero to [`MAX_USERS_PER_COMMAND`] users (a new record's first followers).
pub type Users = UserList<0>;
/// One to [`MAX_USERS_PER_COMMAND`] users (an add or a removal of followers).
pub type SomeUsers = UserList<1>;

impl<const MIN: usize> UserList<MIN> {
    pub fn new(users: Vec<UserId>) -> Result<Self, BoundsError> {
        if users.len() > MAX_USERS_PER_COMMAND {
            return Err(BoundsError::TooManyUsers(users.len()));
        }
        if users.len() < MIN {
            return Err(BoundsError::NoUser);
        }
        Ok(Self(users))
    }
}

impl<const MIN: usize> Deref for UserList<MIN> {
    type Target = [UserId];

    fn deref(&self) -> &[UserId] {
        &self.0
    }
}

impl<const MIN: usize> fmt::Debug for UserList<MIN> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<'de, const MIN: usize> Deserialize<'de> for UserList<MIN> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(Vec::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// What `Deserialize` accepts: `MIN` to [`MAX_USERS_PER_COMMAND`] user ids, repeats allowed.
impl<const MIN: usize> JsonSchema for UserList<MIN> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        match MIN {
            0 => "Users".into(),
            1 => "SomeUsers".into(),
            n => format!("UserList{n}").into(),
        }
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": format!(
                "{MIN} to {MAX_USERS_PER_COMMAND} user ids, counted as sent (repeats included)."
            ),
            "type": "array",
            "items": generator.subschema_for::<UserId>(),
            "minItems": MIN,
            "maxItems": MAX_USERS_PER_COMMAND,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn text_is_bounded_and_printable() {
        assert!(Text::new("Ada Lovelace").is_ok());
        assert!(
            Text::new("é".repeat(MAX_TEXT_LEN)).is_ok(),
            "characters, not bytes"
        );
        assert_eq!(Text::new(""), Err(BoundsError::TextLength(0)));
        assert_eq!(
            Text::new("x".repeat(MAX_TEXT_LEN + 1)),
            Err(BoundsError::TextLength(MAX_TEXT_LEN + 1))
        );
        assert_eq!(Text::new("a\nb"), Err(BoundsError::ControlCharacter(10)));
        let e = serde_json::from_str::<Text>("\"a\\u0000\"").unwrap_err();
        assert!(e.to_string().contains("U+0000"), "{e}");
    }

    #[test]
    fn user_lists_are_bounded_as_sent() {
        let u = UserId::new("u").unwrap();
        assert!(Users::new(Vec::new()).is_ok());
        assert_eq!(SomeUsers::new(Vec::new()), Err(BoundsError::NoUser));
        let all = vec![u.clone(); MAX_USERS_PER_COMMAND];
        assert!(SomeUsers::new(all.clone()).is_ok(), "repeats count");
        let over = vec![u; MAX_USERS_PER_COMMAND + 1];
        assert_eq!(
            Users::new(over),
            Err(BoundsError::TooManyUsers(MAX_USERS_PER_COMMAND + 1))
        );
        assert!(serde_json::from_str::<SomeUsers>("[]").is_err());
        assert!(serde_json::from_str::<SomeUsers>("[\"a.b\"]").is_err());
    }
}

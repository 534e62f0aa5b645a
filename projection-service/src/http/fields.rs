//! A query's fields as an HTTP `GET` gives them: path segments and query parameters, read
//! straight into the query's request type (`FollowersQuery`, ...) under the one strict policy of
//! every request ([`strict`]), as [`Fields::read`].
//!
//! Each route names where a field comes from: a path segment ([`Fields::path`]), a record whose
//! kind and id are two segments ([`Fields::path_record`]) or two parameters
//! ([`Fields::param_record`]), and otherwise the parameter of the field's name: `min_position`,
//! `at_position` and `limit` are numbers, and so are those a route names ([`Fields::numbers`]:
//! the history's `after`), `hint` a boolean, the others text. A field taken from the path is
//! never overridden by a parameter. Fields are read in name order, so of several bad ones the
//! first by name is named, and each is refused in the words a NATS body with the same fields
//! gets, without the line and column.

use std::collections::BTreeMap;

use followers_shared::wire::{ErrorBody, Query, QueryRequest, invalid, strict};
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::forward_to_deserialize_any;

/// The parameters that are numbers (non-negative integers); others are text.
const NUMBERS: [&str; 3] = ["min_position", "at_position", "limit"];
/// The parameters that are booleans (`true` or `false`).
const FLAGS: [&str; 1] = ["hint"];

/// One field's value.
#[derive(Debug)]
enum Value {
    /// A part of a record that was not given (JSON `null`).
    Absent,
    Text(String),
    /// Read as an integer when it is one, else as text (then refused by the field's type).
    Number(String),
    /// Read as a boolean when it is `true` or `false`, else as text (then refused).
    Flag(String),
    Record {
        kind: Box<Value>,
        id: Box<Value>,
    },
}

/// The fields of one query request, by name.
#[derive(Debug, Default)]
pub struct Fields {
    values: BTreeMap<String, Value>,
    bytes: usize,
}

impl Fields {
    /// Every query parameter as the field of its name.
    pub fn params(params: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut fields = Fields::default();
        for (name, value) in params {
            fields.bytes += name.len() + value.len();
            let value = if NUMBERS.contains(&name.as_str()) {
                Value::Number(value)
            } else if FLAGS.contains(&name.as_str()) {
                Value::Flag(value)
            } else {
                Value::Text(value)
            };
            fields.values.insert(name, value);
        }
        fields
    }

    /// The parameters `names` are numbers in this route's query, besides [`NUMBERS`] (e.g.
    /// `after`, a position in `record_history` but a user or a record elsewhere).
    pub fn numbers(mut self, names: &[&str]) -> Self {
        for name in names {
            if let Some(value) = self.values.get_mut(*name)
                && let Value::Text(text) = value
            {
                *value = Value::Number(std::mem::take(text));
            }
        }
        self
    }

    /// `field` is the number `value` unless a parameter gave it.
    pub fn number_unless_given(mut self, field: &str, value: String) -> Self {
        if !self.values.contains_key(field) {
            self.bytes += value.len();
            self.values.insert(field.to_owned(), Value::Number(value));
        }
        self
    }

    /// `field` is the path segment `value`.
    pub fn path(mut self, field: &str, value: String) -> Self {
        self.bytes += value.len();
        self.values.insert(field.to_owned(), Value::Text(value));
        self
    }

    /// `field` is the record whose kind and id are path segments.
    pub fn path_record(mut self, field: &str, kind: String, id: String) -> Self {
        self.bytes += kind.len() + id.len();
        let record = Value::Record {
            kind: Box::new(Value::Text(kind)),
            id: Box::new(Value::Text(id)),
        };
        self.values.insert(field.to_owned(), record);
        self
    }

    /// `field` is the record whose kind and id are the parameters `kind` and `id`, when either
    /// is given; those two are no fields of their own.
    pub fn param_record(mut self, field: &str, kind: &str, id: &str) -> Self {
        let kind = self.values.remove(kind);
        let id = self.values.remove(id);
        if kind.is_some() || id.is_some() {
            let record = Value::Record {
                kind: Box::new(kind.unwrap_or(Value::Absent)),
                id: Box::new(id.unwrap_or(Value::Absent)),
            };
            self.values.insert(field.to_owned(), record);
        }
        self
    }

    /// The bytes of the parameters (names and values) and path segments: what the request
    /// holds in the query budget.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Reads the fields as a `T` query, strictly; `malformed_request` naming the field if not.
    pub fn read<T: QueryRequest>(&self) -> Result<Query, ErrorBody> {
        strict::from_deserializer::<T, _>(|| {
            Entries::new(
                self.values
                    .iter()
                    .map(|(name, value)| (name.as_str(), value)),
            )
        })
        .map(Into::into)
        .map_err(invalid::<T>)
    }
}

/// The fields of an object in name order, as a deserializer of that object.
struct Entries<'a, I> {
    iter: I,
    value: Option<&'a Value>,
}

impl<'a, I: Iterator<Item = (&'a str, &'a Value)>> Entries<'a, I> {
    fn new(iter: I) -> Self {
        Self { iter, value: None }
    }
}

impl<'de, I: Iterator<Item = (&'de str, &'de Value)>> Deserializer<'de> for Entries<'de, I> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_map(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

impl<'de, I: Iterator<Item = (&'de str, &'de Value)>> MapAccess<'de> for Entries<'de, I> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some((name, value)) = self.iter.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(BorrowedStrDeserializer::new(name))
            .map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(value),
            None => Err(de::Error::custom("a value was asked for before its field")),
        }
    }
}

impl<'de> Deserializer<'de> for &'de Value {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self {
            Value::Absent => visitor.visit_unit(),
            Value::Text(text) => visitor.visit_borrowed_str(text),
            Value::Number(text) => match text.parse::<u64>() {
                Ok(n) => visitor.visit_u64(n),
                Err(_) => visitor.visit_borrowed_str(text),
            },
            Value::Flag(text) => match text.as_str() {
                "true" => visitor.visit_bool(true),
                "false" => visitor.visit_bool(false),
                _ => visitor.visit_borrowed_str(text),
            },
            Value::Record { kind, id } => {
                // In name order, as the other fields.
                let parts = [("id", id.as_ref()), ("kind", kind.as_ref())];
                visitor.visit_map(Entries::new(parts.into_iter()))
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self {
            Value::Absent => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self {
            Value::Text(text) => visitor.visit_enum(BorrowedStrDeserializer::new(text)),
            Value::Number(text) if text.parse::<u64>().is_err() => {
                visitor.visit_enum(BorrowedStrDeserializer::new(text))
            }
            // What serde_json says of a value that is neither a string nor an object here.
            _ => Err(de::Error::custom("expected value")),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use followers_shared::wire::{
        AccountQuery, CheckAccess, ContactOpportunities, FollowersQuery, RecordHistory,
        RecordsOfUser, WhoCanAccess,
    };
    use serde_json::{Value as Json, json};

    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Fields {
        Fields::params(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    /// The fields read as a `T` exactly as the JSON body `body` is over NATS: the same query,
    /// or the same error less serde_json's line and column.
    fn same_as_body<T: QueryRequest>(fields: &Fields, body: Json) {
        let over_http = fields.read::<T>();
        let over_nats =
            Query::parse(T::NAME, &serde_json::to_vec(&body).unwrap()).map_err(|mut e| {
                if let Some(at) = e.message.rfind(" at line ") {
                    e.message.truncate(at);
                }
                e
            });
        assert_eq!(over_http, over_nats, "{fields:?} vs {body}");
    }

    #[test]
    fn parameters_read_as_the_body_with_the_same_fields() {
        let cases = [
            (params(&[]), json!({})),
            (params(&[("min_position", "5")]), json!({"min_position": 5})),
            (
                params(&[("min_position", "+5")]),
                json!({"min_position": 5}),
            ),
            (
                params(&[("min_position", "-1")]),
                json!({"min_position": "-1"}),
            ),
            (
                params(&[("min_position", "x"), ("extra", "1")]),
                json!({"min_position": "x", "extra": "1"}),
            ),
            (params(&[("limit", "3")]), json!({"limit": 3})),
            (params(&[("at_position", "7")]), json!({"at_position": 7})),
            (
                params(&[("at_position", "seven")]),
                json!({"at_position": "seven"}),
            ),
        ];
        for (fields, body) in cases {
            same_as_body::<AccountQuery>(&fields, body);
        }
    }

    /// The fields of a query string (no escapes).
    fn query_string(q: &str) -> Fields {
        let pairs: Vec<(&str, &str)> = q
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap())
            .collect();
        params(&pairs)
    }

    #[test]
    fn a_record_of_two_parameters_reads_as_the_record_object() {
        let c1 = json!({"kind": "contact", "id": "c1"});
        let cases = [
            (
                "user=ann&action=view&kind=contact&id=c1",
                json!({"user": "ann", "action": "view", "record": c1}),
            ),
            (
                "user=ann&action=view&kind=contact",
                json!({"user": "ann", "action": "view", "record": {"kind": "contact", "id": null}}),
            ),
            (
                "user=ann&action=view&id=c1",
                json!({"user": "ann", "action": "view", "record": {"kind": null, "id": "c1"}}),
            ),
            (
                "user=ann&action=delete&kind=task&id=t1",
                json!({"user": "ann", "action": "delete", "record": {"kind": "task", "id": "t1"}}),
            ),
            (
                "user=a$b&action=view&kind=contact&id=c.1",
                json!({"user": "a$b", "action": "view", "record": {"kind": "contact", "id": "c.1"}}),
            ),
            (
                "user=ann&action=view&record=c1",
                json!({"user": "ann", "action": "view", "record": "c1"}),
            ),
            (
                "user=ann&action=view&record=x&kind=contact&id=c1",
                json!({"user": "ann", "action": "view", "record": c1}),
            ),
            (
                "user=ann&action=view",
                json!({"user": "ann", "action": "view"}),
            ),
            (
                "user=ann&action=view&kind=contact&id=c1&extra=1&min_position=2",
                json!({"user": "ann", "action": "view", "record": c1, "extra": "1", "min_position": 2}),
            ),
        ];
        for (q, body) in cases {
            let fields = query_string(q).param_record("record", "kind", "id");
            same_as_body::<CheckAccess>(&fields, body);
        }
    }

    #[test]
    fn path_segments_read_as_their_fields_and_win_over_parameters() {
        let record = |kind: &str, id: &str| {
            params(&[("record", "x")]).path_record("record", kind.into(), id.into())
        };
        same_as_body::<FollowersQuery>(
            &record("contact", "c1"),
            json!({"record": {"kind": "contact", "id": "c1"}}),
        );
        same_as_body::<FollowersQuery>(
            &record("task", "t1"),
            json!({"record": {"kind": "task", "id": "t1"}}),
        );
        same_as_body::<FollowersQuery>(
            &record("contact", "c.1"),
            json!({"record": {"kind": "contact", "id": "c.1"}}),
        );
        let records = |pairs: &[(&str, &str)], user: &str| {
            params(pairs)
                .path("user", user.into())
                .param_record("after", "after_kind", "after_id")
        };
        same_as_body::<RecordsOfUser>(
            &records(&[("user", "zed"), ("limit", "10")], "bob"),
            json!({"user": "bob", "limit": 10}),
        );
        same_as_body::<RecordsOfUser>(
            &records(&[("limit", "ten")], "bob"),
            json!({"user": "bob", "limit": "ten"}),
        );
        same_as_body::<RecordsOfUser>(
            &records(&[("after_kind", "contact"), ("after_id", "c1")], "bob"),
            json!({"user": "bob", "after": {"kind": "contact", "id": "c1"}}),
        );
        same_as_body::<RecordsOfUser>(
            &records(&[("after_kind", "contact")], "bob"),
            json!({"user": "bob", "after": {"kind": "contact", "id": null}}),
        );
        same_as_body::<RecordsOfUser>(
            &records(&[("after", "c1")], "bob"),
            json!({"user": "bob", "after": "c1"}),
        );
        same_as_body::<RecordsOfUser>(
            &records(&[("kind", "contact")], "b$b"),
            json!({"user": "b$b", "kind": "contact"}),
        );
        let contact = params(&[("contact", "c2")]).path("contact", "c$".into());
        same_as_body::<ContactOpportunities>(&contact, json!({"contact": "c$"}));
    }

    /// `after` is a position in `record_history` (a number there) and a user elsewhere.
    #[test]
    fn a_route_names_its_own_number_parameters() {
        let history = |q: &[(&str, &str)]| {
            params(q)
                .path_record("record", "contact".into(), "c1".into())
                .numbers(&["after"])
        };
        let c1 = json!({"kind": "contact", "id": "c1"});
        same_as_body::<RecordHistory>(
            &history(&[("after", "12"), ("limit", "2")]),
            json!({"record": c1, "after": 12, "limit": 2}),
        );
        same_as_body::<RecordHistory>(
            &history(&[("after", "x")]),
            json!({"record": c1, "after": "x"}),
        );
        let users = params(&[("after", "12"), ("action", "view")]).path_record(
            "record",
            "contact".into(),
            "c1".into(),
        );
        same_as_body::<WhoCanAccess>(
            &users,
            json!({"record": c1, "action": "view", "after": "12"}),
        );
    }

    #[test]
    fn bytes_count_names_values_and_segments() {
        let fields = params(&[("limit", "10")]).path("user", "bob".into());
        assert_eq!(fields.bytes(), 5 + 2 + 3);
    }
}

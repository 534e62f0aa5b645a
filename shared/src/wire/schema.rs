//! JSON Schemas of the wire contract, generated from the types (schemars), as published in
//! `docs/schemas/`.
//!
//! - `commands/<name>.json`: the request of each command: its own fields (the payload types of
//!   [`crate::command`]) and the common `command_id`, `actor`, `correlation_id` and `dry_run` that
//!   [`super::parse_command`] reads.
//! - `queries/<name>.json`: the request of each query ([`super::Query`]).
//! - `replies/command.json`, `replies/<query>.json`, `replies/error.json`: what the services
//!   answer ([`super::CommandReply`], [`super::QueryReply`] of each answer, [`super::ErrorBody`]).
//! - `history/event.json`, `history/commit.json`: what the history stores ([`Event`],
//!   [`Commit`]).
//! - `index.json`: every file above, by what it describes.
//!
//! Requests are described as they are read (serde's deserialize contract): strict, so every
//! object of a request has `additionalProperties: false`, ids, texts and user lists carry the
//! patterns and bounds their `Deserialize` checks, and `command_id` must not be the nil UUID.
//! Two things of the strict reading no JSON Schema can say, as it sees parsed JSON: a key twice
//! in one object, and trailing bytes after the value; both are refused by the services.
//! Replies and the history are described as they are written (serialize contract); they may gain
//! fields, so their objects do not forbid others unless the type itself is strict.
//!
//! Generating is pure: [`files`] returns each file's path under `docs/schemas/` and its text.
//! `cargo run -p followers-shared --example schemas` writes them, and the test
//! `shared/tests/schemas.rs` fails when a file differs.

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::{Schema, SchemaGenerator};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{
    AccessAnswer, AccessibleRecordsAnswer, AccountAnswer, ChangesAnswer, CommandReply,
    ContactOpportunitiesAnswer, ErrorBody, FollowersAnswer, Query, QueryReply, RecordHistoryAnswer,
    RecordsOfUserAnswer, WhoCanAccessAnswer,
};
use crate::command::{AccountCommand, COMMAND_NAMES, RecordCommand};
use crate::event::Event;
use crate::ids::CommandId;
use crate::model::Actor;
use crate::store::Commit;

/// The command that writes the files, named in the drift test's message.
pub const REGENERATE: &str = "cargo run -p followers-shared --example schemas";

/// Where the files live, relative to the repository's root.
pub const DIR: &str = "docs/schemas";

/// Every schema file: its path under [`DIR`] and its content (pretty JSON and a final newline).
pub fn files() -> Vec<(String, String)> {
    let mut out: Vec<(String, Value)> = Vec::new();
    for name in COMMAND_NAMES {
        out.push((format!("commands/{name}.json"), command_request(name)));
    }
    for name in Query::NAMES {
        let request = Query::request_schema(name, &mut requests())
            .unwrap_or_else(|| panic!("`{name}` is in Query::NAMES"));
        let request = titled(
            request,
            name,
            &format!(
                "The request of the `{name}` query, sent on `followers.query.{{account}}.{name}` \
                 (with the default prefix) or as the fields of its HTTP route."
            ),
        );
        out.push((format!("queries/{name}.json"), request));
        out.push((format!("replies/{name}.json"), query_reply(name)));
    }
    let written = [
        (
            "replies/command.json",
            replies().root_schema_for::<CommandReply>(),
            "command_reply",
            "The reply to every command.",
        ),
        (
            "replies/error.json",
            replies().root_schema_for::<ErrorBody>(),
            "error",
            "The `error` of a reply whose `ok` is false.",
        ),
        (
            "history/event.json",
            replies().root_schema_for::<Event>(),
            "event",
            "One event of the history, as stored in a commit.",
        ),
        (
            "history/commit.json",
            replies().root_schema_for::<Commit>(),
            "commit",
            "Everything one command appended to one stream: one message of the history.",
        ),
    ];
    for (path, schema, title, description) in written {
        out.push((path.to_owned(), titled(schema, title, description)));
    }
    out.push(("index.json".to_owned(), index(&out)));
    out.into_iter()
        .map(|(path, value)| (path, crate::json::to_string_pretty(&value) + "\n"))
        .collect()
}

/// Where an OpenAPI document keeps the schemas its operations refer to.
pub const OPENAPI_DEFINITIONS: &str = "#/components/schemas/";

/// The generator of the HTTP API's OpenAPI 3.1 document (whose dialect is JSON Schema 2020-12):
/// the same schemas as these files, described as they are written (every reply; the query
/// requests read the same either way, which a test below checks), kept under
/// `components/schemas` rather than `$defs`.
pub fn openapi_generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .for_serialize()
        .with(|s| s.definitions_path = OPENAPI_DEFINITIONS.into())
        .with_transform(RecursiveTransform(tidy))
        .into_generator()
}

/// A generator for requests: how they are read.
fn requests() -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .for_deserialize()
        .with_transform(RecursiveTransform(tidy))
        .into_generator()
}

/// A generator for replies and the history: how they are written.
fn replies() -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .for_serialize()
        .with_transform(RecursiveTransform(tidy))
        .into_generator()
}

/// Descriptions come from the doc comments: one line each, and rustdoc's links
/// (``[`Name`]``, ``[`Name`](path)``) as plain code.
fn tidy(schema: &mut Schema) {
    if let Some(Value::String(text)) = schema.get_mut("description") {
        *text = plain(text);
    }
}

fn plain(doc: &str) -> String {
    let mut out = String::with_capacity(doc.len());
    let mut rest = doc;
    while let Some(start) = rest.find("[`") {
        let Some(end) = rest[start..].find("`]").map(|e| start + e) else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str(&rest[start + 1..end + 1]);
        rest = &rest[end + 2..];
        if rest.starts_with('(')
            && let Some(close) = rest.find(')')
        {
            rest = &rest[close + 1..];
        }
    }
    out.push_str(rest);
    out.replace('\n', " ")
}

fn titled(schema: Schema, title: &str, description: &str) -> Value {
    let mut value = schema.to_value();
    if let Some(object) = value.as_object_mut() {
        object.insert("title".into(), title.into());
        object.insert("description".into(), description.into());
    }
    value
}

/// The request of command `name`: its own fields and the common ones, in one strict object.
fn command_request(name: &str) -> Value {
    let mut generator = requests();
    let common = [
        ("command_id", command_id(&mut generator)),
        ("actor", generator.subschema_for::<Actor>().to_value()),
        (
            "correlation_id",
            generator.subschema_for::<Option<Uuid>>().to_value(),
        ),
        ("dry_run", generator.subschema_for::<bool>().to_value()),
    ];
    let payload = AccountCommand::payload_schema(name, &mut generator)
        .or_else(|| RecordCommand::payload_schema(name, &mut generator))
        .unwrap_or_else(|| panic!("`{name}` is in COMMAND_NAMES"));
    let description = format!(
        "The request of the `{name}` command, sent on `followers.cmd.{{account}}.{name}` (with \
         the default prefix): the common fields `command_id`, `actor`, `correlation_id` and \
         `dry_run`, and the command's own."
    );
    let mut value = titled(payload, name, &description);
    let object = value
        .as_object_mut()
        .expect("a struct's schema is an object");
    inline_root_ref(object);
    let properties = object
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("`properties` is an object");
    let mut record_optional = properties.contains_key("record");
    for (field, schema) in common {
        properties.insert(field.into(), schema);
    }
    let required = object
        .entry("required")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .expect("`required` is an array");
    record_optional &= !required.iter().any(|r| r == "record");
    required.splice(0..0, [json!("command_id"), json!("actor")]);
    object.insert("additionalProperties".into(), false.into());
    if record_optional {
        // R17: only a workflow may leave out the record (checked by `parse_command`).
        object.insert(
            "if".into(),
            json!({"properties": {"actor": {"properties": {"kind": {"const": "workflow"}}}}}),
        );
        object.insert(
            "else".into(),
            json!({"properties": {"record": {"not": {"type": "null"}}}, "required": ["record"]}),
        );
    }
    value
}

/// A transparent payload (`change_settings`) has as root a `$ref` to its inner type: the inner
/// type's schema takes its place, so that the common fields can join its properties.
fn inline_root_ref(root: &mut Map<String, Value>) {
    let Some(Value::String(target)) = root.remove("$ref") else {
        return;
    };
    let name = target.trim_start_matches("#/$defs/");
    let defs = root.get_mut("$defs").and_then(Value::as_object_mut);
    let Some(Value::Object(def)) = defs.and_then(|d| d.remove(name)) else {
        panic!("the root's `{target}` is not in its `$defs`");
    };
    for (key, value) in def {
        root.entry(key).or_insert(value);
    }
}

/// `command_id`: a UUID, not the nil one (R24).
fn command_id(generator: &mut SchemaGenerator) -> Value {
    json!({
        "allOf": [generator.subschema_for::<CommandId>()],
        "not": {"const": Uuid::nil().to_string()},
        "description": "Chosen by the sender, the same for every retry of one command (R24); \
                        never the nil UUID.",
    })
}

/// The reply to query `name`: [`QueryReply`] of its answer.
fn query_reply(name: &str) -> Value {
    let mut g = replies();
    let schema = match name {
        "check_access" => g.root_schema_for::<QueryReply<AccessAnswer>>(),
        "check_access_batch" => g.root_schema_for::<QueryReply<Vec<AccessAnswer>>>(),
        "followers" => g.root_schema_for::<QueryReply<FollowersAnswer>>(),
        "records_of_user" => g.root_schema_for::<QueryReply<RecordsOfUserAnswer>>(),
        "who_can_access" => g.root_schema_for::<QueryReply<WhoCanAccessAnswer>>(),
        "accessible_records" => g.root_schema_for::<QueryReply<AccessibleRecordsAnswer>>(),
        "contact_opportunities" => g.root_schema_for::<QueryReply<ContactOpportunitiesAnswer>>(),
        "account" => g.root_schema_for::<QueryReply<AccountAnswer>>(),
        "changes" => g.root_schema_for::<QueryReply<ChangesAnswer>>(),
        "record_history" => g.root_schema_for::<QueryReply<RecordHistoryAnswer>>(),
        other => panic!("no answer type for the query `{other}`: add it here"),
    };
    titled(
        schema,
        &format!("{name}_reply"),
        &format!("The reply to the `{name}` query."),
    )
}

/// `index.json`: each file by what it describes.
fn index(files: &[(String, Value)]) -> Value {
    let mut index = Map::new();
    index.insert(
        "description".into(),
        format!(
            "JSON Schemas (draft 2020-12) of the followers wire protocol (docs/protocol.md), \
             generated from the Rust types; regenerate with `{REGENERATE}`."
        )
        .into(),
    );
    let mut groups: Map<String, Value> = Map::new();
    for (path, schema) in files {
        let (group, file) = path.split_once('/').expect("every file is in a folder");
        let name = file.trim_end_matches(".json");
        let entry = json!({
            "file": path,
            "description": schema.get("description").cloned().unwrap_or(Value::Null),
        });
        groups
            .entry(group)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("a group is an object")
            .insert(name.to_owned(), entry);
    }
    index.extend(groups);
    Value::Object(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_lose_rustdoc_links_and_line_breaks() {
        assert_eq!(
            plain("See [`Text`] and [`MAX`](super::MAX),\nor [`a`](b) [x]."),
            "See `Text` and `MAX`, or `a` [x]."
        );
        assert_eq!(plain("no [`end"), "no [`end");
    }

    /// The OpenAPI document describes the query requests with [`openapi_generator`], as
    /// written: that is how they are read too.
    #[test]
    fn query_requests_are_written_as_they_are_read() {
        for name in Query::NAMES {
            let written = Query::request_schema(name, &mut replies());
            let read = Query::request_schema(name, &mut requests());
            assert_eq!(written, read, "{name}");
        }
    }

    #[test]
    fn a_transparent_payload_is_inlined_so_the_common_fields_join_it() {
        let request = command_request("change_settings");
        assert!(request.get("$ref").is_none(), "{request}");
        let properties = request["properties"].as_object().expect("properties");
        for field in ["command_id", "actor", "allow_different_owners"] {
            assert!(properties.contains_key(field), "{field}");
        }
        assert_eq!(request["additionalProperties"], false);
    }
}

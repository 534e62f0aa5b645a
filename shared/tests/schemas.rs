#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The JSON Schemas of `docs/schemas/` (`followers_shared::wire::schema`):
//! - the drift check: the files in the repository are exactly what the types generate, so CI
//!   (`scripts/test`, which runs the workspace's tests) fails when a wire type changed and the
//!   files were not regenerated;
//! - the schemas accept what the parsers accept and refuse what they refuse, at the edges of
//!   every bound (ids, texts, user lists, actors, the nil command id, unknown fields at depth).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::Utc;
use followers_shared::wire::{Query, parse_command, schema};
use serde_json::{Value, json};

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(schema::DIR)
}

/// The `.json` files under `dir`, relative to it, at any depth.
fn json_files(dir: &Path, prefix: &str, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            json_files(&path, &format!("{prefix}{name}/"), out);
        } else if name.ends_with(".json") {
            out.insert(format!("{prefix}{name}"));
        }
    }
}

#[test]
fn the_schema_files_are_up_to_date() {
    let dir = docs_dir();
    let generated = schema::files();
    let mut stale = Vec::new();
    for (path, text) in &generated {
        let on_disk = std::fs::read_to_string(dir.join(path)).unwrap_or_default();
        if on_disk != *text {
            stale.push(format!(
                "{}/{path} is out of date: run `{}`",
                schema::DIR,
                schema::REGENERATE
            ));
        }
    }
    let wanted: BTreeSet<String> = generated.iter().map(|(p, _)| p.clone()).collect();
    let mut present = BTreeSet::new();
    json_files(&dir, "", &mut present);
    for extra in present.difference(&wanted) {
        stale.push(format!(
            "{}/{extra} is no longer generated: run `{}`, which removes it",
            schema::DIR,
            schema::REGENERATE
        ));
    }
    assert!(stale.is_empty(), "{}", stale.join("\n"));
}

#[test]
fn every_command_and_query_has_its_files_and_an_index_entry() {
    let files: BTreeSet<String> = schema::files().into_iter().map(|(p, _)| p).collect();
    let index: Value = serde_json::from_str(
        &schema::files()
            .into_iter()
            .find(|(p, _)| p == "index.json")
            .unwrap()
            .1,
    )
    .unwrap();
    for name in followers_shared::wire::COMMAND_NAMES {
        assert!(files.contains(&format!("commands/{name}.json")), "{name}");
        assert_eq!(
            index["commands"][name]["file"],
            format!("commands/{name}.json")
        );
    }
    for name in Query::NAMES {
        assert!(files.contains(&format!("queries/{name}.json")), "{name}");
        assert!(files.contains(&format!("replies/{name}.json")), "{name}");
        assert_eq!(
            index["queries"][name]["file"],
            format!("queries/{name}.json")
        );
    }
    for file in [
        "replies/command.json",
        "replies/error.json",
        "history/event.json",
    ] {
        assert!(files.contains(file), "{file}");
    }
    assert_eq!(index["history"]["commit"]["file"], "history/commit.json");
}

/// The generated schema of `path` (under docs/schemas/), ready to validate.
fn validator(path: &str) -> jsonschema::Validator {
    let text = schema::files()
        .into_iter()
        .find(|(p, _)| p == path)
        .unwrap_or_else(|| panic!("no schema {path}"))
        .1;
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{path} is not a valid schema: {e}"))
}

fn command_parses(name: &str, body: &Value) -> bool {
    parse_command("acme", name, body.to_string().as_bytes(), Utc::now()).is_ok()
}

const CID: &str = "0193a000-0000-7000-8000-000000000001";

/// A request of command `name` by user `ann` with `fields`.
fn request(fields: Value) -> Value {
    let mut body = json!({"command_id": CID, "actor": {"kind": "user", "user": "ann"}});
    body.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    body
}

/// A case: a command, its request, and whether the parser accepts it.
type Case = (&'static str, Value, bool);

fn users(n: usize) -> Value {
    Value::from((0..n).map(|i| format!("u{i}")).collect::<Vec<_>>())
}

/// Ids and user lists, on `create_contact`.
fn id_cases() -> Vec<Case> {
    let contact = |id: Value| ("create_contact", request(json!({"contact": id})), true);
    let refused = |id: &str| ("create_contact", request(json!({"contact": id})), false);
    let with = |fields: Value, ok: bool| {
        let mut body = request(json!({"contact": "c1"}));
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        ("create_contact", body, ok)
    };
    vec![
        contact(json!("a".repeat(64))),
        contact(json!("A-z_09")),
        refused(&"a".repeat(65)),
        refused(""),
        refused("c.1"),
        refused("c 1"),
        refused("c*"),
        refused("ü"),
        with(json!({"owner": null}), true),
        with(json!({"owner": "u.1"}), false),
        with(json!({"followers": []}), true),
        with(json!({"followers": users(100)}), true),
        with(json!({"followers": users(101)}), false),
        with(json!({"followers": ["a", "a"]}), true),
        with(json!({"extra": 1}), false),
        with(json!({"correlation_id": null}), true),
        with(json!({"correlation_id": CID}), true),
        with(json!({"correlation_id": "x"}), false),
    ]
}

/// Records, user lists and R17 on the follower commands, and `change_owner`'s `owner`.
fn record_cases() -> Vec<Case> {
    let c1 = json!({"kind": "contact", "id": "c1"});
    let add = |fields: Value, ok: bool| ("add_followers", request(fields), ok);
    let by_workflow = json!({"command_id": CID, "actor": {"kind": "workflow", "workflow": "wf"},
        "users": ["u1"]});
    vec![
        add(json!({"record": c1, "users": users(1)}), true),
        add(json!({"record": c1, "users": users(100)}), true),
        add(json!({"record": c1, "users": []}), false),
        add(json!({"record": c1, "users": users(101)}), false),
        add(json!({"users": ["u1"]}), false),
        add(json!({"record": null, "users": ["u1"]}), false),
        ("add_followers", by_workflow.clone(), true),
        ("remove_followers", by_workflow, true),
        add(
            json!({"record": {"kind": "contact", "id": "c1", "x": 1}, "users": ["u"]}),
            false,
        ),
        add(
            json!({"record": {"kind": "task", "id": "t1"}, "users": ["u"]}),
            false,
        ),
        add(
            json!({"record": {"kind": "opportunity"}, "users": ["u"]}),
            false,
        ),
        add(json!({"record": ["contact", "c1"], "users": ["u"]}), false),
        (
            "change_owner",
            request(json!({"record": c1, "owner": null})),
            true,
        ),
        (
            "change_owner",
            request(json!({"record": c1, "owner": "bob"})),
            true,
        ),
        ("change_owner", request(json!({"record": c1})), false),
    ]
}

/// Texts, and the settings' fields.
fn text_cases() -> Vec<Case> {
    let member = |name: &str, ok: bool| {
        let fields = json!({"user": "bob", "name": name, "email": "b@x", "role": "user",
            "data_scope": "all"});
        ("register_member", request(fields), ok)
    };
    let settings = |fields: Value, ok: bool| ("change_settings", request(fields), ok);
    vec![
        member(&"x".repeat(256), true),
        member(&"é".repeat(256), true),
        member(&"x".repeat(257), false),
        member("", false),
        member("a\nb", false),
        member("a\u{0}b", false),
        member("a\u{7f}b", false),
        member("a\u{9f}b", false),
        member("a\u{a0}b", true),
        settings(json!({"allow_different_owners": true}), true),
        settings(json!({"allow_different_owners": null}), true),
        settings(json!({"allow_different_owner": true}), false),
        settings(json!({"allow_different_owners": "yes"}), false),
        ("open_account", request(json!({"name": "A"})), true),
        (
            "open_account",
            request(json!({"name": "A", "settings": {"x": true}})),
            false,
        ),
        (
            "open_account",
            request(json!({"name": "A", "settings": null})),
            false,
        ),
    ]
}

/// Actors and command ids, on a request that is otherwise valid.
fn common_cases() -> Vec<(Value, bool)> {
    let with = |actor: Value, command_id: Value| json!({"command_id": command_id, "actor": actor, "contact": "c1"});
    let cid = json!(CID);
    vec![
        (with(json!({"kind": "system"}), cid.clone()), true),
        (
            with(json!({"kind": "system", "user": null}), cid.clone()),
            true,
        ),
        (
            with(json!({"kind": "system", "user": "u"}), cid.clone()),
            false,
        ),
        (
            with(
                json!({"kind": "user", "user": "u", "workflow": null}),
                cid.clone(),
            ),
            true,
        ),
        (
            with(
                json!({"kind": "user", "user": "u", "workflow": "w"}),
                cid.clone(),
            ),
            false,
        ),
        (with(json!({"kind": "user"}), cid.clone()), false),
        (
            with(json!({"kind": "workflow", "workflow": "w"}), cid.clone()),
            true,
        ),
        (with(json!({"kind": "robot"}), cid.clone()), false),
        (with(json!(["user", "u"]), cid.clone()), false),
        (
            with(
                json!({"kind": "system"}),
                json!(uuid::Uuid::nil().to_string()),
            ),
            false,
        ),
        (with(json!({"kind": "system"}), json!("not-a-uuid")), false),
        (with(json!({"kind": "system"}), json!(null)), false),
        (json!({"command_id": CID, "contact": "c1"}), false),
    ]
}

#[test]
fn command_schemas_accept_what_the_parser_accepts_and_refuse_the_rest() {
    let mut cases = id_cases();
    cases.extend(record_cases());
    cases.extend(text_cases());
    cases.extend(
        common_cases()
            .into_iter()
            .map(|(body, ok)| ("create_contact", body, ok)),
    );
    let mut wrong = Vec::new();
    for (name, body, accepted) in cases {
        let parsed = command_parses(name, &body);
        let valid = validator(&format!("commands/{name}.json")).is_valid(&body);
        if parsed != accepted || valid != accepted {
            wrong.push(format!(
                "{name} {body}: expected {accepted}, parser {parsed}, schema {valid}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn query_schemas_accept_what_the_parser_accepts_and_refuse_the_rest() {
    let contact = json!({"kind": "contact", "id": "c1"});
    let cases = [
        ("account", json!({}), true),
        ("account", json!({"min_position": 3}), true),
        ("account", json!({"min_position": null}), true),
        ("account", json!({"min_position": -1}), false),
        ("account", json!({"x": 1}), false),
        (
            "check_access",
            json!({"user": "u", "action": "view", "record": contact}),
            true,
        ),
        (
            "check_access",
            json!({"user": "u", "action": "delete", "record": contact}),
            false,
        ),
        (
            "check_access",
            json!({"user": "u", "action": "view"}),
            false,
        ),
        (
            "followers",
            json!({"record": {"kind": "contact", "id": "c.1"}}),
            false,
        ),
        (
            "records_of_user",
            json!({"user": "u", "after": contact, "limit": 5}),
            true,
        ),
        (
            "contact_opportunities",
            json!({"contact": "c1", "extra": true}),
            false,
        ),
        (
            "check_access_batch",
            json!({"checks": [{"user": "u", "action": "edit",
            "record": contact, "x": 1}]}),
            false,
        ),
    ];
    let mut wrong = Vec::new();
    for (name, body, accepted) in cases {
        let parsed = Query::parse(name, body.to_string().as_bytes()).is_ok();
        let valid = validator(&format!("queries/{name}.json")).is_valid(&body);
        if parsed != accepted || valid != accepted {
            wrong.push(format!(
                "{name} {body}: expected {accepted}, parser {parsed}, schema {valid}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Two bounds are checked when a query is answered rather than when it is read (both refused
/// as `malformed_request`, see projection-service/src/queries.rs); the schemas state them.
#[test]
fn query_schemas_state_the_bounds_checked_when_answering() {
    let check = json!({"user": "u", "action": "view", "record": {"kind": "contact", "id": "c"}});
    let batch = validator("queries/check_access_batch.json");
    assert!(batch.is_valid(&json!({"checks": vec![check.clone(); 1000]})));
    assert!(!batch.is_valid(&json!({"checks": vec![check; 1001]})));
    let records = validator("queries/records_of_user.json");
    for (limit, ok) in [(0, false), (1, true), (1000, true), (1001, false)] {
        assert_eq!(
            records.is_valid(&json!({"user": "u", "limit": limit})),
            ok,
            "{limit}"
        );
    }
}

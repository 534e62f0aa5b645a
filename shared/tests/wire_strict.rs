//! Requests are strict at every depth (R24, docs/protocol.md §1.2): starting from a valid request
//! of every command and query, any object replaced by an array, or any key written twice, is
//! refused with `malformed_request` naming the field, never read some other way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Utc;
use followers_shared::error::ErrorCode;
use followers_shared::wire::{ErrorBody, Query, parse_command};
use proptest::prelude::*;
use serde_json::{Value, json};

/// One valid request: a command or a query, its name and its body.
#[derive(Debug, Clone)]
struct Request {
    command: bool,
    name: &'static str,
    body: Value,
}

fn command(name: &'static str, actor: Value, mut fields: Value) -> Request {
    fields["command_id"] = json!("0192f0a0-0000-7000-8000-00000000000a");
    fields["correlation_id"] = json!("0192f0a0-0000-7000-8000-00000000000b");
    fields["actor"] = actor;
    Request {
        command: true,
        name,
        body: fields,
    }
}

fn query(name: &'static str, body: Value) -> Request {
    Request {
        command: false,
        name,
        body,
    }
}

/// A valid request of every command and every query, with every nested object the protocol has.
fn examples() -> Vec<Request> {
    let system = json!({"kind": "system"});
    let ann = json!({"kind": "user", "user": "ann"});
    let flow = json!({"kind": "workflow", "workflow": "wf-1"});
    let c1 = json!({"kind": "contact", "id": "c1"});
    let o1 = json!({"kind": "opportunity", "id": "o1"});
    vec![
        command(
            "open_account",
            system.clone(),
            json!({"name": "Acme", "settings": {"allow_different_owners": true,
                   "sync_contact_follower_with_opportunity_owner": false}}),
        ),
        command(
            "register_member",
            system.clone(),
            json!({"user": "bob", "name": "Bob", "email": "bob@example.com",
                   "role": "user", "data_scope": "all"}),
        ),
        command(
            "change_member_role",
            ann.clone(),
            json!({"user": "bob", "role": "admin"}),
        ),
        command(
            "change_member_data_scope",
            ann.clone(),
            json!({"user": "bob", "data_scope": "only_assigned"}),
        ),
        command("deactivate_member", ann.clone(), json!({"user": "bob"})),
        command("reactivate_member", ann.clone(), json!({"user": "bob"})),
        command(
            "change_settings",
            ann.clone(),
            json!({"allow_different_owners": true}),
        ),
        command(
            "create_contact",
            ann.clone(),
            json!({"contact": "c1", "owner": "bob", "followers": ["cid"]}),
        ),
        command(
            "create_opportunity",
            ann.clone(),
            json!({"opportunity": "o1", "contact": "c1", "owner": "bob", "followers": ["cid"]}),
        ),
        command(
            "change_owner",
            ann.clone(),
            json!({"record": o1.clone(), "owner": "bob"}),
        ),
        command(
            "add_followers",
            flow.clone(),
            json!({"record": c1.clone(), "users": ["bob", "cid"],
                   "until": {"bob": "2099-01-01T00:00:00Z"}}),
        ),
        command(
            "change_follower_until",
            ann.clone(),
            json!({"record": c1.clone(), "user": "bob", "until": "2099-01-01T00:00:00Z"}),
        ),
        command(
            "remove_followers",
            ann.clone(),
            json!({"record": o1.clone(), "users": ["bob"]}),
        ),
        query(
            "check_access",
            json!({"user": "ann", "action": "view", "record": c1.clone(), "min_position": 3}),
        ),
        query(
            "check_access_batch",
            json!({"checks": [{"user": "ann", "action": "view", "record": c1.clone()},
                              {"user": "bob", "action": "edit", "record": o1.clone()}],
                   "min_position": 1}),
        ),
        query("followers", json!({"record": o1.clone()})),
        query(
            "records_of_user",
            json!({"user": "bob", "after": c1.clone(), "limit": 10}),
        ),
        query("contact_opportunities", json!({"contact": "c1"})),
        query("account", json!({"min_position": 2})),
    ]
}

/// Parses `body` as `request` would be; `Err` carries the refusal.
fn parse(request: &Request, body: &[u8]) -> Result<(), ErrorBody> {
    if request.command {
        parse_command("acme", request.name, body, Utc::now())
            .map(drop)
            .map_err(|(_, e)| e)
    } else {
        Query::parse(request.name, body).map(drop)
    }
}

/// Every path (keys and indexes from the root) to an object inside `v`, the root included.
fn object_paths(v: &Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match v {
        Value::Object(map) => {
            out.push(here.clone());
            for (k, child) in map {
                here.push(Step::Key(k.clone()));
                object_paths(child, here, out);
                here.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                here.push(Step::Index(i));
                object_paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

fn at<'a>(v: &'a mut Value, path: &[Step]) -> &'a mut Value {
    path.iter().fold(v, |v, step| match step {
        Step::Key(k) => &mut v[k.as_str()],
        Step::Index(i) => &mut v[*i],
    })
}

/// The last key on `path`: the field an error must name (none for the request itself).
fn field_named(path: &[Step]) -> Option<&str> {
    path.iter().rev().find_map(|s| match s {
        Step::Key(k) => Some(k.as_str()),
        Step::Index(_) => None,
    })
}

/// The array a lenient reader would take for the object: its values in some order, its keys
/// and values, or nothing.
#[derive(Debug, Clone)]
enum AsArray {
    Values(Vec<usize>),
    Pairs,
    Empty,
}

fn as_array(object: &Value, how: &AsArray) -> Value {
    let map = object.as_object().expect("an object");
    let values: Vec<&Value> = map.values().collect();
    Value::Array(match how {
        AsArray::Values(order) => order
            .iter()
            .filter_map(|i| values.get(i % values.len().max(1)))
            .map(|v| (*v).clone())
            .collect(),
        AsArray::Pairs => map
            .iter()
            .flat_map(|(k, v)| [json!(k), v.clone()])
            .collect(),
        AsArray::Empty => Vec::new(),
    })
}

fn how() -> impl Strategy<Value = AsArray> {
    prop_oneof![
        Just(vec![0usize, 1, 2, 3, 4, 5, 6, 7])
            .prop_shuffle()
            .prop_flat_map(|order| (Just(order), 1usize..8))
            .prop_map(|(order, n)| AsArray::Values(order.into_iter().take(n).collect())),
        Just(AsArray::Pairs),
        Just(AsArray::Empty),
    ]
}

/// Writes `v` as JSON, repeating key `dup` of the object at `path` with `again` as its value.
fn with_duplicate(v: &Value, path: &[Step], dup: usize, again: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut parts = Vec::new();
            for (i, (k, child)) in map.iter().enumerate() {
                let inner = match path.first() {
                    Some(Step::Key(key)) if key == k => {
                        with_duplicate(child, &path[1..], dup, again)
                    }
                    _ => child.to_string(),
                };
                parts.push(format!("{}:{inner}", json!(k)));
                if path.is_empty() && i == dup % map.len() {
                    parts.push(format!("{}:{again}", json!(k)));
                }
            }
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .enumerate()
                .map(|(i, child)| match path.first() {
                    Some(Step::Index(j)) if *j == i => {
                        with_duplicate(child, &path[1..], dup, again)
                    }
                    _ => child.to_string(),
                })
                .collect();
            format!("[{}]", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// A valid request and the path to one of its objects.
fn request_and_object() -> impl Strategy<Value = (Request, Vec<Step>)> {
    prop::sample::select(examples()).prop_flat_map(|r| {
        let mut paths = Vec::new();
        object_paths(&r.body, &mut Vec::new(), &mut paths);
        (Just(r), prop::sample::select(paths))
    })
}

fn refused(request: &Request, body: &[u8]) -> ErrorBody {
    match parse(request, body) {
        Ok(()) => panic!(
            "{} accepted {}",
            request.name,
            String::from_utf8_lossy(body)
        ),
        Err(e) => e,
    }
}

#[test]
fn every_example_is_a_valid_request() {
    for r in examples() {
        let body = serde_json::to_vec(&r.body).unwrap();
        assert!(
            parse(&r, &body).is_ok(),
            "{} {}: {:?}",
            r.name,
            r.body,
            parse(&r, &body)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn no_request_with_an_array_in_place_of_an_object_is_accepted(
        (request, path) in request_and_object(),
        how in how(),
    ) {
        let mut body = request.body.clone();
        let target = at(&mut body, &path);
        *target = as_array(target, &how);
        let bytes = serde_json::to_vec(&body).unwrap();
        let e = refused(&request, &bytes);
        prop_assert_eq!(e.code, ErrorCode::MalformedRequest, "{}", e.message);
        prop_assert!(
            e.message.contains("array") || e.message.contains("sequence") || e.message.contains("JSON object"),
            "{}", e.message
        );
        if let Some(field) = field_named(&path) {
            prop_assert!(e.message.contains(field), "{} does not name `{}`", e.message, field);
        }
    }

    #[test]
    fn no_request_with_a_key_written_twice_is_accepted(
        (request, path) in request_and_object(),
        dup in 0usize..16,
        same in any::<bool>(),
    ) {
        let node = at(&mut request.body.clone(), &path).clone();
        let map = node.as_object().unwrap();
        prop_assume!(!map.is_empty());
        let (key, value) = map.iter().nth(dup % map.len()).unwrap();
        let again = if same { value.clone() } else { json!("other") };
        let text = with_duplicate(&request.body, &path, dup, &again);
        let e = refused(&request, text.as_bytes());
        prop_assert_eq!(e.code, ErrorCode::MalformedRequest, "{}", e.message);
        prop_assert!(e.message.contains(key.as_str()), "{} does not name `{}`", e.message, key);
    }
}

#[test]
fn the_issues_examples_are_refused() {
    let all = examples();
    let find = |name: &str| all.iter().find(|r| r.name == name).unwrap().clone();
    let cases: &[(&str, &str)] = &[
        (
            "add_followers",
            r#"{"command_id": "0192f0a0-0000-7000-8000-00000000000a", "actor": {"kind": "system"},
                "record": ["contact", "c1"], "users": ["bob"]}"#,
        ),
        (
            "add_followers",
            r#"{"command_id": "0192f0a0-0000-7000-8000-00000000000a", "actor": ["user", "ann"],
                "record": {"kind": "contact", "id": "c1"}, "users": ["bob"]}"#,
        ),
        (
            "add_followers",
            r#"{"command_id": "0192f0a0-0000-7000-8000-00000000000a", "actor": ["system"],
                "record": {"kind": "contact", "id": "c1"}, "users": ["bob"]}"#,
        ),
        (
            "open_account",
            r#"{"command_id": "0192f0a0-0000-7000-8000-00000000000a", "actor": {"kind": "system"},
                "name": "Acme", "settings": [true]}"#,
        ),
        (
            "open_account",
            r#"{"command_id": "0192f0a0-0000-7000-8000-00000000000a",
                "command_id": "0192f0a0-0000-7000-8000-00000000000c",
                "actor": {"kind": "system"}, "name": "Acme"}"#,
        ),
        (
            "create_contact",
            r#"{"command_id": "0192f0a0-0000-7000-8000-00000000000a", "actor": {"kind": "system"},
                "contact": "d2", "contact": "d3"}"#,
        ),
        (
            "open_account",
            r#"{"command_id": "00000000-0000-0000-0000-000000000000", "actor": {"kind": "system"},
                "name": "Acme"}"#,
        ),
        (
            "open_account",
            r#"{"command_id": "0192f0a0-0000-7000-8000-00000000000a", "actor": {"kind": "system"},
                "name": "Ac\u0000me"}"#,
        ),
        (
            "register_member",
            r#"{"command_id": "0192f0a0-0000-7000-8000-00000000000a", "actor": {"kind": "system"},
                "user": "bob", "name": "Bob", "email": "bob@example.com\n", "role": "user",
                "data_scope": "all"}"#,
        ),
        // 17.4: an `until` for a user the add does not name, one that is no time, one named
        // twice; `change_follower_until` without `until` (required, so never cleared by
        // mistake) or with a field it does not know.
        (
            "add_followers",
            r#"{"command_id": "0192f0a0-0000-7000-8000-00000000000a", "actor": {"kind": "system"},
                "record": {"kind": "contact", "id": "c1"}, "users": ["bob"],
                "until": {"cid": "2099-01-01T00:00:00Z"}}"#,
        ),
        (
            "add_followers",
            r#"{"command_id": "0192f0a0-0000-7000-8000-00000000000a", "actor": {"kind": "system"},
                "record": {"kind": "contact", "id": "c1"}, "users": ["bob"],
                "until": {"bob": "tomorrow"}}"#,
        ),
        (
            "add_followers",
            r#"{"command_id": "0192f0a0-0000-7000-8000-00000000000a", "actor": {"kind": "system"},
                "record": {"kind": "contact", "id": "c1"}, "users": ["bob"],
                "until": {"bob": "2099-01-01T00:00:00Z", "bob": "2099-02-01T00:00:00Z"}}"#,
        ),
        (
            "change_follower_until",
            r#"{"command_id": "0192f0a0-0000-7000-8000-00000000000a", "actor": {"kind": "system"},
                "record": {"kind": "contact", "id": "c1"}, "user": "bob"}"#,
        ),
        (
            "change_follower_until",
            r#"{"command_id": "0192f0a0-0000-7000-8000-00000000000a", "actor": {"kind": "system"},
                "record": {"kind": "contact", "id": "c1"}, "user": "bob", "until": null,
                "users": ["bob"]}"#,
        ),
        (
            "check_access",
            r#"["ann", "view", {"kind": "contact", "id": "c1"}]"#,
        ),
        ("check_access_batch", r#"[[]]"#),
        (
            "check_access_batch",
            r#"{"checks": [["ann", "view", {"kind": "contact", "id": "c1"}]]}"#,
        ),
    ];
    for (name, body) in cases {
        let e = refused(&find(name), body.as_bytes());
        assert_eq!(
            e.code,
            ErrorCode::MalformedRequest,
            "{name} {body}: {}",
            e.message
        );
    }
}

/// A query written back as JSON ([`Query::to_body`], what an instance sends when it passes a
/// query on to the instances of another partition) reads back as the same query, for a valid
/// request of every query.
#[test]
fn a_query_written_back_reads_as_the_same_query() {
    let contact = json!({"kind": "contact", "id": "c1"});
    let later = [
        query(
            "who_can_access",
            json!({"record": contact, "action": "edit", "after": "bob", "limit": 5,
                   "min_position": 3, "at_position": 2}),
        ),
        query(
            "accessible_records",
            json!({"user": "bob", "action": "view", "after": contact, "limit": 5,
                   "at_time": "2026-01-01T00:00:00Z"}),
        ),
        query(
            "changes",
            json!({"after": 4, "record": contact, "user": "bob", "limit": 3, "wait_ms": 10,
                   "min_position": 4}),
        ),
        query(
            "record_history",
            json!({"record": contact, "after": 1, "limit": 2}),
        ),
        query(
            "who_can_access",
            json!({"record": contact, "action": "view"}),
        ),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for request in examples().into_iter().chain(later).filter(|r| !r.command) {
        let body = request.body.to_string();
        let query = Query::parse(request.name, body.as_bytes()).expect("a valid example");
        let again = Query::parse(query.name(), &query.to_body());
        assert_eq!(again, Ok(query), "{}", request.name);
        seen.insert(request.name);
    }
    let every: std::collections::BTreeSet<&str> = Query::NAMES.iter().copied().collect();
    assert_eq!(seen, every, "an example of every query");
}

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: requests are strict at every depth (R24, docs/protocol.md §1.2). Each request a
//! lenient reader would take some other way is refused with `malformed_request`, over NATS and
//! HTTP, naming the field, and appends nothing to the history.
//!
//! The refused requests are raw bytes on purpose: the typed client cannot write them. The
//! setup and the valid requests go through the typed client.

use followers_shared::access::Action;
use followers_shared::error::ErrorCode;
use followers_shared::store::EventStore;
use followers_shared::store::Position;
use followers_shared::wire::QueryReply;
use followers_tests::stack::{
    TEAM, contact_ref, history, open_team, start_command_service, start_projection_service,
};
use followers_tests::typed::{NONE, account, by, new_contact, uid};
use followers_tests::{Followers, NatsServer};
use serde_json::Value;

const ID: &str = "0192f0a0-0000-7000-8000-0000000000aa";

/// Command bodies that must be refused, each with the field its error must name.
fn bad_commands() -> Vec<(&'static str, String, &'static str)> {
    let id = ID;
    vec![
        (
            "add_followers",
            format!(
                r#"{{"command_id": "{id}", "actor": {{"kind": "user", "user": "ann"}},
                    "record": ["contact", "c1"], "users": ["bob"]}}"#
            ),
            "record",
        ),
        (
            "add_followers",
            format!(
                r#"{{"command_id": "{id}", "actor": ["user", "ann"],
                    "record": {{"kind": "contact", "id": "c1"}}, "users": ["bob"]}}"#
            ),
            "actor",
        ),
        (
            "add_followers",
            format!(
                r#"{{"command_id": "{id}", "actor": ["system"],
                    "record": {{"kind": "contact", "id": "c1"}}, "users": ["bob"]}}"#
            ),
            "actor",
        ),
        (
            "change_settings",
            format!(
                r#"{{"command_id": "{id}", "actor": {{"kind": "system"}}, "settings": [true]}}"#
            ),
            "settings",
        ),
        (
            "open_account",
            format!(
                r#"{{"command_id": "{id}", "actor": {{"kind": "system"}}, "name": "Globex",
                    "settings": [true]}}"#
            ),
            "settings",
        ),
        (
            "create_contact",
            format!(
                r#"{{"command_id": "{id}", "command_id": "0192f0a0-0000-7000-8000-0000000000ab",
                    "actor": {{"kind": "system"}}, "contact": "d1"}}"#
            ),
            "command_id",
        ),
        (
            "create_contact",
            format!(
                r#"{{"command_id": "{id}", "actor": {{"kind": "system"}},
                    "contact": "d2", "contact": "d3"}}"#
            ),
            "contact",
        ),
        (
            "create_contact",
            r#"{"command_id": "00000000-0000-0000-0000-000000000000", "actor": {"kind": "system"},
                "contact": "d4"}"#
                .to_owned(),
            "command_id",
        ),
        // A dry run is asked for with a JSON boolean only: read any other way, the request would
        // be carried out (or not) against its sender's intent.
        (
            "create_contact",
            format!(
                r#"{{"command_id": "{id}", "actor": {{"kind": "system"}}, "contact": "d5",
                    "dry_run": "false"}}"#
            ),
            "dry_run",
        ),
        (
            "create_contact",
            format!(
                r#"{{"command_id": "{id}", "actor": {{"kind": "system"}}, "contact": "d5",
                    "dry_run": 0}}"#
            ),
            "dry_run",
        ),
        (
            "create_contact",
            format!(
                r#"{{"command_id": "{id}", "actor": {{"kind": "system"}}, "contact": "d5",
                    "dry_run": null}}"#
            ),
            "dry_run",
        ),
        (
            "create_contact",
            format!(
                r#"{{"command_id": "{id}", "actor": {{"kind": "system"}}, "contact": "d5",
                    "dry_run": true, "dry_run": false}}"#
            ),
            "dry_run",
        ),
        // 17.4: an `until` map given as pairs, or naming a user twice, would be read as some
        // other follower's time, or the last one.
        (
            "add_followers",
            format!(
                r#"{{"command_id": "{id}", "actor": {{"kind": "system"}},
                    "record": {{"kind": "contact", "id": "c1"}}, "users": ["bob"],
                    "until": [["bob", "2099-01-01T00:00:00Z"]]}}"#
            ),
            "until",
        ),
        (
            "add_followers",
            format!(
                r#"{{"command_id": "{id}", "actor": {{"kind": "system"}},
                    "record": {{"kind": "contact", "id": "c1"}}, "users": ["bob"],
                    "until": {{"bob": "2099-01-01T00:00:00Z", "bob": "2098-01-01T00:00:00Z"}}}}"#
            ),
            "until",
        ),
        (
            "change_follower_until",
            format!(
                r#"{{"command_id": "{id}", "actor": {{"kind": "system"}},
                    "record": {{"kind": "contact", "id": "c1"}}, "user": "bob"}}"#
            ),
            "until",
        ),
        (
            "register_member",
            format!(
                r#"{{"command_id": "{id}", "actor": {{"kind": "system"}}, "user": "zed",
                    "name": "Z\u0000ed", "email": "zed@example.com", "role": "user",
                    "data_scope": "all"}}"#
            ),
            "name",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r24_lenient_command_requests_are_refused_over_nats_and_append_nothing() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    open_team(&acme, TEAM).await;
    let c1 = new_contact("c1", None, NONE);
    acme.command(by("ann"), c1).await.unwrap();
    let f = Followers::new(server.client().await, "acme");
    let store = history(&server).await;
    let before = store.head().await.unwrap();

    for (command, body, field) in bad_commands() {
        let r = f.raw(command, body.clone().into_bytes()).await;
        let e = r
            .error
            .as_ref()
            .unwrap_or_else(|| panic!("{body} accepted: {r:?}"));
        assert_eq!(e.code, ErrorCode::MalformedRequest, "{body}: {e:?}");
        assert!(
            e.message.contains(field),
            "{body}: `{}` does not name {field}",
            e.message
        );
    }
    assert_eq!(store.head().await.unwrap(), before, "nothing was appended");
    service.stop().await;
}

/// Query bodies that must be refused, each with the field its error must name ("" for the
/// request itself).
fn bad_queries() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        (
            "check_access",
            r#"["ann", "view", {"kind": "contact", "id": "c1"}]"#,
            "",
        ),
        (
            "check_access",
            r#"{"user": "ann", "action": "view", "record": ["contact", "c1"]}"#,
            "record",
        ),
        (
            "check_access",
            r#"{"user": "ann", "user": "bob", "action": "view",
                "record": {"kind": "contact", "id": "c1"}}"#,
            "user",
        ),
        ("check_access_batch", r#"[[]]"#, ""),
        (
            "check_access_batch",
            r#"{"checks": [["ann", "view", {"kind": "contact", "id": "c1"}]]}"#,
            "checks[0]",
        ),
        (
            "followers",
            r#"{"record": {"kind": "contact", "id": "c1", "id": "c2"}}"#,
            "id",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r24_lenient_queries_are_refused_over_nats_and_http() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    open_team(&acme, TEAM).await;
    let c1 = new_contact("c1", None, NONE);
    let at: Position = acme.command(by("ann"), c1).await.unwrap().position();
    // The same service answers a valid check, so the refusals below are the policy's.
    let (ann, c1) = (uid("ann"), contact_ref("c1"));
    let good = acme
        .at_least(at)
        .check_access(&ann, Action::View, &c1)
        .await;
    good.unwrap();
    let f = Followers::new(server.client().await, "acme");

    let http = reqwest::Client::new();
    let base = format!("http://{}/v1/accounts/acme", projection.http_addr);
    for (query, body, field) in bad_queries() {
        let subject = format!("followers.query.acme.{query}");
        let msg = f
            .client
            .request(subject, body.as_bytes().to_vec().into())
            .await
            .unwrap();
        let reply: QueryReply<Value> = serde_json::from_slice(&msg.payload).unwrap();
        let e = reply
            .error
            .unwrap_or_else(|| panic!("{body} accepted over NATS"));
        assert_eq!(e.code, ErrorCode::MalformedRequest, "{body}: {e:?}");
        assert!(
            e.message.contains(field),
            "{body}: `{}` does not name {field}",
            e.message
        );
    }
    // Over HTTP, the batch route takes the body as it is.
    for body in [
        r#"[[]]"#,
        r#"{"checks": [["ann", "view", {"kind": "contact", "id": "c1"}]]}"#,
        r#"{"checks": [], "checks": []}"#,
    ] {
        let r = http
            .post(format!("{base}/access/batch"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let reply: QueryReply<Value> = r.json().await.unwrap();
        assert_eq!(
            reply.error.unwrap().code,
            ErrorCode::MalformedRequest,
            "{body}"
        );
    }
    // A query parameter given twice is a repeated key too.
    let r = http
        .get(format!(
            "{base}/access?user=ann&user=bob&action=view&kind=contact&id=c1"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let reply: QueryReply<Value> = r.json().await.unwrap();
    let e = reply.error.unwrap();
    assert_eq!(e.code, ErrorCode::MalformedRequest);
    assert!(e.message.contains("`user`"), "{}", e.message);
    // The examples of docs/protocol.md §6.3: a bad parameter is refused in the words of a NATS
    // body with the same fields.
    for (path, message) in [
        (
            "access?user=dee&action=view",
            "invalid `check_access` query: missing field `record`",
        ),
        (
            "access?user=dee&action=view&kind=contact&id=c1&extra=1",
            "invalid `check_access` query: `extra`: unknown field `extra`, expected one of `user`, `action`, `record`, `hint`, `min_position`, `at_position`, `at_time`",
        ),
        (
            "records/task/t1/followers",
            "invalid `followers` query: `record.kind`: unknown variant `task`, expected `contact` or `opportunity`",
        ),
    ] {
        let r = http.get(format!("{base}/{path}")).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let reply: QueryReply<Value> = r.json().await.unwrap();
        assert_eq!(reply.error.unwrap().message, message, "{path}");
    }
    projection.stop().await;
    commands.stop().await;
}

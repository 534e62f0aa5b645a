#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: a projection and a command service know which history they serve (R23). A
//! snapshot is used only for the history it came from, unedited; a history deleted and created
//! again under running services is rebuilt from, never mixed into the old state.

use std::path::Path;
use std::time::Duration;

use followers_shared::error::ErrorCode;
use followers_shared::store::Position;
use followers_shared::wire::{AccessAnswer, QueryReply};
use followers_tests::client::{contact, system, user};
use followers_tests::stack::{
    TEAM, history, ok, open_account, start_command_service, start_projection_service,
};
use followers_tests::{Followers, NatsServer, eventually};
use serde_json::{Value, json};

/// Opens `account` with the team and `n` contacts; returns the last position.
async fn account_with_contacts(f: &Followers, n: usize) -> Position {
    open_account(f, TEAM).await;
    let mut at = Position(0);
    for i in 0..n {
        at = ok(
            f,
            "create_contact",
            system(),
            json!({"contact": format!("c{i}"), "owner": "bob"}),
        )
        .await
        .position
        .unwrap();
    }
    at
}

/// Runs a projection with a snapshot at `path` until it has applied `at`, then stops it (which
/// writes the snapshot).
async fn write_snapshot(server: &NatsServer, path: &Path, at: Position) {
    let projection =
        start_projection_service(server, &["--snapshot-path", path.to_str().unwrap()]).await;
    projection
        .model
        .wait_for(at, Duration::from_secs(10))
        .await
        .unwrap();
    projection.stop().await;
    assert!(path.exists());
}

async fn is_admin(f: &Followers, who: &str, at: Position) -> bool {
    let r: QueryReply<AccessAnswer> = f
        .query(
            "check_access",
            json!({"user": who, "action": "change_owner", "record": contact("c0"),
                   "min_position": at.0}),
        )
        .await;
    assert!(r.ok, "{r:?}");
    r.answer.unwrap().reason == followers_shared::access::Reason::Admin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_another_history_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("model.json");

    // History A: account acme.
    let a = NatsServer::start();
    let commands = start_command_service(&a, &[]).await;
    let at = account_with_contacts(&Followers::new(a.client().await, "acme"), 2).await;
    write_snapshot(&a, &snap, at).await;
    commands.stop().await;

    // History B, at least as long, holds globex only.
    let b = NatsServer::start();
    let commands = start_command_service(&b, &[]).await;
    let globex = Followers::new(b.client().await, "globex");
    let at_b = account_with_contacts(&globex, 4).await;
    assert!(at_b >= at);
    let projection =
        start_projection_service(&b, &["--snapshot-path", snap.to_str().unwrap()]).await;
    let r: QueryReply<Value> = globex
        .for_account("acme")
        .query("account", json!({"min_position": at_b.0}))
        .await;
    assert_eq!(
        r.error.map(|e| e.code),
        Some(ErrorCode::UnknownAccount),
        "acme exists only in the other history"
    );
    assert!(
        projection
            .model
            .read(|m| m.account(&"acme".parse().unwrap()).is_none())
    );
    let r: QueryReply<Value> = globex
        .query("account", json!({"min_position": at_b.0}))
        .await;
    assert!(r.ok, "{r:?}");
    projection.stop().await;
    commands.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_snapshot_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("model.json");
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let f = Followers::new(server.client().await, "acme");
    let at = account_with_contacts(&f, 1).await;
    write_snapshot(&server, &snap, at).await;

    // Someone makes bob an admin in the file, leaving everything else as it was.
    let text = std::fs::read_to_string(&snap).unwrap();
    let mut edited: Value = serde_json::from_str(&text).unwrap();
    let bob = &mut edited["accounts"][0]["state"]["members"]["bob"];
    assert_eq!(bob["role"], json!("user"));
    bob["role"] = json!("admin");
    std::fs::write(&snap, serde_json::to_vec(&edited).unwrap()).unwrap();

    let projection =
        start_projection_service(&server, &["--snapshot-path", snap.to_str().unwrap()]).await;
    assert!(is_admin(&f, "ann", at).await);
    assert!(!is_admin(&f, "bob", at).await, "the edit is not served");
    projection.stop().await;
    commands.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_without_a_snapshot_writes_one_once_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("model.json");
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    account_with_contacts(&Followers::new(server.client().await, "acme"), 1).await;
    commands.stop().await;
    // No commit comes after the start: the snapshot is written anyway.
    let projection = start_projection_service(
        &server,
        &[
            "--snapshot-path",
            snap.to_str().unwrap(),
            "--snapshot-every-secs",
            "3600",
        ],
    )
    .await;
    eventually("a snapshot file", || async { snap.exists() }).await;
    projection.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_replaced_under_running_services_is_rebuilt_not_mixed() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &[]).await;
    let f = Followers::new(server.client().await, "acme");
    let old = account_with_contacts(&f, 3).await;
    projection
        .model
        .wait_for(old, Duration::from_secs(10))
        .await
        .unwrap();

    // The stream is deleted and created again, empty.
    let js = async_nats::jetstream::new(server.client().await);
    js.delete_stream("FOLLOWERS").await.unwrap();
    history(&server).await;

    // The command service notices: acme can be opened again in the new history.
    eventually("acme opened in the new history", || async {
        f.send("open_account", system(), json!({"name": "Acme again"}))
            .await
            .ok
    })
    .await;
    let r = ok(
        &f,
        "register_member",
        system(),
        json!({"user": "zoe", "name": "Zoe", "email": "zoe@example.com",
               "role": "admin", "data_scope": "all"}),
    )
    .await;
    let new = r.position.unwrap();
    assert!(new < old, "the new history is shorter: {new:?} vs {old:?}");

    // The projection notices within a second (its check interval) and then answers from the
    // new history only: nothing of the old one is mixed in.
    let account = || async {
        let r: QueryReply<Value> = f.query("account", json!({"min_position": new.0})).await;
        r.answer
    };
    eventually("the projection serves the new history", || async {
        account()
            .await
            .is_some_and(|a| a["name"] == json!("Acme again"))
    })
    .await;
    let answer = account().await.unwrap();
    let members: Vec<&str> = answer["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"].as_str().unwrap())
        .collect();
    assert_eq!(members, ["zoe"]);
    let r: QueryReply<Value> = f
        .query(
            "followers",
            json!({"record": contact("c0"), "min_position": new.0}),
        )
        .await;
    assert_eq!(r.error.map(|e| e.code), Some(ErrorCode::UnknownRecord));
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("http://{}/ready", projection.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert!(projection.model.is_current());

    // And commands decide against the new history.
    let r = f
        .send("create_contact", user("bob"), json!({"contact": "c9"}))
        .await;
    assert!(!r.ok, "bob is no member of the new acme: {r:?}");
    projection.stop().await;
    commands.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_this_history_is_used_and_only_the_rest_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("model.json");
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let f = Followers::new(server.client().await, "acme");
    let at = account_with_contacts(&f, 3).await;
    write_snapshot(&server, &snap, at).await;
    let later = ok(&f, "create_contact", system(), json!({"contact": "late"}))
        .await
        .position
        .unwrap();

    let projection =
        start_projection_service(&server, &["--snapshot-path", snap.to_str().unwrap()]).await;
    projection
        .model
        .wait_for(later, Duration::from_secs(10))
        .await
        .unwrap();
    let (commits_applied, _, _) = projection.model.counts();
    assert_eq!(
        commits_applied,
        later.0 - at.0,
        "only the commits after the snapshot were replayed"
    );
    projection.stop().await;
    commands.stop().await;
}

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: a projection and a command service know which history they serve (R23). A
//! snapshot is used only for the history it came from, unedited; a history deleted and created
//! again under running services is rebuilt from, never mixed into the old state.

use std::path::Path;
use std::time::Duration;

use followers_client::{Account, system};
use followers_shared::access::{Action, Reason};
use followers_shared::bounded::Text;
use followers_shared::command::OpenAccount;
use followers_shared::error::ErrorCode;
use followers_shared::model::Role;
use followers_shared::snapshot;
use followers_shared::store::Position;
use followers_shared::wire::{AccountAnswer, AccountQuery, FollowersQuery};
use followers_tests::stack::{
    TEAM, contact_ref, history, open_team, start_command_service, start_projection_service,
};
use followers_tests::typed::{NONE, account, by, code, member, new_contact, uid};
use followers_tests::{NatsServer, eventually};

/// Opens `account` with the team and `n` contacts; returns the last position.
async fn account_with_contacts(f: &Account, n: usize) -> Position {
    open_team(f, TEAM).await;
    let mut at = Position(0);
    for i in 0..n {
        let contact = new_contact(&format!("c{i}"), Some("bob"), NONE);
        at = f.command(system(), contact).await.unwrap().position();
    }
    at
}

/// The `account` query from a model at `at` or later.
async fn account_query(
    f: &Account,
    at: Position,
) -> Result<AccountAnswer, followers_client::Error> {
    let answer = f.at_least(at).query(AccountQuery::default()).await;
    answer.map(|a| a.into_inner())
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

async fn is_admin(f: &Account, who: &str, at: Position) -> bool {
    let (f, c0, who) = (f.at_least(at), contact_ref("c0"), uid(who));
    let access = f.check_access(&who, Action::ChangeOwner, &c0).await;
    access.unwrap().reason == Reason::Admin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_another_history_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("model.snapshot");

    // History A: account acme.
    let a = NatsServer::start();
    let commands = start_command_service(&a, &[]).await;
    let at = account_with_contacts(&account(&a, "acme").await, 2).await;
    write_snapshot(&a, &snap, at).await;
    commands.stop().await;

    // History B, at least as long, holds globex only.
    let b = NatsServer::start();
    let commands = start_command_service(&b, &[]).await;
    let globex = account(&b, "globex").await;
    let at_b = account_with_contacts(&globex, 4).await;
    assert!(at_b >= at);
    let projection =
        start_projection_service(&b, &["--snapshot-path", snap.to_str().unwrap()]).await;
    let acme = account(&b, "acme").await;
    assert_eq!(
        code(account_query(&acme, at_b).await),
        ErrorCode::UnknownAccount,
        "acme exists only in the other history"
    );
    assert!(
        projection
            .model
            .read(|m| m.account(&"acme".parse().unwrap()).is_none())
    );
    account_query(&globex, at_b).await.unwrap();
    projection.stop().await;
    commands.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_snapshot_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("model.snapshot");
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let f = account(&server, "acme").await;
    let at = account_with_contacts(&f, 1).await;
    write_snapshot(&server, &snap, at).await;

    // Someone makes bob an admin in the file, leaving everything else as it was.
    // Written anew with the edit, under the old digest, as someone without the program would.
    let bytes = std::fs::read(&snap).unwrap();
    let mut edited = snapshot::decode(&bytes).unwrap();
    let bob = edited.accounts[0]
        .state
        .members
        .get_mut(&uid("bob"))
        .unwrap();
    assert_eq!(bob.role, Role::User);
    bob.role = Role::Admin;
    let mut written = snapshot::encode(&edited).unwrap();
    written[snapshot::DIGEST_RANGE].copy_from_slice(&bytes[snapshot::DIGEST_RANGE]);
    std::fs::write(&snap, written).unwrap();

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
    let snap = dir.path().join("model.snapshot");
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    account_with_contacts(&account(&server, "acme").await, 1).await;
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
    let f = account(&server, "acme").await;
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
    let again = || OpenAccount {
        name: Text::new("Acme again").unwrap(),
        settings: Default::default(),
    };
    eventually("acme opened in the new history", || async {
        f.command(system(), again()).await.is_ok()
    })
    .await;
    let zoe = f.command(system(), member("zoe", "admin", "all")).await;
    let new = zoe.unwrap().position();
    assert!(new < old, "the new history is shorter: {new:?} vs {old:?}");

    // The projection notices within a second (its check interval) and then answers from the
    // new history only: nothing of the old one is mixed in.
    eventually("the projection serves the new history", || async {
        account_query(&f, new)
            .await
            .is_ok_and(|a| a.name == "Acme again")
    })
    .await;
    let answer = account_query(&f, new).await.unwrap();
    let members: Vec<&str> = answer.members.iter().map(|m| m.user.as_str()).collect();
    assert_eq!(members, ["zoe"]);
    let c0 = FollowersQuery {
        record: contact_ref("c0"),
        min_position: Some(new),
        at_position: None,
        at_time: None,
    };
    assert_eq!(code(f.query(c0).await), ErrorCode::UnknownRecord);
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("http://{}/ready", projection.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert!(projection.model.is_current());

    // And commands decide against the new history.
    let r = f.command(by("bob"), new_contact("c9", None, NONE)).await;
    assert!(r.is_err(), "bob is no member of the new acme: {r:?}");
    projection.stop().await;
    commands.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_this_history_is_used_and_only_the_rest_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("model.snapshot");
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let f = account(&server, "acme").await;
    let at = account_with_contacts(&f, 3).await;
    write_snapshot(&server, &snap, at).await;
    let late = new_contact("late", None, NONE);
    let later = f.command(system(), late).await.unwrap().position();

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

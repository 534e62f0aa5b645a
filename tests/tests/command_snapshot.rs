#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: the command service starts from its snapshot (issue 14): its records, chain
//! values and stored commands, then only the commits after it. Exactly-once holds across the
//! restart (R24): a retry of a command stored before the snapshot, and of one stored after it,
//! is answered as a retry; and the model is the one a full replay builds. A snapshot that does
//! not fit is ignored and the whole history replayed.

use std::path::Path;
use std::time::Duration;

use followers_client::{Account, Reply, system};
use followers_shared::ids::CommandId;
use followers_shared::store::EventStore;
use followers_shared::wire::{CommandReply, Outcome};
use followers_store::LiveModel;
use followers_tests::NatsServer;
use followers_tests::stack::{TEAM, history, open_team, start_command_service};
use followers_tests::typed::{NONE, account, new_contact};

/// The reply as the wire had it, without `replayed`: what a retry must repeat.
fn first_reply(r: &Reply) -> CommandReply {
    CommandReply {
        replayed: false,
        ..r.clone().into_inner()
    }
}

/// Creates contact `name` with the command id `id`.
async fn create(acme: &Account, name: &str, id: CommandId) -> Reply {
    let contact = new_contact(name, Some("ann"), NONE);
    acme.command(system(), contact)
        .command_id(id)
        .await
        .unwrap()
}

/// A command service keeping its snapshot at `path` (none written but at shutdown), with a
/// dedup window of 1 s, so that after it only the service's own memory recognises a retry.
fn flags(path: &Path) -> [&str; 6] {
    let path = path.to_str().unwrap();
    [
        "--snapshot-path",
        path,
        "--snapshot-every-secs",
        "3600",
        "--duplicate-window-secs",
        "1",
    ]
}

/// R24, issue 14: commands, a stop (which writes the snapshot), commands by an instance without
/// the snapshot, then a restart from the snapshot: it applies only the commits after it,
/// answers the retries of commands from before and after it as retries, appending nothing, and
/// holds the model a full replay of the history builds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r24_a_command_service_restarted_from_its_snapshot_recognises_every_retry() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("command.snapshot");
    let server = NatsServer::start();
    let first = start_command_service(&server, &flags(&snap)).await;
    let acme = account(&server, "acme").await;
    open_team(&acme, TEAM).await;
    let (before_id, after_id) = (CommandId::new(), CommandId::new());
    let before = create(&acme, "c1", before_id).await;
    assert_eq!(before.outcome(), Outcome::Applied);
    first.stop().await;
    assert!(snap.exists(), "written on shutdown");
    let at = before.position();

    // Commits after the snapshot, by an instance that keeps none.
    let other = start_command_service(&server, &["--duplicate-window-secs", "1"]).await;
    let after = create(&acme, "c2", after_id).await;
    assert_eq!(after.outcome(), Outcome::Applied);
    other.stop().await;
    let head = history(&server).await.head().await.unwrap();
    assert_eq!(head, after.position());
    // The dedup window (1 s here) passes: only the service's own memory of command ids can
    // recognise the retries now.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let again = start_command_service(&server, &flags(&snap)).await;
    assert_eq!(
        again.model.counts().0,
        head.0 - at.0,
        "only the commits after the snapshot were applied at start"
    );
    for (id, name, first) in [(before_id, "c1", &before), (after_id, "c2", &after)] {
        let retry = create(&acme, name, id).await;
        assert!(retry.replayed(), "{name}: {retry:?}");
        assert_eq!(first_reply(&retry), first_reply(first), "{name}");
    }
    let store = history(&server).await;
    assert_eq!(
        store.head().await.unwrap(),
        head,
        "the retries appended nothing"
    );

    // A new command is decided as new.
    let new = create(&acme, "c3", CommandId::new()).await;
    assert_eq!(new.outcome(), Outcome::Applied);
    assert!(!new.replayed());
    let head = new.position();
    again
        .model
        .wait_for(head, Duration::from_secs(10))
        .await
        .unwrap();
    let restored = again.model.read(Clone::clone);
    let full = LiveModel::new(restored.emptied());
    full.replay_to(&store, head).await.unwrap();
    let full = full.read(Clone::clone);
    assert_eq!(full.position(), head);
    assert!(
        restored == full,
        "the model started from the snapshot is the full replay's"
    );
    assert_eq!(full.command_candidates(acme.id(), &before_id), [at]);
    again.stop().await;
}

/// Issue 14: a damaged snapshot is never trusted: the command service replays the whole
/// history instead, and still recognises a retry (R24).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_command_service_snapshot_is_ignored_and_the_history_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("command.snapshot");
    let server = NatsServer::start();
    let first = start_command_service(&server, &flags(&snap)).await;
    let acme = account(&server, "acme").await;
    open_team(&acme, TEAM).await;
    let id = CommandId::new();
    let before = create(&acme, "c1", id).await;
    first.stop().await;
    let mut bytes = std::fs::read(&snap).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&snap, &bytes).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let again = start_command_service(&server, &flags(&snap)).await;
    let head = history(&server).await.head().await.unwrap();
    assert_eq!(again.model.counts().0, head.0, "the whole history replayed");
    let retry = create(&acme, "c1", id).await;
    assert!(retry.replayed());
    assert_eq!(first_reply(&retry), first_reply(&before));
    assert_eq!(history(&server).await.head().await.unwrap(), head);
    again.stop().await;
}

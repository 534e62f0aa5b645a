#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Group commit (issue 14) against a real nats-server with `sync_interval: always`: commits
//! waiting together are published as one atomic batch, and each append still gets its own
//! answer. Rule numbers refer to docs/rules.md (R24: a command is applied exactly once).

use std::collections::HashSet;

use followers_shared::store::{Commit, EventStore, Expected, Position, StoreError, StreamId};
use followers_store::jetstream::GroupCommit;
use followers_store::{JetStreamConfig, JetStreamStore, StreamSetup};
use followers_tests::NatsServer;
use followers_tests::contract::{commit, contact_stream, fresh_account};

fn group_commit() -> JetStreamConfig {
    JetStreamConfig {
        group_commit: Some(GroupCommit::new(2)),
        ..JetStreamConfig::default()
    }
}

async fn store(server: &NatsServer, config: JetStreamConfig) -> JetStreamStore {
    JetStreamStore::connect(server.client().await, config)
        .await
        .unwrap()
}

/// Whether the message at `position` was stored as part of an atomic batch.
async fn in_a_batch(server: &NatsServer, position: Position) -> bool {
    let js = async_nats::jetstream::new(server.client().await);
    let stream = js.get_stream("FOLLOWERS").await.unwrap();
    let message = stream.get_raw_message(position.0).await.unwrap();
    message.headers.get("Nats-Batch-Id").is_some()
}

/// `n` fresh records of one account, each with a first commit.
fn fresh(n: usize) -> Vec<(StreamId, Commit)> {
    let account = fresh_account();
    (0..n)
        .map(|i| (contact_stream(&account, &format!("r{i}")), commit(i)))
        .collect()
}

/// Each commit is stored once, where its append said, on its own record.
async fn assert_stored_once_where_answered(
    store: &JetStreamStore,
    commits: &[(StreamId, Commit)],
    positions: &[Position],
) {
    let distinct: HashSet<_> = positions.iter().collect();
    assert_eq!(distinct.len(), positions.len(), "one position each");
    for ((stream, commit), position) in commits.iter().zip(positions) {
        let stored = store.read_stream(stream).await.unwrap();
        assert_eq!(stored.len(), 1, "stored once: {stream:?}");
        assert_eq!(stored[0].position, *position);
        assert_eq!(&stored[0].commit, commit);
        let at = store.read_at(*position).await.unwrap().unwrap();
        assert_eq!(at.stream, *stream);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_waiting_together_are_stored_as_one_batch_each_once_at_its_answered_position() {
    let server = NatsServer::start();
    let store = store(&server, group_commit()).await;
    let commits = fresh(40);
    let together: Vec<_> = commits
        .iter()
        .map(|(s, c)| (s, Expected::NoStream, c))
        .collect();
    let results = store.append_together(&together).await;
    let appended: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    assert!(appended.iter().all(|a| !a.already_stored));
    // One batch, stored in order at consecutive positions, each knowing the one before.
    for pair in appended.windows(2) {
        assert_eq!(pair[1].position.0, pair[0].position.0 + 1);
        assert_eq!(pair[1].previous, Some(pair[0].position));
    }
    assert!(in_a_batch(&server, appended[0].position).await);
    let positions: Vec<_> = appended.iter().map(|a| a.position).collect();
    assert_stored_once_where_answered(&store, &commits, &positions).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_to_distinct_records_each_land_once_with_their_positions() {
    let server = NatsServer::start();
    let store = store(&server, group_commit()).await;
    let commits = fresh(200);
    let tasks: Vec<_> = commits
        .iter()
        .cloned()
        .map(|(stream, commit)| {
            let store = store.clone();
            tokio::spawn(async move { store.append(&stream, Expected::NoStream, &commit).await })
        })
        .collect();
    let mut positions = Vec::new();
    for task in tasks {
        let appended = task.await.unwrap().unwrap();
        assert!(!appended.already_stored);
        assert_eq!(appended.version.0, appended.position.0);
        positions.push(appended.position);
    }
    assert_stored_once_where_answered(&store, &commits, &positions).await;
}

/// The server refuses a whole batch for one wrong expectation; the committer then publishes
/// the batch's commits one by one, so only the stale one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_expectation_in_a_batch_fails_only_its_own_append() {
    let server = NatsServer::start();
    let store = store(&server, group_commit()).await;
    let account = fresh_account();
    let contested = contact_stream(&account, "contested");
    let first = store
        .append(&contested, Expected::NoStream, &commit(0))
        .await
        .unwrap();
    let commits = fresh(20);
    let stale = commit(99);
    let mut together: Vec<_> = commits
        .iter()
        .map(|(s, c)| (s, Expected::NoStream, c))
        .collect();
    together.insert(7, (&contested, Expected::NoStream, &stale));
    let mut results = store.append_together(&together).await;
    match results.remove(7) {
        Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, Some(first.version)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let positions: Vec<_> = results.into_iter().map(|r| r.unwrap().position).collect();
    assert_stored_once_where_answered(&store, &commits, &positions).await;
    assert_eq!(store.read_stream(&contested).await.unwrap().len(), 1);
}

/// A retried commit (same command id) meets its stored self inside a batch: the server refuses
/// the batch for the duplicate message id, and the retry is answered as already stored, at its
/// first position, while the others are stored (R24).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_commit_inside_a_batch_is_answered_as_already_stored() {
    let server = NatsServer::start();
    let store = store(&server, group_commit()).await;
    let account = fresh_account();
    let retried_stream = contact_stream(&account, "retried");
    let retried = commit(0);
    let first = store
        .append(&retried_stream, Expected::NoStream, &retried)
        .await
        .unwrap();
    let commits = fresh(20);
    let mut together: Vec<_> = commits
        .iter()
        .map(|(s, c)| (s, Expected::NoStream, c))
        .collect();
    together.insert(3, (&retried_stream, Expected::NoStream, &retried));
    let mut results = store.append_together(&together).await;
    let again = results.remove(3).unwrap();
    assert!(again.already_stored);
    assert_eq!(again.position, first.position);
    let positions: Vec<_> = results.into_iter().map(|r| r.unwrap().position).collect();
    assert_stored_once_where_answered(&store, &commits, &positions).await;
    assert_eq!(store.read_stream(&retried_stream).await.unwrap().len(), 1);
}

/// The administrative step with group commit allows atomic batches on an existing stream; a
/// store bound to a stream without them publishes one by one and every append still lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_atomic_batches_is_written_one_by_one_until_managed_to_allow_them() {
    let server = NatsServer::start();
    store(&server, JetStreamConfig::default()).await;
    let allows_atomic = || async {
        let js = async_nats::jetstream::new(server.client().await);
        let mut stream = js.get_stream("FOLLOWERS").await.unwrap();
        stream.info().await.unwrap().config.allow_atomic_publish
    };
    assert!(!allows_atomic().await);

    let bound = JetStreamStore::open(server.client().await, group_commit(), StreamSetup::Bind)
        .await
        .unwrap();
    for _ in 0..2 {
        let commits = fresh(10);
        let together: Vec<_> = commits
            .iter()
            .map(|(s, c)| (s, Expected::NoStream, c))
            .collect();
        let results = bound.append_together(&together).await;
        let positions: Vec<_> = results.into_iter().map(|r| r.unwrap().position).collect();
        assert_stored_once_where_answered(&bound, &commits, &positions).await;
        for p in positions {
            assert!(!in_a_batch(&server, p).await);
        }
    }
    assert!(!allows_atomic().await, "binding never changes the stream");

    let managed = store(&server, group_commit()).await;
    assert!(allows_atomic().await);
    let commits = fresh(10);
    let together: Vec<_> = commits
        .iter()
        .map(|(s, c)| (s, Expected::NoStream, c))
        .collect();
    let results = managed.append_together(&together).await;
    let positions: Vec<_> = results.into_iter().map(|r| r.unwrap().position).collect();
    assert!(in_a_batch(&server, positions[0]).await);
    // Managing without group commit leaves batches allowed: other instances may batch.
    store(&server, JetStreamConfig::default()).await;
    assert!(allows_atomic().await);
}

/// The command service with `--group-commit`: concurrent commands on distinct records are
/// batched, and each is applied once and answered (R24).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_service_batches_concurrent_commands_and_applies_each_once() {
    use followers_client::system;
    use followers_shared::wire::Outcome;
    use followers_tests::stack::{contact_ref, history, open_team, start_command_service};
    use followers_tests::typed::{NONE, account, new_contact};

    let server = NatsServer::start();
    let service = start_command_service(&server, &["--group-commit", "2"]).await;
    let acme = account(&server, "acme").await;
    open_team(&acme, &[("ann", "admin", "all")]).await;
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let create = acme.command(system(), new_contact(&format!("k{i}"), Some("ann"), NONE));
            tokio::spawn(create.send())
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().outcome(), Outcome::Applied);
    }
    let store = history(&server).await;
    for i in 0..60 {
        let stream = StreamId::record("acme".parse().unwrap(), contact_ref(&format!("k{i}")));
        assert_eq!(store.read_stream(&stream).await.unwrap().len(), 1);
    }
    let head = store.head().await.unwrap();
    let mut batched = 0;
    for position in 1..=head.0 {
        if in_a_batch(&server, Position(position)).await {
            batched += 1;
        }
    }
    assert!(
        batched > 0,
        "no commit of 60 concurrent commands was batched"
    );
    service.stop().await;
}

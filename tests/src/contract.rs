//! The contract every event-store backend must pass. Each check uses its own account, so the
//! checks can share one store.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use followers_shared::event::EventBody;
use followers_shared::ids::{AccountId, ContactId, UserId};
use followers_shared::model::RecordRef;
use followers_shared::store::{Commit, EventStore, Expected, Position, StoreError, StreamId};
use futures::StreamExt;

/// A fresh account id, so checks never see each other's streams.
pub fn fresh_account() -> AccountId {
    AccountId::new(format!("acct-{}", uuid::Uuid::new_v4().simple())).unwrap()
}

pub fn contact_stream(account: &AccountId, id: &str) -> StreamId {
    StreamId::record(
        account.clone(),
        RecordRef::Contact(ContactId::new(id).unwrap()),
    )
}

/// A commit with one small event, under a new command id.
pub fn commit(n: usize) -> Commit {
    let user = UserId::new(format!("u{n}")).unwrap();
    Commit::of_system(vec![EventBody::MemberDeactivated { user }])
}

/// Commits of one stream come back in order; versions and positions grow; head is the last.
pub async fn ordering<S: EventStore>(store: &S) {
    let account = fresh_account();
    let (a, b) = (contact_stream(&account, "a"), contact_stream(&account, "b"));
    let mut va = Expected::NoStream;
    let mut vb = Expected::NoStream;
    let mut sent = Vec::new();
    let mut last = Position(0);
    for n in 0..6 {
        let c = commit(n);
        let (stream, expected) = if n % 2 == 0 {
            (&a, &mut va)
        } else {
            (&b, &mut vb)
        };
        let appended = store.append(stream, *expected, &c).await.unwrap();
        assert!(!appended.already_stored);
        assert!(appended.position > last, "positions grow");
        last = appended.position;
        *expected = Expected::At(appended.version);
        if n % 2 == 0 {
            sent.push(c);
        }
    }
    let read = store.read_stream(&a).await.unwrap();
    assert_eq!(
        read.iter().map(|s| s.commit.clone()).collect::<Vec<_>>(),
        sent
    );
    assert!(read.windows(2).all(|w| w[0].version < w[1].version));
    assert!(read.iter().all(|s| s.stream == a));
    assert!(store.head().await.unwrap() >= last);
    let at = store.read_at(read[1].position).await.unwrap().unwrap();
    assert_eq!(at.commit, sent[1]);
}

/// A stale or missing expectation is a conflict that names the actual version.
pub async fn conflicts<S: EventStore>(store: &S) {
    let account = fresh_account();
    let s = contact_stream(&account, "c");
    let first = store
        .append(&s, Expected::NoStream, &commit(1))
        .await
        .unwrap();
    match store.append(&s, Expected::NoStream, &commit(2)).await {
        Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, Some(first.version)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let second = store
        .append(&s, Expected::At(first.version), &commit(3))
        .await
        .unwrap();
    match store
        .append(&s, Expected::At(first.version), &commit(4))
        .await
    {
        Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, Some(second.version)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.read_stream(&s).await.unwrap().len(), 2);
}

/// 50 writers race for one stream: exactly one wins each version, and nothing is lost.
pub async fn concurrent_appends<S: EventStore + Clone>(store: &S) {
    let account = fresh_account();
    let s = Arc::new(contact_stream(&account, "hot"));
    let mut tasks = Vec::new();
    for n in 0..50 {
        let (store, s) = (store.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            let c = commit(n);
            loop {
                let current = store
                    .read_stream(&s)
                    .await
                    .unwrap()
                    .last()
                    .map(|x| x.version);
                let expected = Expected::from_version(current);
                match store.append(&s, expected, &c).await {
                    Ok(a) => return (expected, a.version, c.command_id),
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => panic!("append failed: {e}"),
                }
            }
        }));
    }
    let mut wins = Vec::new();
    for t in tasks {
        wins.push(t.await.unwrap());
    }
    let expectations: HashSet<_> = wins.iter().map(|w| format!("{:?}", w.0)).collect();
    assert_eq!(expectations.len(), 50, "one winner per version");
    let stored = store.read_stream(&s).await.unwrap();
    assert_eq!(stored.len(), 50);
    let ids: HashSet<_> = stored.iter().map(|c| c.commit.command_id).collect();
    assert_eq!(ids, wins.iter().map(|w| w.2).collect());
}

/// Appending a commit that is already stored returns it instead of storing it twice.
pub async fn retry_recognised<S: EventStore>(store: &S) {
    let account = fresh_account();
    let s = contact_stream(&account, "r");
    let c = commit(1);
    let first = store.append(&s, Expected::NoStream, &c).await.unwrap();
    let again = store.append(&s, Expected::NoStream, &c).await.unwrap();
    assert!(again.already_stored);
    assert_eq!(again.position, first.position);
    assert_eq!(store.read_stream(&s).await.unwrap().len(), 1);
}

/// Following from a position yields exactly the later commits, then live ones, in order.
pub async fn follow_from_position<S: EventStore>(store: &S) {
    let account = fresh_account();
    let s = contact_stream(&account, "f");
    let mut expected = Expected::NoStream;
    let mut positions = Vec::new();
    for n in 0..3 {
        let a = store.append(&s, expected, &commit(n)).await.unwrap();
        expected = Expected::At(a.version);
        positions.push(a.position);
    }
    let mut feed = store.follow(positions[0]).await.unwrap();
    let mut mine = Vec::new();
    let live = store.append(&s, expected, &commit(9)).await.unwrap();
    positions.push(live.position);
    while mine.len() < 3 {
        let next = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("follow delivered nothing")
            .expect("follow ended")
            .unwrap();
        if next.stream == s {
            mine.push(next.position);
        }
    }
    assert_eq!(mine, positions[1..].to_vec());
}

/// Reading one account gives exactly its commits after the position, up to the head as of the
/// call, then ends, whatever other accounts write meanwhile.
pub async fn read_one_account<S: EventStore>(store: &S) {
    let (mine, other) = (fresh_account(), fresh_account());
    let mut positions = Vec::new();
    for (n, account) in [&mine, &other, &mine, &mine, &other]
        .into_iter()
        .enumerate()
    {
        let s = contact_stream(account, &format!("r{n}"));
        let appended = store
            .append(&s, Expected::NoStream, &commit(n))
            .await
            .unwrap();
        if *account == mine {
            positions.push(appended.position);
        }
    }
    let read = |after| read_account(store, &mine, after);
    let everything = read(Position(0)).await;
    assert!(everything.iter().all(|c| c.stream.account == mine));
    let got: Vec<Position> = everything.iter().map(|c| c.position).collect();
    assert_eq!(got, positions);
    let later: Vec<Position> = read(positions[0])
        .await
        .iter()
        .map(|c| c.position)
        .collect();
    assert_eq!(later, positions[1..].to_vec());
    assert!(
        read(positions[2]).await.is_empty(),
        "nothing after the last one"
    );
    let s = contact_stream(&other, "after");
    store
        .append(&s, Expected::NoStream, &commit(9))
        .await
        .unwrap();
    assert!(
        read(positions[2]).await.is_empty(),
        "another account's later commit is not mine, and the read does not wait for more"
    );
}

/// Every commit [`EventStore::read_account`] gives, within 10 s.
pub async fn read_account<S: EventStore>(
    store: &S,
    account: &AccountId,
    after: Position,
) -> Vec<followers_shared::store::StoredCommit> {
    let feed = store.read_account(account, after).await.unwrap();
    let all = tokio::time::timeout(Duration::from_secs(10), feed.collect::<Vec<_>>())
        .await
        .expect("reading one account did not end");
    all.into_iter().map(|c| c.unwrap()).collect()
}

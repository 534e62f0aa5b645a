#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: followers until a date (issue 17.4) against a real nats-server.
//!
//! A follower added with an `until` a second ahead is removed by the system, with one
//! `follower_expired` event, while two command-service instances run; one whose `until` falls
//! due while every instance is stopped is removed when one starts again. The follower list
//! shows `until` over NATS and HTTP, and `change_follower_until` moves or clears it.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use followers_client::Account;
use followers_shared::command::{AddFollowers, ChangeFollowerUntil};
use followers_shared::error::ErrorCode;
use followers_shared::event::EventBody;
use followers_shared::model::{Actor, RecordRef};
use followers_shared::store::{EventStore, StreamId};
use followers_shared::wire::{FollowersAnswer, QueryReply};
use followers_tests::stack::{
    TEAM, contact_ref as c, history, open_team, start_command_service, start_projection_service,
};
use followers_tests::typed::{NONE, by, code, new_contact, some_users, uid};
use followers_tests::{NatsServer, eventually};

/// `add_followers` of `users` to `record`, with `until` for some of them.
fn add_until(record: RecordRef, users: &[&str], until: &[(&str, DateTime<Utc>)]) -> AddFollowers {
    AddFollowers {
        record: Some(record),
        users: some_users(users),
        until: until
            .iter()
            .map(|(u, t)| (uid(u), *t))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn change_until(
    record: RecordRef,
    user: &str,
    until: Option<DateTime<Utc>>,
) -> ChangeFollowerUntil {
    ChangeFollowerUntil {
        record,
        user: uid(user),
        until,
    }
}

/// A time `secs` seconds from now, to the millisecond (as a client would write it).
fn in_secs(secs: i64) -> DateTime<Utc> {
    (Utc::now() + chrono::Duration::seconds(secs)).trunc_subsecs(3)
}

/// Waits until the wall clock has passed `t`: the condition itself, bounded by its distance.
async fn wait_past(t: DateTime<Utc>) {
    for _ in 0..100 {
        let left = t - Utc::now();
        if left < chrono::Duration::zero() {
            return;
        }
        tokio::time::sleep(left.to_std().unwrap_or_default() + Duration::from_millis(5)).await;
    }
    panic!("the clock did not pass {t}");
}

/// The followers of `record` and their `until`, as the projection answers now.
async fn untils(acme: &Account, record: &RecordRef) -> Vec<(String, Option<DateTime<Utc>>)> {
    let answer = acme.followers(record).await.unwrap();
    answer
        .followers
        .iter()
        .map(|f| (f.user.as_str().to_owned(), f.until))
        .collect()
}

/// The `follower_expired` events of `user` on `record` in the history.
async fn expiries(server: &NatsServer, record: &RecordRef, user: &str) -> usize {
    let stream = StreamId::record("acme".parse().unwrap(), record.clone());
    let commits = history(server).await.read_stream(&stream).await.unwrap();
    commits
        .iter()
        .flat_map(|c| c.commit.events.iter())
        .filter(|e| {
            matches!(&e.body, EventBody::FollowerExpired { user: u, .. } if u.as_str() == user)
                && e.meta.actor == Actor::System
        })
        .count()
}

async fn follows(acme: &Account, record: &RecordRef, user: &str) -> bool {
    untils(acme, record).await.iter().any(|(u, _)| u == user)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_happens_once_across_two_instances_and_a_restart() {
    let server = NatsServer::start();
    let first = start_command_service(&server, &[]).await;
    let second = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &[]).await;
    let acme = followers_tests::typed::account(&server, "acme").await;
    open_team(&acme, TEAM).await;
    acme.command(by("ann"), new_contact("c1", Some("ann"), NONE))
        .await
        .unwrap();

    // 17.4: bob follows for a second, cid until removed; the list shows bob's `until`.
    let bob_until = in_secs(1);
    let added = acme
        .command(
            by("ann"),
            add_until(c("c1"), &["bob", "cid"], &[("bob", bob_until)]),
        )
        .await
        .unwrap();
    let listed = untils(&acme.after(&added), &c("c1")).await;
    assert_eq!(
        listed,
        vec![
            ("bob".to_owned(), Some(bob_until)),
            ("cid".to_owned(), None)
        ]
    );
    let base = format!("http://{}", projection.http_addr);
    let http: QueryReply<FollowersAnswer> = reqwest::get(format!(
        "{base}/v1/accounts/acme/records/contact/c1/followers?min_position={}",
        added.position().0
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let bob = &http.answer.unwrap().followers[0];
    assert_eq!((bob.user.as_str(), bob.until), ("bob", Some(bob_until)));

    // Both instances see it due; the history has one expiry, by the system.
    eventually("bob expires", || async {
        !follows(&acme, &c("c1"), "bob").await
    })
    .await;
    assert_eq!(expiries(&server, &c("c1"), "bob").await, 1);
    // A later command on the record is decided after both instances had their go at it.
    let later = acme
        .command(
            by("ann"),
            add_until(c("c1"), &["dee"], &[("dee", in_secs(2))]),
        )
        .await
        .unwrap();
    let dee_until = untils(&acme.after(&later), &c("c1")).await[1].1.unwrap();
    assert_eq!(expiries(&server, &c("c1"), "bob").await, 1, "exactly once");

    // Everything stops; dee's `until` passes meanwhile; at start, dee expires, once.
    first.stop().await;
    second.stop().await;
    wait_past(dee_until).await;
    assert!(follows(&acme, &c("c1"), "dee").await, "nobody to expire it");
    assert_eq!(expiries(&server, &c("c1"), "dee").await, 0);
    let restarted = start_command_service(&server, &[]).await;
    eventually("dee expires at start", || async {
        !follows(&acme, &c("c1"), "dee").await
    })
    .await;
    assert_eq!(expiries(&server, &c("c1"), "dee").await, 1);
    assert_eq!(expiries(&server, &c("c1"), "bob").await, 1);
    assert!(follows(&acme, &c("c1"), "cid").await, "cid had no until");
    restarted.stop().await;
    projection.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_follower_until_sets_moves_and_clears_it() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &[]).await;
    let acme = followers_tests::typed::account(&server, "acme").await;
    open_team(&acme, TEAM).await;
    acme.command(by("ann"), new_contact("c1", Some("ann"), NONE))
        .await
        .unwrap();
    acme.command(by("ann"), add_until(c("c1"), &["cid"], &[]))
        .await
        .unwrap();

    // Set far ahead: listed; then moved to a second ahead: it expires then.
    let far = in_secs(3600);
    let set = acme
        .command(by("ann"), change_until(c("c1"), "cid", Some(far)))
        .await
        .unwrap();
    assert_eq!(untils(&acme.after(&set), &c("c1")).await[0].1, Some(far));
    // The same `until` again changes nothing.
    let again = acme
        .command(by("ann"), change_until(c("c1"), "cid", Some(far)))
        .await
        .unwrap();
    assert!(again.events.is_empty());
    // Cleared: follows until removed.
    let cleared = acme
        .command(by("ann"), change_until(c("c1"), "cid", None))
        .await
        .unwrap();
    assert_eq!(untils(&acme.after(&cleared), &c("c1")).await[0].1, None);
    let soon = in_secs(1);
    acme.command(by("ann"), change_until(c("c1"), "cid", Some(soon)))
        .await
        .unwrap();
    eventually("cid expires", || async {
        !follows(&acme, &c("c1"), "cid").await
    })
    .await;
    assert_eq!(expiries(&server, &c("c1"), "cid").await, 1);

    // Refusals, each with its code: a past `until`, a non-follower, an `until` for a user the
    // add does not name.
    let past = Utc::now() - chrono::Duration::seconds(1);
    let r = acme
        .command(by("ann"), add_until(c("c1"), &["bob"], &[("bob", past)]))
        .await;
    assert_eq!(code(r), ErrorCode::UntilPassed);
    let r = acme
        .command(by("ann"), change_until(c("c1"), "cid", Some(far)))
        .await;
    assert_eq!(code(r), ErrorCode::NotFollower);
    let r = acme
        .command(by("ann"), add_until(c("c1"), &["bob"], &[("dee", far)]))
        .await;
    assert_eq!(code(r), ErrorCode::MalformedRequest);
    // A user who may not manage the followers may not change an `until` either (R15).
    acme.command(by("ann"), add_until(c("c1"), &["bob"], &[]))
        .await
        .unwrap();
    let r = acme
        .command(by("dee"), change_until(c("c1"), "bob", Some(far)))
        .await;
    assert_eq!(code(r), ErrorCode::AccessDenied);
    projection.stop().await;
    commands.stop().await;
}

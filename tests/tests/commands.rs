#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: commands over NATS against a real nats-server and the command service.
//! Rule numbers refer to docs/rules.md.

use std::time::Duration;

use followers_shared::error::ErrorCode;
use followers_shared::model::RecordRef;
use followers_shared::record::RecordState;
use followers_shared::store::{EventStore, StreamId};
use followers_shared::wire::{CommandReply, Outcome};
use followers_store::JetStreamStore;
use followers_tests::client::{contact, opportunity, system, user, workflow};
use followers_tests::stack::{history, ok, open_account, start_command_service};
use followers_tests::{Followers, NatsServer, eventually};
use serde_json::json;
use uuid::Uuid;

use followers_tests::stack::TEAM as MEMBERS;

fn code(r: &CommandReply) -> ErrorCode {
    assert!(!r.ok, "expected an error, got {r:?}");
    r.error.as_ref().expect("error body").code
}

async fn record_state(store: &JetStreamStore, account: &str, record: RecordRef) -> RecordState {
    let stream = StreamId::record(account.parse().unwrap(), record);
    store
        .read_stream(&stream)
        .await
        .unwrap()
        .iter()
        .flat_map(|c| c.commit.events.iter())
        .fold(RecordState::default(), followers_shared::record::evolve)
}

use followers_tests::stack::{contact_ref as c, opportunity_ref as o};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_kind_works_over_nats() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let f = Followers::new(server.client().await, "acme");
    open_account(&f, MEMBERS).await;
    let r = ok(
        &f,
        "change_member_role",
        system(),
        json!({"user": "cid", "role": "admin"}),
    )
    .await;
    assert_eq!(r.outcome, Some(Outcome::Applied));
    ok(
        &f,
        "change_member_role",
        user("ann"),
        json!({"user": "cid", "role": "user"}),
    )
    .await;
    ok(
        &f,
        "change_member_data_scope",
        user("ann"),
        json!({"user": "cid", "data_scope": "only_assigned"}),
    )
    .await;
    ok(
        &f,
        "change_member_data_scope",
        user("ann"),
        json!({"user": "cid", "data_scope": "all"}),
    )
    .await;
    ok(&f, "deactivate_member", user("ann"), json!({"user": "dee"})).await;
    ok(&f, "reactivate_member", user("ann"), json!({"user": "dee"})).await;
    ok(
        &f,
        "change_settings",
        user("ann"),
        json!({"allow_different_owners": true}),
    )
    .await;
    let r = ok(
        &f,
        "create_contact",
        user("cid"),
        json!({"contact": "c1", "owner": "bob", "followers": ["dee"]}),
    )
    .await;
    assert_eq!(r.events.len(), 2, "contact_created and followers_added");
    let r = ok(
        &f,
        "create_opportunity",
        user("cid"),
        json!({"opportunity": "o1", "contact": "c1", "followers": ["cid"]}),
    )
    .await;
    assert!(r.position.is_some());
    let r = ok(
        &f,
        "change_owner",
        user("ann"),
        json!({"record": opportunity("o1"), "owner": "cid"}),
    )
    .await;
    assert_eq!(r.outcome, Some(Outcome::Applied));
    let r = ok(
        &f,
        "add_followers",
        user("bob"),
        json!({"record": contact("c1"), "users": ["ann", "dee"]}),
    )
    .await;
    assert_eq!(
        r.added.as_deref().map(|a| a.len()),
        Some(1),
        "R12: ann added"
    );
    assert_eq!(
        r.already_following.as_ref().map(|a| a[0].as_str()),
        Some("dee"),
        "R12"
    );
    let r = ok(
        &f,
        "remove_followers",
        user("bob"),
        json!({"record": contact("c1"), "users": ["ann", "cid"]}),
    )
    .await;
    assert_eq!(r.removed.as_ref().map(|a| a[0].as_str()), Some("ann"));
    assert_eq!(
        r.not_following.as_ref().map(|a| a[0].as_str()),
        Some("cid"),
        "R14"
    );

    let store = history(&server).await;
    let c1 = record_state(&store, "acme", c("c1")).await;
    assert_eq!(c1.owner.as_ref().map(|u| u.as_str()), Some("bob"));
    assert_eq!(
        c1.followers
            .iter()
            .map(|f| f.user.as_str())
            .collect::<Vec<_>>(),
        ["dee"]
    );
    let o1 = record_state(&store, "acme", o("o1")).await;
    assert_eq!(o1.owner.as_ref().map(|u| u.as_str()), Some("cid"));
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_error_has_its_code_and_appends_nothing() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let f = Followers::new(server.client().await, "acme");
    open_account(&f, MEMBERS).await;
    ok(
        &f,
        "create_contact",
        user("ann"),
        json!({"contact": "c1", "owner": "bob"}),
    )
    .await;
    let store = history(&server).await;
    let head = store.head().await.unwrap();

    // R24: malformed, unknown, too large.
    assert_eq!(
        code(&f.raw("add_followers", b"{not json".to_vec()).await),
        ErrorCode::MalformedRequest
    );
    let missing_id = f
        .raw("add_followers", br#"{"actor":{"kind":"system"}}"#.to_vec())
        .await;
    assert_eq!(code(&missing_id), ErrorCode::MalformedRequest);
    let unknown_field = f
        .send(
            "add_followers",
            system(),
            json!({"record": contact("c1"), "users": ["bob"], "colour": "red"}),
        )
        .await;
    assert_eq!(code(&unknown_field), ErrorCode::MalformedRequest);
    assert!(unknown_field.error.unwrap().message.contains("colour"));
    assert!(
        unknown_field.command_id.is_some(),
        "the error echoes the command id"
    );
    let bad_id = f
        .send(
            "add_followers",
            system(),
            json!({"record": contact("c.1"), "users": ["bob"]}),
        )
        .await;
    assert_eq!(code(&bad_id), ErrorCode::MalformedRequest);
    // A name that is no command has no endpoint: NATS answers "no responders" at once.
    assert!(f.finds_no_responder("cmd", "make_coffee").await);
    assert!(f.finds_no_responder("query", "make_coffee").await);
    let huge = json!({"command_id": Uuid::now_v7(), "actor": system(), "record": contact("c1"), "users": ["x".repeat(70_000)]});
    assert_eq!(
        code(
            &f.raw("add_followers", serde_json::to_vec(&huge).unwrap())
                .await
        ),
        ErrorCode::RequestTooLarge
    );

    // Unknown things (R24), existing things.
    let nowhere = f.for_account("nowhere");
    assert_eq!(
        code(
            &nowhere
                .send("create_contact", system(), json!({"contact": "c1"}))
                .await
        ),
        ErrorCode::UnknownAccount
    );
    assert_eq!(
        code(
            &f.send("open_account", system(), json!({"name": "again"}))
                .await
        ),
        ErrorCode::AccountExists
    );
    assert_eq!(
        code(
            &f.send(
                "add_followers",
                system(),
                json!({"record": contact("c1"), "users": ["zed"]})
            )
            .await
        ),
        ErrorCode::UnknownUser
    );
    assert_eq!(
        code(&f.send("register_member", system(), json!({"user": "bob", "name": "B", "email": "b@x", "role": "user", "data_scope": "all"})).await),
        ErrorCode::MemberExists
    );
    assert_eq!(
        code(
            &f.send(
                "change_owner",
                system(),
                json!({"record": contact("c9"), "owner": "bob"})
            )
            .await
        ),
        ErrorCode::UnknownRecord
    );
    assert_eq!(
        code(
            &f.send("create_contact", system(), json!({"contact": "c1"}))
                .await
        ),
        ErrorCode::RecordExists
    );

    // R5, R15, R20: access.
    let denied = f
        .send(
            "change_owner",
            user("cid"),
            json!({"record": contact("c1"), "owner": "cid"}),
        )
        .await;
    assert_eq!(code(&denied), ErrorCode::AccessDenied);
    assert_eq!(
        denied.error.unwrap().reason.map(|r| r.as_str()),
        Some("owner_change_not_allowed")
    );
    let not_assigned = f
        .send(
            "add_followers",
            user("dee"),
            json!({"record": contact("c1"), "users": ["dee"]}),
        )
        .await;
    assert_eq!(
        not_assigned.error.unwrap().reason.map(|r| r.as_str()),
        Some("not_assigned")
    );

    // R7: coupled owners.
    let coupled = f
        .send(
            "create_opportunity",
            user("ann"),
            json!({"opportunity": "o1", "contact": "c1", "owner": "cid"}),
        )
        .await;
    assert_eq!(code(&coupled), ErrorCode::OwnersCoupled);

    // R3: inactive users.
    ok(&f, "deactivate_member", system(), json!({"user": "dee"})).await;
    let head_mid = store.head().await.unwrap();
    assert_eq!(
        code(
            &f.send(
                "add_followers",
                system(),
                json!({"record": contact("c1"), "users": ["dee"]})
            )
            .await
        ),
        ErrorCode::InactiveUser
    );
    assert_eq!(
        code(
            &f.send(
                "change_owner",
                system(),
                json!({"record": contact("c1"), "owner": "dee"})
            )
            .await
        ),
        ErrorCode::InactiveUser
    );

    // R13: an add that would exceed 10 adds nothing and says how many places are free.
    let users: Vec<String> = (0..12).map(|i| format!("m{i}")).collect();
    for u in &users {
        ok(
            &f,
            "register_member",
            system(),
            json!({"user": u, "name": u, "email": "m@x", "role": "user", "data_scope": "all"}),
        )
        .await;
    }
    ok(
        &f,
        "add_followers",
        system(),
        json!({"record": contact("c1"), "users": users[..8]}),
    )
    .await;
    let over = f
        .send(
            "add_followers",
            system(),
            json!({"record": contact("c1"), "users": users[8..]}),
        )
        .await;
    assert_eq!(code(&over), ErrorCode::FollowerLimit);
    assert_eq!(over.error.unwrap().free_places, Some(2));
    assert_eq!(
        record_state(&store, "acme", c("c1")).await.followers.len(),
        8
    );

    assert!(head_mid > head, "the deactivation was appended");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r17_a_workflow_command_without_record_does_nothing_and_says_so() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let f = Followers::new(server.client().await, "acme");
    open_account(&f, MEMBERS).await;
    let head = history(&server).await.head().await.unwrap();
    let r = ok(
        &f,
        "add_followers",
        workflow("wf-1"),
        json!({"users": ["bob"]}),
    )
    .await;
    assert_eq!(r.outcome, Some(Outcome::NoRecord));
    assert!(r.events.is_empty());
    let by_user = f
        .send("add_followers", user("ann"), json!({"users": ["bob"]}))
        .await;
    assert_eq!(
        code(&by_user),
        ErrorCode::MalformedRequest,
        "only workflows may omit the record"
    );
    assert_eq!(history(&server).await.head().await.unwrap(), head);
    service.stop().await;
}

/// R24: a retried command gets the first reply again and appends nothing: right away, after a
/// restart of the service, and after the store's dedup window has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r24_a_retried_command_gets_the_first_reply_and_appends_nothing() {
    let server = NatsServer::start();
    let flags = ["--duplicate-window-secs", "1"];
    let service = start_command_service(&server, &flags).await;
    let f = Followers::new(server.client().await, "acme");
    open_account(&f, MEMBERS).await;
    ok(
        &f,
        "create_contact",
        system(),
        json!({"contact": "c1", "owner": "ann"}),
    )
    .await;
    let id = Uuid::now_v7();
    let add = json!({"record": contact("c1"), "users": ["bob"]});
    let first = f
        .send_with_id("add_followers", id, system(), add.clone())
        .await;
    assert_eq!(first.outcome, Some(Outcome::Applied));
    let again = f
        .send_with_id("add_followers", id, system(), add.clone())
        .await;
    assert!(again.replayed);
    assert_eq!(
        CommandReply {
            replayed: false,
            ..again
        },
        first
    );

    // A rejected command is rejected again with the same reply, even once it would pass.
    let rejected_id = Uuid::now_v7();
    let rejected = f
        .send_with_id(
            "add_followers",
            rejected_id,
            system(),
            json!({"record": contact("c1"), "users": ["newbie"]}),
        )
        .await;
    assert_eq!(code(&rejected), ErrorCode::UnknownUser);
    ok(
        &f,
        "register_member",
        system(),
        json!({"user": "newbie", "name": "N", "email": "n@x", "role": "user", "data_scope": "all"}),
    )
    .await;
    let rejected_again = f
        .send_with_id(
            "add_followers",
            rejected_id,
            system(),
            json!({"record": contact("c1"), "users": ["newbie"]}),
        )
        .await;
    assert_eq!(code(&rejected_again), ErrorCode::UnknownUser);

    service.stop().await;
    // The dedup window (1 s here) passes: only the service's own memory of command ids can
    // recognise the retry now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let service = start_command_service(&server, &flags).await;
    let head = history(&server).await.head().await.unwrap();
    let after_restart = f.send_with_id("add_followers", id, system(), add).await;
    assert_eq!(
        CommandReply {
            replayed: false,
            ..after_restart
        },
        first
    );
    assert_eq!(
        history(&server).await.head().await.unwrap(),
        head,
        "nothing appended"
    );
    let c1 = record_state(&history(&server).await, "acme", c("c1")).await;
    assert_eq!(c1.followers.len(), 1);
    service.stop().await;
}

/// R11, R13 under concurrency: 50 adds at once through two instances; exactly 10 win.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_adds_through_two_instances_leave_exactly_ten_followers() {
    let server = NatsServer::start();
    let a = start_command_service(&server, &[]).await;
    let b = start_command_service(&server, &["--follower-sync", "false"]).await;
    let f = Followers::new(server.client().await, "acme");
    open_account(&f, &[("ann", "admin", "all")]).await;
    for i in 0..50 {
        ok(&f, "register_member", system(), json!({"user": format!("u{i}"), "name": "U", "email": "u@x", "role": "user", "data_scope": "all"})).await;
    }
    ok(
        &f,
        "create_contact",
        system(),
        json!({"contact": "hot", "owner": "ann"}),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            f.send(
                "add_followers",
                user("ann"),
                json!({"record": contact("hot"), "users": [format!("u{i}")]}),
            )
            .await
        }));
    }
    let mut added = 0;
    for t in tasks {
        let r = t.await.unwrap();
        if r.ok {
            assert_eq!(r.outcome, Some(Outcome::Applied));
            added += 1;
        } else {
            assert_eq!(code(&r), ErrorCode::FollowerLimit);
            assert_eq!(r.error.unwrap().free_places, Some(0));
        }
    }
    assert_eq!(added, 10);
    let hot = record_state(&history(&server).await, "acme", c("hot")).await;
    assert_eq!(hot.followers.len(), 10);
    a.stop().await;
    b.stop().await;
}

/// R7: with coupled owners, changing either owner moves the contact and all its opportunities.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r7_coupled_owners_move_together() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let f = Followers::new(server.client().await, "acme");
    open_account(&f, MEMBERS).await;
    ok(
        &f,
        "create_contact",
        system(),
        json!({"contact": "c1", "owner": "bob"}),
    )
    .await;
    ok(
        &f,
        "create_opportunity",
        system(),
        json!({"opportunity": "o1", "contact": "c1"}),
    )
    .await;
    ok(
        &f,
        "create_opportunity",
        system(),
        json!({"opportunity": "o2", "contact": "c1"}),
    )
    .await;
    let store = history(&server).await;
    assert_eq!(
        record_state(&store, "acme", o("o1"))
            .await
            .owner
            .map(|u| u.to_string()),
        Some("bob".into()),
        "R6"
    );

    ok(
        &f,
        "change_owner",
        user("ann"),
        json!({"record": contact("c1"), "owner": "cid"}),
    )
    .await;
    let owners = |store: JetStreamStore, want: &'static str| async move {
        let mut all = true;
        for r in [c("c1"), o("o1"), o("o2")] {
            all &= record_state(&store, "acme", r)
                .await
                .owner
                .map(|u| u.to_string())
                .as_deref()
                == Some(want);
        }
        all
    };
    eventually("contact and opportunities owned by cid", || {
        owners(store.clone(), "cid")
    })
    .await;
    ok(
        &f,
        "change_owner",
        user("cid"),
        json!({"record": opportunity("o2"), "owner": "dee"}),
    )
    .await;
    eventually("contact and opportunities owned by dee", || {
        owners(store.clone(), "dee")
    })
    .await;
    service.stop().await;
}

/// R8, R9, R10: the two sync settings, with skips recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r8_r9_follower_sync_settings_follow_owner_changes() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let f = Followers::new(server.client().await, "acme");
    open_account(&f, MEMBERS).await;
    ok(
        &f,
        "change_settings",
        user("ann"),
        json!({
            "allow_different_owners": true,
            "sync_contact_follower_with_opportunity_owner": true,
            "sync_opportunity_follower_with_contact_owner": true
        }),
    )
    .await;
    ok(
        &f,
        "create_contact",
        system(),
        json!({"contact": "c1", "owner": "bob"}),
    )
    .await;
    ok(
        &f,
        "create_opportunity",
        system(),
        json!({"opportunity": "o1", "contact": "c1", "owner": "bob"}),
    )
    .await;
    let store = history(&server).await;
    let follows = |store: JetStreamStore, r: RecordRef, u: &'static str| async move {
        record_state(&store, "acme", r)
            .await
            .follows(&u.parse().unwrap())
    };

    // R8: the opportunity's new owner follows the contact; the previous owner was the contact's
    // owner (skipped: already_owner), so nothing to remove.
    ok(
        &f,
        "change_owner",
        user("ann"),
        json!({"record": opportunity("o1"), "owner": "cid"}),
    )
    .await;
    eventually("cid follows c1 (R8)", || {
        follows(store.clone(), c("c1"), "cid")
    })
    .await;
    // Next owner: dee follows, cid (added by this sync) stops following.
    ok(
        &f,
        "change_owner",
        user("ann"),
        json!({"record": opportunity("o1"), "owner": "dee"}),
    )
    .await;
    eventually("dee follows c1 and cid no longer (R8)", || async {
        follows(store.clone(), c("c1"), "dee").await
            && !follows(store.clone(), c("c1"), "cid").await
    })
    .await;

    // R9: the contact's new owner follows each opportunity.
    ok(
        &f,
        "change_owner",
        user("ann"),
        json!({"record": contact("c1"), "owner": "ann"}),
    )
    .await;
    eventually("ann follows o1 (R9)", || {
        follows(store.clone(), o("o1"), "ann")
    })
    .await;

    // R10: a manually added follower is not removed by the sync, and the skip is recorded.
    ok(
        &f,
        "add_followers",
        user("ann"),
        json!({"record": opportunity("o1"), "users": ["cid"]}),
    )
    .await;
    ok(
        &f,
        "change_owner",
        user("ann"),
        json!({"record": contact("c1"), "owner": "cid"}),
    )
    .await;
    let stream = StreamId::record("acme".parse().unwrap(), o("o1"));
    eventually("a skip recorded on o1 (R10)", || async {
        store.read_stream(&stream).await.unwrap().iter().flat_map(|c| c.commit.events.iter()).any(|e| {
            matches!(&e.body, followers_shared::event::EventBody::FollowerSyncSkipped { user, .. } if user.as_str() == "cid")
        })
    }).await;
    assert!(
        follows(store.clone(), o("o1"), "cid").await,
        "cid stays: added manually"
    );
    service.stop().await;
}

/// Opens acme decoupled, with the given follower syncs on, and c1 owned by ann.
async fn decoupled_account(f: &Followers, r8: bool, r9: bool) {
    open_account(f, MEMBERS).await;
    ok(
        f,
        "change_settings",
        user("ann"),
        json!({
            "allow_different_owners": true,
            "sync_contact_follower_with_opportunity_owner": r8,
            "sync_opportunity_follower_with_contact_owner": r9
        }),
    )
    .await;
    ok(
        f,
        "create_contact",
        system(),
        json!({"contact": "c1", "owner": "ann"}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r8_full_contact_gets_the_new_opportunity_owner() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let f = Followers::new(server.client().await, "acme");
    decoupled_account(&f, true, false).await;
    let store = history(&server).await;
    let followers = |store: JetStreamStore| async move {
        record_state(&store, "acme", c("c1"))
            .await
            .followers
            .iter()
            .map(|f| f.user.to_string())
            .collect::<Vec<_>>()
    };
    ok(
        &f,
        "create_opportunity",
        system(),
        json!({"opportunity": "o1", "contact": "c1", "owner": "bob"}),
    )
    .await;
    eventually("bob follows c1 (R8)", || async {
        followers(store.clone()).await == ["bob"]
    })
    .await;
    // Nine more by hand: c1 is full, one entry being the sync's.
    let nine: Vec<String> = (0..9).map(|i| format!("m{i}")).collect();
    for m in &nine {
        ok(
            &f,
            "register_member",
            system(),
            json!({"user": m, "name": m, "email": format!("{m}@example.com"),
                   "role": "user", "data_scope": "only_assigned"}),
        )
        .await;
    }
    ok(
        &f,
        "add_followers",
        user("ann"),
        json!({"record": contact("c1"), "users": nine}),
    )
    .await;

    ok(
        &f,
        "change_owner",
        user("ann"),
        json!({"record": opportunity("o1"), "owner": "cid"}),
    )
    .await;
    eventually("cid replaced bob on the full contact (R8)", || async {
        let now = followers(store.clone()).await;
        now.len() == 10 && now.iter().any(|u| u == "cid") && !now.iter().any(|u| u == "bob")
    })
    .await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r9_new_opportunity_follows_its_contact_owner_end_to_end() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let f = Followers::new(server.client().await, "acme");
    decoupled_account(&f, false, true).await;
    ok(
        &f,
        "create_opportunity",
        system(),
        json!({"opportunity": "o1", "contact": "c1", "owner": "bob"}),
    )
    .await;
    let store = history(&server).await;
    eventually(
        "ann, the contact's owner, follows the new o1 (R9)",
        || async {
            record_state(&store, "acme", o("o1"))
                .await
                .follower(&"ann".parse().unwrap())
                .is_some_and(|f| {
                    f.how == followers_shared::model::AddedHow::OwnerSync { from: c("c1") }
                })
        },
    )
    .await;
    service.stop().await;
}

/// R1, R24: a command id is the caller's idempotency key only within its account. Another
/// account's command with the same id runs and gets its own reply, in both directions, for
/// applied and refused commands, within the store's dedup window, after a restart and after
/// the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_a_command_id_is_a_key_only_within_its_account() {
    let server = NatsServer::start();
    let flags = ["--duplicate-window-secs", "1"];
    let service = start_command_service(&server, &flags).await;
    let acme = Followers::new(server.client().await, "acme");
    let globex = acme.for_account("globex");
    for f in [&acme, &globex] {
        open_account(f, MEMBERS).await;
        ok(f, "create_contact", system(), json!({"contact": "c1"})).await;
    }
    let add = |who: &str| json!({"record": contact("c1"), "users": [who]});
    let added = |r: &CommandReply| {
        r.added
            .as_ref()
            .map(|users| users.iter().map(ToString::to_string).collect::<Vec<_>>())
    };

    // Applied in acme, then the same id in globex: globex's command runs.
    let shared = Uuid::now_v7();
    let a = acme
        .send_with_id("add_followers", shared, system(), add("bob"))
        .await;
    assert_eq!(added(&a), Some(vec!["bob".to_owned()]));
    let g = globex
        .send_with_id("add_followers", shared, system(), add("cid"))
        .await;
    assert!(!g.replayed, "{g:?}");
    assert_eq!(added(&g), Some(vec!["cid".to_owned()]), "{g:?}");

    // Refused in globex, then the same id in acme: acme's command runs.
    let refused = Uuid::now_v7();
    let g = globex
        .send_with_id("add_followers", refused, system(), add("nobody"))
        .await;
    assert_eq!(code(&g), ErrorCode::UnknownUser);
    let a = acme
        .send_with_id("add_followers", refused, system(), add("dee"))
        .await;
    assert!(!a.replayed, "{a:?}");
    assert_eq!(added(&a), Some(vec!["dee".to_owned()]), "{a:?}");

    // Each retry gets its own account's first reply, after a restart and the dedup window.
    service.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let service = start_command_service(&server, &flags).await;
    let head = history(&server).await.head().await.unwrap();
    for (f, who) in [(&acme, "bob"), (&globex, "cid")] {
        let r = f
            .send_with_id("add_followers", shared, system(), add(who))
            .await;
        assert!(r.replayed, "{r:?}");
        assert_eq!(added(&r), Some(vec![who.to_owned()]), "{}", f.account);
        assert!(
            r.events
                .iter()
                .all(|e| format!("{:?}", e.body).contains(who)),
            "only {}'s own events: {r:?}",
            f.account
        );
    }
    let r = acme
        .send_with_id("add_followers", refused, system(), add("dee"))
        .await;
    assert!(
        r.replayed && added(&r) == Some(vec!["dee".to_owned()]),
        "{r:?}"
    );
    assert_eq!(
        history(&server).await.head().await.unwrap(),
        head,
        "nothing appended"
    );
    let store = history(&server).await;
    let follows = |s: RecordState| {
        s.followers
            .iter()
            .map(|f| f.user.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        follows(record_state(&store, "acme", c("c1")).await),
        ["bob", "dee"]
    );
    assert_eq!(
        follows(record_state(&store, "globex", c("c1")).await),
        ["cid"]
    );
    service.stop().await;
}

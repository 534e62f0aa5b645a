#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: commands over NATS against a real nats-server and the command service, sent with
//! the typed client (`followers-client`) except where the raw wire is the point.
//! Rule numbers refer to docs/rules.md.

use std::time::Duration;

use followers_client::{Account, Error, Reply, system};
use followers_shared::command::{
    ChangeMemberDataScope, ChangeMemberRole, ChangeSettings, DeactivateMember, OpenAccount,
    ReactivateMember,
};
use followers_shared::error::ErrorCode;
use followers_shared::ids::CommandId;
use followers_shared::model::{DataScope, RecordRef, Role, SettingsChange};
use followers_shared::record::RecordState;
use followers_shared::store::{EventStore, StreamId};
use followers_shared::wire::{CommandReply, Outcome};
use followers_store::JetStreamStore;
use followers_tests::client;
use followers_tests::stack::{history, open_team, start_command_service};
use followers_tests::typed::{
    NONE, account, add, by, by_workflow, change_owner, code, member, new_contact, new_opportunity,
    refusal, remove, uid,
};
use followers_tests::{Followers, NatsServer, eventually};
use serde_json::json;
use uuid::Uuid;

use followers_tests::stack::TEAM as MEMBERS;

/// The code of a reply to a raw request.
fn raw_code(r: &CommandReply) -> ErrorCode {
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

fn names(users: Option<&Vec<followers_shared::ids::UserId>>) -> Option<Vec<&str>> {
    users.map(|u| u.iter().map(|u| u.as_str()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_kind_works_over_nats() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    open_team(&acme, MEMBERS).await;
    let (cid, dee) = (uid("cid"), uid("dee"));
    let role = |role| ChangeMemberRole {
        user: cid.clone(),
        role,
    };
    let r = acme.command(system(), role(Role::Admin)).await.unwrap();
    assert_eq!(r.outcome(), Outcome::Applied);
    acme.command(by("ann"), role(Role::User)).await.unwrap();
    for data_scope in [DataScope::OnlyAssigned, DataScope::All] {
        let user = cid.clone();
        let scope = ChangeMemberDataScope { user, data_scope };
        acme.command(by("ann"), scope).await.unwrap();
    }
    let user = dee.clone();
    acme.command(by("ann"), DeactivateMember { user })
        .await
        .unwrap();
    acme.command(by("ann"), ReactivateMember { user: dee })
        .await
        .unwrap();
    let change = SettingsChange {
        allow_different_owners: Some(true),
        ..SettingsChange::default()
    };
    acme.command(by("ann"), ChangeSettings { change })
        .await
        .unwrap();
    let contact = new_contact("c1", Some("bob"), &["dee"]);
    let r = acme.command(by("cid"), contact).await.unwrap();
    assert_eq!(r.events().len(), 2, "contact_created and followers_added");
    let opportunity = new_opportunity("o1", "c1", None, &["cid"]);
    let r = acme.command(by("cid"), opportunity).await.unwrap();
    assert!(r.position.is_some());
    let owner = change_owner(o("o1"), Some("cid"));
    let r = acme.command(by("ann"), owner).await.unwrap();
    assert_eq!(r.outcome(), Outcome::Applied);
    let r = acme
        .command(by("bob"), add(c("c1"), &["ann", "dee"]))
        .await
        .unwrap();
    assert_eq!(names(r.added.as_ref()), Some(vec!["ann"]), "R12: ann added");
    assert_eq!(
        names(r.already_following.as_ref()),
        Some(vec!["dee"]),
        "R12"
    );
    let r = acme
        .command(by("bob"), remove(c("c1"), &["ann", "cid"]))
        .await
        .unwrap();
    assert_eq!(names(r.removed.as_ref()), Some(vec!["ann"]));
    assert_eq!(names(r.not_following.as_ref()), Some(vec!["cid"]), "R14");

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

/// R24: requests the typed client cannot write (broken JSON, no id, unknown fields, bad ids,
/// too large, unknown names) are refused as malformed. Raw bytes on purpose: the malformed wire
/// is what is tested.
async fn malformed_requests_are_refused(f: &Followers) {
    assert_eq!(
        raw_code(&f.raw("add_followers", b"{not json".to_vec()).await),
        ErrorCode::MalformedRequest
    );
    let missing_id = f
        .raw("add_followers", br#"{"actor":{"kind":"system"}}"#.to_vec())
        .await;
    assert_eq!(raw_code(&missing_id), ErrorCode::MalformedRequest);
    let c1 = client::contact("c1");
    let colour = json!({"record": c1, "users": ["bob"], "colour": "red"});
    let unknown_field = f.send("add_followers", client::system(), colour).await;
    assert_eq!(raw_code(&unknown_field), ErrorCode::MalformedRequest);
    assert!(unknown_field.error.unwrap().message.contains("colour"));
    assert!(
        unknown_field.command_id.is_some(),
        "the error echoes the command id"
    );
    let bad = json!({"record": client::contact("c.1"), "users": ["bob"]});
    let bad_id = f.send("add_followers", client::system(), bad).await;
    assert_eq!(raw_code(&bad_id), ErrorCode::MalformedRequest);
    // A name that is no command has no endpoint: NATS answers "no responders" at once.
    assert!(f.finds_no_responder("cmd", "make_coffee").await);
    assert!(f.finds_no_responder("query", "make_coffee").await);
    let huge = json!({"command_id": Uuid::now_v7(), "actor": client::system(),
                      "record": c1, "users": ["x".repeat(70_000)]});
    let huge = f
        .raw("add_followers", serde_json::to_vec(&huge).unwrap())
        .await;
    assert_eq!(raw_code(&huge), ErrorCode::RequestTooLarge);
}

/// R24 (unknown and existing things), R5, R15, R20 (access), R7 (coupled owners).
async fn rule_refusals(acme: &Account, nowhere: &Account) {
    let c1 = || new_contact("c1", None, NONE);
    assert_eq!(
        code(nowhere.command(system(), c1()).await),
        ErrorCode::UnknownAccount
    );
    let again = OpenAccount {
        name: followers_shared::bounded::Text::new("again").unwrap(),
        settings: Default::default(),
    };
    let refused = acme.command(system(), again).await;
    assert_eq!(code(refused), ErrorCode::AccountExists);
    let zed = acme.command(system(), add(c("c1"), &["zed"])).await;
    assert_eq!(code(zed), ErrorCode::UnknownUser);
    let bob = acme.command(system(), member("bob", "user", "all")).await;
    assert_eq!(code(bob), ErrorCode::MemberExists);
    let c9 = acme.command(system(), change_owner(c("c9"), Some("bob")));
    assert_eq!(code(c9.await), ErrorCode::UnknownRecord);
    assert_eq!(
        code(acme.command(system(), c1()).await),
        ErrorCode::RecordExists
    );

    let denied = acme.command(by("cid"), change_owner(c("c1"), Some("cid")));
    let denied = refusal(denied.await);
    assert_eq!(denied.code(), Some(ErrorCode::AccessDenied));
    let reason = |e: Error| match e {
        Error::Refused { reason, .. } => reason.map(|r| r.as_str()),
        _ => None,
    };
    assert_eq!(reason(denied), Some("owner_change_not_allowed"));
    let not_assigned = acme.command(by("dee"), add(c("c1"), &["dee"])).await;
    assert_eq!(reason(refusal(not_assigned)), Some("not_assigned"));

    let coupled = new_opportunity("o1", "c1", Some("cid"), NONE);
    let coupled = acme.command(by("ann"), coupled).await;
    assert_eq!(code(coupled), ErrorCode::OwnersCoupled);
}

/// R3: inactive users can neither follow nor own.
async fn inactive_users_are_refused(acme: &Account) {
    let dee = acme.command(system(), add(c("c1"), &["dee"])).await;
    assert_eq!(code(dee), ErrorCode::InactiveUser);
    let owner = acme.command(system(), change_owner(c("c1"), Some("dee")));
    assert_eq!(code(owner.await), ErrorCode::InactiveUser);
}

/// R13: an add that would exceed 10 adds nothing and says how many places are free.
async fn an_add_over_the_limit_adds_nothing(acme: &Account, store: &JetStreamStore) {
    let users: Vec<String> = (0..12).map(|i| format!("m{i}")).collect();
    for u in &users {
        acme.command(system(), member(u, "user", "all"))
            .await
            .unwrap();
    }
    acme.command(system(), add(c("c1"), &users[..8]))
        .await
        .unwrap();
    let over = acme.command(system(), add(c("c1"), &users[8..])).await;
    match refusal(over) {
        Error::Refused {
            code, free_places, ..
        } => {
            assert_eq!(code, ErrorCode::FollowerLimit);
            assert_eq!(free_places, Some(2));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        record_state(store, "acme", c("c1")).await.followers.len(),
        8
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_error_has_its_code_and_appends_nothing() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    open_team(&acme, MEMBERS).await;
    let contact = new_contact("c1", Some("bob"), NONE);
    acme.command(by("ann"), contact).await.unwrap();
    let store = history(&server).await;
    let head = store.head().await.unwrap();

    malformed_requests_are_refused(&Followers::new(server.client().await, "acme")).await;
    let nowhere = account(&server, "nowhere").await;
    rule_refusals(&acme, &nowhere).await;
    assert_eq!(store.head().await.unwrap(), head, "no refusal appended");

    let user = uid("dee");
    acme.command(system(), DeactivateMember { user })
        .await
        .unwrap();
    let head_mid = store.head().await.unwrap();
    assert!(head_mid > head, "the deactivation was appended");
    inactive_users_are_refused(&acme).await;
    assert_eq!(store.head().await.unwrap(), head_mid, "no refusal appended");
    an_add_over_the_limit_adds_nothing(&acme, &store).await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r17_a_workflow_command_without_record_does_nothing_and_says_so() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    open_team(&acme, MEMBERS).await;
    let head = history(&server).await.head().await.unwrap();
    let users = followers_tests::typed::some_users(&["bob"]);
    let no_record = followers_shared::command::AddFollowers {
        until: Default::default(),
        record: None,
        users,
    };
    let r = acme.command(by_workflow("wf-1"), no_record).await.unwrap();
    assert_eq!(r.outcome(), Outcome::NoRecord);
    assert!(r.events().is_empty());
    // Raw on purpose: the typed client refuses this itself; the service must refuse it too.
    let f = Followers::new(server.client().await, "acme");
    let by_user = f
        .send(
            "add_followers",
            client::user("ann"),
            json!({"users": ["bob"]}),
        )
        .await;
    assert_eq!(
        raw_code(&by_user),
        ErrorCode::MalformedRequest,
        "only workflows may omit the record"
    );
    assert_eq!(history(&server).await.head().await.unwrap(), head);
    service.stop().await;
}

/// The reply as the wire had it, without `replayed`: what a retry must repeat.
fn first_reply(r: &Reply) -> CommandReply {
    CommandReply {
        replayed: false,
        ..r.clone().into_inner()
    }
}

/// R24: a retried command gets the first reply again and appends nothing: right away, after a
/// restart of the service, and after the store's dedup window has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r24_a_retried_command_gets_the_first_reply_and_appends_nothing() {
    let server = NatsServer::start();
    // One instance: a reply that appended nothing is remembered by the instance that sent it
    // (docs/rules.md, R24), so the rejected retry below must reach the same one.
    let flags = ["--duplicate-window-secs", "1", "--partitions", "all"];
    let service = start_command_service(&server, &flags).await;
    let acme = account(&server, "acme").await;
    open_team(&acme, MEMBERS).await;
    let contact = new_contact("c1", Some("ann"), NONE);
    acme.command(system(), contact).await.unwrap();
    let id = CommandId::new();
    let add_bob = || {
        acme.command(system(), add(c("c1"), &["bob"]))
            .command_id(id)
    };
    let first = add_bob().await.unwrap();
    assert_eq!(first.outcome(), Outcome::Applied);
    let again = add_bob().await.unwrap();
    assert!(again.replayed());
    assert_eq!(first_reply(&again), first_reply(&first));

    // A rejected command is rejected again with the same reply, even once it would pass.
    let rejected_id = CommandId::new();
    let add_newbie = || {
        acme.command(system(), add(c("c1"), &["newbie"]))
            .command_id(rejected_id)
    };
    assert_eq!(code(add_newbie().await), ErrorCode::UnknownUser);
    acme.command(system(), member("newbie", "user", "all"))
        .await
        .unwrap();
    assert_eq!(code(add_newbie().await), ErrorCode::UnknownUser);

    service.stop().await;
    // The dedup window (1 s here) passes: only the service's own memory of command ids can
    // recognise the retry now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let service = start_command_service(&server, &flags).await;
    let head = history(&server).await.head().await.unwrap();
    let after_restart = add_bob().await.unwrap();
    assert_eq!(first_reply(&after_restart), first_reply(&first));
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
    let acme = account(&server, "acme").await;
    open_team(&acme, &[("ann", "admin", "all")]).await;
    for i in 0..50 {
        let u = format!("u{i}");
        acme.command(system(), member(&u, "user", "all"))
            .await
            .unwrap();
    }
    let hot = new_contact("hot", Some("ann"), NONE);
    acme.command(system(), hot).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let add = acme.command(by("ann"), add(c("hot"), &[format!("u{i}")]));
        tasks.push(tokio::spawn(add.send()));
    }
    let mut added = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => {
                assert_eq!(r.outcome(), Outcome::Applied);
                added += 1;
            }
            Err(Error::Refused {
                code, free_places, ..
            }) => {
                assert_eq!(code, ErrorCode::FollowerLimit);
                assert_eq!(free_places, Some(0));
            }
            Err(e) => panic!("{e:?}"),
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
    let acme = account(&server, "acme").await;
    open_team(&acme, MEMBERS).await;
    let c1 = new_contact("c1", Some("bob"), NONE);
    acme.command(system(), c1).await.unwrap();
    for id in ["o1", "o2"] {
        let opportunity = new_opportunity(id, "c1", None, NONE);
        acme.command(system(), opportunity).await.unwrap();
    }
    let store = history(&server).await;
    assert_eq!(
        record_state(&store, "acme", o("o1"))
            .await
            .owner
            .map(|u| u.to_string()),
        Some("bob".into()),
        "R6"
    );

    let to_cid = change_owner(c("c1"), Some("cid"));
    acme.command(by("ann"), to_cid).await.unwrap();
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
    let to_dee = change_owner(o("o2"), Some("dee"));
    acme.command(by("cid"), to_dee).await.unwrap();
    eventually("contact and opportunities owned by dee", || {
        owners(store.clone(), "dee")
    })
    .await;
    service.stop().await;
}

/// `change_settings` turning different owners on and the two follower syncs as given.
fn decoupled(r8: bool, r9: bool) -> ChangeSettings {
    ChangeSettings {
        change: SettingsChange {
            allow_different_owners: Some(true),
            sync_contact_follower_with_opportunity_owner: Some(r8),
            sync_opportunity_follower_with_contact_owner: Some(r9),
            ..SettingsChange::default()
        },
    }
}

/// R8, R9, R10: the two sync settings, with skips recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r8_r9_follower_sync_settings_follow_owner_changes() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    open_team(&acme, MEMBERS).await;
    acme.command(by("ann"), decoupled(true, true))
        .await
        .unwrap();
    let c1 = new_contact("c1", Some("bob"), NONE);
    acme.command(system(), c1).await.unwrap();
    let o1 = new_opportunity("o1", "c1", Some("bob"), NONE);
    acme.command(system(), o1).await.unwrap();
    let store = history(&server).await;
    let follows = |store: JetStreamStore, r: RecordRef, u: &'static str| async move {
        record_state(&store, "acme", r).await.follows(&uid(u))
    };
    let move_to = |record, owner| acme.command(by("ann"), change_owner(record, Some(owner)));

    // R8: the opportunity's new owner follows the contact; the previous owner was the contact's
    // owner (skipped: already_owner), so nothing to remove.
    move_to(o("o1"), "cid").await.unwrap();
    eventually("cid follows c1 (R8)", || {
        follows(store.clone(), c("c1"), "cid")
    })
    .await;
    // Next owner: dee follows, cid (added by this sync) stops following.
    move_to(o("o1"), "dee").await.unwrap();
    eventually("dee follows c1 and cid no longer (R8)", || async {
        follows(store.clone(), c("c1"), "dee").await
            && !follows(store.clone(), c("c1"), "cid").await
    })
    .await;

    // R9: the contact's new owner follows each opportunity.
    move_to(c("c1"), "ann").await.unwrap();
    eventually("ann follows o1 (R9)", || {
        follows(store.clone(), o("o1"), "ann")
    })
    .await;

    // R10: a manually added follower is not removed by the sync, and the skip is recorded.
    acme.command(by("ann"), add(o("o1"), &["cid"]))
        .await
        .unwrap();
    move_to(c("c1"), "cid").await.unwrap();
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
async fn decoupled_account(acme: &Account, r8: bool, r9: bool) {
    open_team(acme, MEMBERS).await;
    acme.command(by("ann"), decoupled(r8, r9)).await.unwrap();
    let c1 = new_contact("c1", Some("ann"), NONE);
    acme.command(system(), c1).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r8_full_contact_gets_the_new_opportunity_owner() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    decoupled_account(&acme, true, false).await;
    let store = history(&server).await;
    let followers = |store: JetStreamStore| async move {
        record_state(&store, "acme", c("c1"))
            .await
            .followers
            .iter()
            .map(|f| f.user.to_string())
            .collect::<Vec<_>>()
    };
    let o1 = new_opportunity("o1", "c1", Some("bob"), NONE);
    acme.command(system(), o1).await.unwrap();
    eventually("bob follows c1 (R8)", || async {
        followers(store.clone()).await == ["bob"]
    })
    .await;
    // Nine more by hand: c1 is full, one entry being the sync's.
    let nine: Vec<String> = (0..9).map(|i| format!("m{i}")).collect();
    for m in &nine {
        let m = member(m, "user", "only_assigned");
        acme.command(system(), m).await.unwrap();
    }
    acme.command(by("ann"), add(c("c1"), &nine)).await.unwrap();

    let to_cid = change_owner(o("o1"), Some("cid"));
    acme.command(by("ann"), to_cid).await.unwrap();
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
    let acme = account(&server, "acme").await;
    decoupled_account(&acme, false, true).await;
    let o1 = new_opportunity("o1", "c1", Some("bob"), NONE);
    acme.command(system(), o1).await.unwrap();
    let store = history(&server).await;
    eventually(
        "ann, the contact's owner, follows the new o1 (R9)",
        || async {
            record_state(&store, "acme", o("o1"))
                .await
                .follower(&uid("ann"))
                .is_some_and(|f| {
                    *f.how == followers_shared::model::AddedHow::OwnerSync { from: c("c1") }
                })
        },
    )
    .await;
    service.stop().await;
}

fn added(r: &Reply) -> Option<Vec<String>> {
    r.added
        .as_ref()
        .map(|users| users.iter().map(ToString::to_string).collect())
}

/// R1, R24: a command id is the caller's idempotency key only within its account. Another
/// account's command with the same id runs and gets its own reply, in both directions, for
/// applied and refused commands, within the store's dedup window, after a restart and after
/// the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_a_command_id_is_a_key_only_within_its_account() {
    let server = NatsServer::start();
    // One instance: a reply that appended nothing is remembered by the instance that sent it
    // (docs/rules.md, R24), so the rejected retry below must reach the same one.
    let flags = ["--duplicate-window-secs", "1", "--partitions", "all"];
    let service = start_command_service(&server, &flags).await;
    let acme = account(&server, "acme").await;
    let globex = account(&server, "globex").await;
    for f in [&acme, &globex] {
        open_team(f, MEMBERS).await;
        let c1 = new_contact("c1", None, NONE);
        f.command(system(), c1).await.unwrap();
    }
    let add_as =
        |f: &Account, id, who: &str| f.command(system(), add(c("c1"), &[who])).command_id(id);

    // Applied in acme, then the same id in globex: globex's command runs.
    let shared = CommandId::new();
    let a = add_as(&acme, shared, "bob").await.unwrap();
    assert_eq!(added(&a), Some(vec!["bob".to_owned()]));
    let g = add_as(&globex, shared, "cid").await.unwrap();
    assert!(!g.replayed(), "{g:?}");
    assert_eq!(added(&g), Some(vec!["cid".to_owned()]), "{g:?}");

    // Refused in globex, then the same id in acme: acme's command runs.
    let refused = CommandId::new();
    let g = add_as(&globex, refused, "nobody").await;
    assert_eq!(code(g), ErrorCode::UnknownUser);
    let a = add_as(&acme, refused, "dee").await.unwrap();
    assert!(!a.replayed(), "{a:?}");
    assert_eq!(added(&a), Some(vec!["dee".to_owned()]), "{a:?}");

    // Each retry gets its own account's first reply, after a restart and the dedup window.
    service.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let service = start_command_service(&server, &flags).await;
    let head = history(&server).await.head().await.unwrap();
    for (f, who) in [(&acme, "bob"), (&globex, "cid")] {
        let r = add_as(f, shared, who).await.unwrap();
        assert!(r.replayed(), "{r:?}");
        assert_eq!(added(&r), Some(vec![who.to_owned()]), "{}", f.id());
        assert!(
            r.events()
                .iter()
                .all(|e| format!("{:?}", e.body).contains(who)),
            "only {}'s own events: {r:?}",
            f.id()
        );
    }
    let r = add_as(&acme, refused, "dee").await.unwrap();
    assert!(
        r.replayed() && added(&r) == Some(vec!["dee".to_owned()]),
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

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: dry runs (issue 17, docs/protocol.md §3.17) over NATS against a real nats-server
//! and the command service, sent with the typed client. A dry run is decided as for real (R1-R24
//! all apply), appends nothing, and is not remembered under its command id (R24).
//! Rule numbers refer to docs/rules.md.

use chrono::{DateTime, Utc};
use followers_client::{Account, CommandPayload, Error, Reply, system};
use followers_shared::access::AccessDecision;
use followers_shared::command::{ChangeSettings, DeactivateMember};
use followers_shared::event::Event;
use followers_shared::model::{Actor, SettingsChange};
use followers_shared::store::{EventStore, Position};
use followers_store::JetStreamStore;
use followers_tests::NatsServer;
use followers_tests::stack::{TEAM, contact_ref as c, history, open_team, start_command_service};
use followers_tests::typed::{
    NONE, account, add, by, change_owner, member, new_contact, new_opportunity, refusal, remove,
};

/// The stream's last sequence: what a dry run must leave as it is.
async fn head(store: &JetStreamStore) -> Position {
    store.head().await.unwrap()
}

/// The events as they would be whenever sent: `at` is the time the service received the
/// command, the one thing a dry run and the real send of the same command id differ in.
fn timeless(events: &[Event]) -> Vec<Event> {
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    events
        .iter()
        .cloned()
        .map(|mut e| {
            e.meta.at = epoch;
            e
        })
        .collect()
}

/// Sends `payload` as a dry run, checks that it appended nothing, then sends the same command
/// (same id) for real and checks that it appended the very events the dry run showed.
async fn dry_then_real<P: CommandPayload + Clone>(
    acme: &Account,
    store: &JetStreamStore,
    actor: Actor,
    payload: P,
) -> (Reply, Reply) {
    let request = acme.command(actor, payload);
    let before = head(store).await;
    let dry = request.clone().dry_run().await.unwrap();
    assert_eq!(
        head(store).await,
        before,
        "{}: a dry run appends nothing",
        P::NAME
    );
    assert!(dry.dry_run() && !dry.replayed(), "{}: {dry:?}", P::NAME);
    assert_eq!(dry.position(), before, "decided at the last position");
    let real = request.await.unwrap();
    assert!(!real.dry_run() && !real.replayed(), "R24: not remembered");
    assert_eq!(real.outcome(), dry.outcome(), "{}", P::NAME);
    assert_eq!(
        timeless(real.events()),
        timeless(dry.events()),
        "{}",
        P::NAME
    );
    (dry, real)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_appends_nothing_and_shows_the_events_the_real_send_appends() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    open_team(&acme, TEAM).await;
    let store = history(&server).await;

    // R3, R16: a new record with an owner and a first follower.
    let (dry, real) = dry_then_real(
        &acme,
        &store,
        by("bob"),
        new_contact("c1", Some("bob"), &["dee"]),
    )
    .await;
    assert_eq!(dry.events().len(), 2, "contact_created, followers_added");
    assert!(real.position() > dry.position(), "the real send appended");
    // R5: the owner passes the contact on.
    dry_then_real(&acme, &store, by("bob"), change_owner(c("c1"), Some("cid"))).await;
    // R12: the reply's lists are those of the real send.
    let (dry, real) = dry_then_real(&acme, &store, by("cid"), add(c("c1"), &["ann", "dee"])).await;
    assert_eq!(dry.added, real.added);
    assert_eq!(dry.already_following, real.already_following);
    // R14: a command that changes nothing is `unchanged` either way.
    let (dry, _) = dry_then_real(&acme, &store, by("cid"), remove(c("c1"), &["bob"])).await;
    assert!(dry.events().is_empty(), "R14: bob does not follow");
    // The account's commands (R2, R3, R7).
    let change = SettingsChange {
        allow_different_owners: Some(true),
        ..SettingsChange::default()
    };
    dry_then_real(&acme, &store, by("ann"), ChangeSettings { change }).await;
    let dee = followers_tests::typed::uid("dee");
    dry_then_real(&acme, &store, system(), DeactivateMember { user: dee }).await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_dry_run_gets_the_error_the_real_send_gets() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    open_team(&acme, TEAM).await;
    acme.command(by("bob"), new_contact("c1", Some("bob"), NONE))
        .await
        .unwrap();
    let store = history(&server).await;
    let change = SettingsChange {
        allow_different_owners: Some(true),
        ..SettingsChange::default()
    };
    // R5: a follower may not change the owner; R3: the new owner must be a member; R24: the
    // record must exist; R2: only an admin manages the account's settings.
    let refused = [
        (by("dee"), change_owner(c("c1"), Some("dee"))),
        (by("bob"), change_owner(c("c1"), Some("zed"))),
        (by("ann"), change_owner(c("nope"), Some("bob"))),
    ];
    for (actor, payload) in refused {
        same_refusal(&acme, &store, actor, payload).await;
    }
    same_refusal(&acme, &store, by("bob"), ChangeSettings { change }).await;
    service.stop().await;
}

/// A dry run of `payload` and its real send are refused alike, and neither appends (R24).
async fn same_refusal<P: CommandPayload + Clone>(
    acme: &Account,
    store: &JetStreamStore,
    actor: Actor,
    payload: P,
) {
    let before = head(store).await;
    let request = acme.command(actor, payload);
    let dry = refusal(request.clone().dry_run().await);
    let real = refusal(request.await);
    let (
        Error::Refused {
            code,
            message,
            reason,
            ..
        },
        Error::Refused {
            code: real_code,
            message: real_message,
            reason: real_reason,
            ..
        },
    ) = (&dry, &real)
    else {
        unreachable!("refusal() returns refusals");
    };
    assert_eq!(
        (code, message, reason),
        (real_code, real_message, real_reason)
    );
    assert_eq!(head(store).await, before, "{}: nothing appended", P::NAME);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r24_a_dry_run_is_not_remembered_but_sees_what_its_id_already_did() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    open_team(&acme, TEAM).await;
    acme.command(by("bob"), new_contact("c1", Some("bob"), NONE))
        .await
        .unwrap();
    let store = history(&server).await;

    // Refused as a dry run (R3: eve is no member yet); once eve is registered, the same id sent
    // for real is decided afresh and applied: the dry run's refusal was not remembered.
    let request = acme.command(by("bob"), change_owner(c("c1"), Some("eve")));
    let dry = refusal(request.clone().dry_run().await);
    assert_eq!(
        dry.code(),
        Some(followers_shared::error::ErrorCode::UnknownUser)
    );
    acme.command(system(), member("eve", "user", "all"))
        .await
        .unwrap();
    let real = request.clone().await.unwrap();
    assert!(!real.replayed() && !real.events().is_empty(), "{real:?}");

    // The id has appended: a dry run of it gets what a real send would, the replay, and
    // appends nothing.
    let before = head(&store).await;
    let again = request.dry_run().await.unwrap();
    assert!(again.replayed() && again.dry_run(), "{again:?}");
    assert_eq!(again.position(), real.position());
    assert_eq!(
        again.events(),
        real.events(),
        "the stored events, as they are"
    );
    assert_eq!(head(&store).await, before);
    service.stop().await;
}

/// One access change, written `[user, record, action, before, after]`, each decision as
/// `allowed:reason` or `denied:reason`.
type Change = [String; 5];

/// The access preview of a dry run's reply: its total, whether it is truncated, its changes.
fn changes(reply: &Reply) -> (usize, bool, Vec<Change>) {
    let preview = reply.access_changes.as_ref().expect("a preview");
    let decision = |d: &AccessDecision| {
        let verdict = if d.allowed { "allowed" } else { "denied" };
        format!("{verdict}:{}", d.reason)
    };
    let listed = preview
        .changes
        .iter()
        .map(|c| {
            [
                c.user.to_string(),
                c.record.to_string(),
                c.action.to_string(),
                decision(&c.before),
                decision(&c.after),
            ]
        })
        .collect();
    (preview.total.expect("compared"), preview.truncated, listed)
}

/// One expected change.
fn change(user: &str, record: &str, action: &str, before: &str, after: &str) -> Change {
    [user, record, action, before, after].map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_of_change_owner_shows_the_old_owner_losing_and_the_new_owner_gaining() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    open_team(&acme, TEAM).await;
    acme.command(by("bob"), new_contact("c1", Some("bob"), NONE))
        .await
        .unwrap();
    // R6: o1 takes its contact's owner, bob.
    acme.command(by("bob"), new_opportunity("o1", "c1", None, NONE))
        .await
        .unwrap();
    let store = history(&server).await;
    let before = head(&store).await;

    // R5: bob passes c1 on to dee. Both have data scope only_assigned (R20): bob loses c1 but
    // keeps o1, which he owns; dee gains c1 as its owner, and o1 through its contact (R20's
    // contact access), all but change_owner (R5).
    let dry = acme
        .command(by("bob"), change_owner(c("c1"), Some("dee")))
        .dry_run()
        .await
        .unwrap();
    let (owner, not_assigned, contact_owner) = (
        "allowed:owner",
        "denied:not_assigned",
        "allowed:contact_owner",
    );
    let mut expected = Vec::new();
    for action in ["view", "edit", "manage_followers", "change_owner"] {
        expected.push(change("bob", "contact c1", action, owner, not_assigned));
        expected.push(change("dee", "contact c1", action, not_assigned, owner));
    }
    for action in ["view", "edit", "manage_followers"] {
        expected.push(change(
            "dee",
            "opportunity o1",
            action,
            not_assigned,
            contact_owner,
        ));
    }
    expected.sort_by_key(|[u, r, a, ..]| (r.clone(), u.clone(), order(a)));
    assert_eq!(changes(&dry), (11, false, expected));
    assert_eq!(head(&store).await, before, "a dry run appends nothing");
    service.stop().await;
}

/// An action's place in the preview's order (R19's order).
fn order(action: &str) -> usize {
    ["view", "edit", "manage_followers", "change_owner"]
        .iter()
        .position(|a| *a == action)
        .expect("an action")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_of_deactivate_member_shows_that_member_losing_access_capped_at_100() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    open_team(&acme, TEAM).await;
    acme.command(by("bob"), new_contact("c01", Some("bob"), &["dee"]))
        .await
        .unwrap();
    acme.command(by("ann"), new_contact("c02", Some("dee"), NONE))
        .await
        .unwrap();
    for i in 3..=30 {
        let contact = new_contact(&format!("c{i:02}"), None, NONE);
        acme.command(by("ann"), contact).await.unwrap();
    }

    // R3, R20: deactivated, dee is denied everything, as `inactive`: what dee follows (c01:
    // all but change_owner, R5) and what dee owns (c02).
    let dee = followers_tests::typed::uid("dee");
    let dry = acme
        .command(system(), DeactivateMember { user: dee })
        .dry_run()
        .await
        .unwrap();
    let mut expected = Vec::new();
    for action in ["view", "edit", "manage_followers"] {
        expected.push(change(
            "dee",
            "contact c01",
            action,
            "allowed:follower",
            "denied:inactive",
        ));
    }
    for action in ["view", "edit", "manage_followers", "change_owner"] {
        expected.push(change(
            "dee",
            "contact c02",
            action,
            "allowed:owner",
            "denied:inactive",
        ));
    }
    assert_eq!(changes(&dry), (7, false, expected));

    // cid (data scope all) sees all 30 contacts, and may change the owner of the 28 unassigned
    // ones (R5): 118 changes, of which the first 100 are listed.
    let cid = followers_tests::typed::uid("cid");
    let dry = acme
        .command(by("ann"), DeactivateMember { user: cid })
        .dry_run()
        .await
        .unwrap();
    let (total, truncated, listed) = changes(&dry);
    assert_eq!((total, truncated, listed.len()), (118, true, 100));
    let first = change(
        "cid",
        "contact c01",
        "view",
        "allowed:all_data",
        "denied:inactive",
    );
    assert_eq!(listed[0], first);
    assert_eq!(dry.access_changes.as_ref().unwrap().pairs, 30);
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_of_change_settings_compares_every_member_on_every_record() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    open_team(&acme, TEAM).await;
    acme.command(by("bob"), new_contact("c1", Some("bob"), NONE))
        .await
        .unwrap();
    acme.command(by("bob"), new_opportunity("o1", "c1", None, NONE))
        .await
        .unwrap();
    acme.command(by("cid"), new_contact("c2", Some("cid"), &["dee"]))
        .await
        .unwrap();
    acme.command(by("cid"), new_opportunity("o2", "c2", None, NONE))
        .await
        .unwrap();

    // R20: without contact access to opportunities, dee (only_assigned) no longer sees o2 as a
    // follower of c2; bob owns o1 himself; ann and cid see everything anyway.
    let settings = SettingsChange {
        contact_access_includes_opportunities: Some(false),
        ..SettingsChange::default()
    };
    let dry = acme
        .command(by("ann"), ChangeSettings { change: settings })
        .dry_run()
        .await
        .unwrap();
    let mut expected = Vec::new();
    for action in ["view", "edit", "manage_followers"] {
        let (was, will) = ("allowed:contact_follower", "denied:not_assigned");
        expected.push(change("dee", "opportunity o2", action, was, will));
    }
    assert_eq!(changes(&dry), (3, false, expected));
    assert_eq!(
        dry.access_changes.as_ref().unwrap().pairs,
        4 * 4,
        "4 members, 4 records"
    );
    service.stop().await;
}

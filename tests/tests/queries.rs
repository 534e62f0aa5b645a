#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: read models over NATS and HTTP against a real nats-server, fed by the command
//! service; requests over NATS through the typed client (`followers-client`).
//! Rule numbers refer to docs/rules.md.

use followers_client::{Account, system};
use followers_shared::access::{Action, Reason};
use followers_shared::command::{ChangeSettings, DeactivateMember, OpenAccount};
use followers_shared::error::ErrorCode;
use followers_shared::model::{RecordRef, SettingsChange};
use followers_shared::store::Position;
use followers_shared::wire::{
    AccessAnswer, AccessCheck, CheckAccessBatch, FollowersAnswer, FollowersQuery, QueryReply,
    RecordsOfUser,
};
use followers_tests::NatsServer;
use followers_tests::client::{self, Followers};
use followers_tests::stack::{
    contact_ref as c, opportunity_ref as o, start_command_service, start_projection_service,
};
use followers_tests::typed::{
    NONE, account, add, by, by_workflow, code, new_opportunity, remove, small_account, uid,
};
use serde_json::{Value, json};

/// `check_access` from a model at `at` or later.
async fn check(
    f: &Account,
    who: &str,
    action: Action,
    record: &RecordRef,
    at: Position,
) -> AccessAnswer {
    let answer = f.at_least(at).check_access(&uid(who), action, record).await;
    answer.unwrap().into_inner()
}

/// `change_settings` with `change` by ann; the position of its commit.
async fn settings(acme: &Account, change: SettingsChange) -> Position {
    let changed = acme.command(by("ann"), ChangeSettings { change }).await;
    changed.unwrap().position()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r20_r21_access_answers_carry_every_reason() {
    use Action::{ChangeOwner, Edit, ManageFollowers, View};
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &[]).await;
    let f = account(&server, "acme").await;
    let at = small_account(&f).await;
    let cases: &[(&str, Action, RecordRef, bool, Reason)] = &[
        ("ann", ChangeOwner, c("c1"), true, Reason::Admin),
        ("cid", Edit, c("c1"), true, Reason::AllData),
        ("bob", View, c("c1"), true, Reason::Owner),
        ("bob", ChangeOwner, c("c1"), true, Reason::Owner),
        ("dee", Edit, c("c1"), true, Reason::Follower),
        ("eve", ManageFollowers, o("o1"), true, Reason::Follower),
        ("dee", View, o("o1"), true, Reason::ContactFollower),
        ("fay", View, c("c1"), false, Reason::NotAssigned),
        (
            "dee",
            ChangeOwner,
            c("c1"),
            false,
            Reason::OwnerChangeNotAllowed,
        ),
        (
            "cid",
            ChangeOwner,
            c("c1"),
            false,
            Reason::OwnerChangeNotAllowed,
        ),
        ("cid", ChangeOwner, c("c2"), true, Reason::AllData),
        ("ann", View, c("nope"), false, Reason::UnknownRecord),
        ("zed", View, c("c1"), false, Reason::NoMembership),
    ];
    for (who, action, record, allowed, reason) in cases {
        let a = check(&f, who, *action, record, at).await;
        assert_eq!(
            (a.allowed, a.reason),
            (*allowed, *reason),
            "{who} {action:?} {record:?}"
        );
    }
    // contact_owner: bob owns c1, and a new opportunity o2 gets another owner once decoupled.
    let decoupled = SettingsChange {
        allow_different_owners: Some(true),
        ..SettingsChange::default()
    };
    settings(&f, decoupled).await;
    let o2 = new_opportunity("o2", "c1", Some("cid"), NONE);
    let at = f.command(by("ann"), o2).await.unwrap().position();
    let a = check(&f, "bob", Edit, &o("o2"), at).await;
    assert_eq!((a.allowed, a.reason), (true, Reason::ContactOwner));
    // The setting off: contact access no longer reaches opportunities (R20).
    let narrow = SettingsChange {
        contact_access_includes_opportunities: Some(false),
        ..SettingsChange::default()
    };
    let at = settings(&f, narrow).await;
    let a = check(&f, "bob", Edit, &o("o2"), at).await;
    assert_eq!((a.allowed, a.reason), (false, Reason::NotAssigned));
    // inactive (R3).
    let dee = DeactivateMember { user: uid("dee") };
    let at = f.command(by("ann"), dee).await.unwrap().position();
    let a = check(&f, "dee", View, &c("c1"), at).await;
    assert_eq!((a.allowed, a.reason), (false, Reason::Inactive));
    projection.stop().await;
    commands.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_cross_account_queries_answer_no_membership() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    let at = small_account(&acme).await;
    let globex = account(&server, "globex").await;
    let open = OpenAccount {
        name: followers_shared::bounded::Text::new("Globex").unwrap(),
        settings: Default::default(),
    };
    let r = globex.command(system(), open).await.unwrap();
    let at = at.max(r.position());
    // bob owns c1 in acme; asked in globex, he has no membership there.
    let a = check(&globex, "bob", Action::View, &c("c1"), at).await;
    assert_eq!((a.allowed, a.reason), (false, Reason::NoMembership));
    // And an account that does not exist at all.
    let nowhere = account(&server, "nowhere").await;
    let a = check(&nowhere, "bob", Action::View, &c("c1"), at).await;
    assert_eq!((a.allowed, a.reason), (false, Reason::NoMembership));
    projection.stop().await;
    commands.stop().await;
}

/// The same queries over HTTP as over NATS, a batch as a dashboard sends it, and the probes.
async fn http_answers_the_same(base: &str, at: Position, nats: &FollowersAnswer) {
    let http = reqwest::Client::new();
    let at = at.0;
    let got: QueryReply<FollowersAnswer> = http
        .get(format!(
            "{base}/v1/accounts/acme/records/contact/c1/followers?min_position={at}"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        got.answer.as_ref(),
        Some(nats),
        "HTTP and NATS give the same answer"
    );

    let access: QueryReply<AccessAnswer> = http
        .get(format!("{base}/v1/accounts/acme/access?user=fay&action=edit&kind=contact&id=c1&min_position={at}"))
        .send().await.unwrap().json().await.unwrap();
    assert_eq!(
        access.answer.map(|a| (a.allowed, a.reason)),
        Some((true, Reason::Follower))
    );

    // A batch, as a dashboard rendering a list sends it.
    let checks = ["ann", "bob", "fay", "zed"]
        .iter()
        .map(|u| AccessCheck {
            user: uid(u),
            action: Action::View,
            record: c("c1"),
        })
        .collect();
    let batch = CheckAccessBatch {
        hint: false,
        checks,
        min_position: None,
        at_position: None,
        at_time: None,
    };
    let batch: QueryReply<Vec<AccessAnswer>> = http
        .post(format!("{base}/v1/accounts/acme/access/batch"))
        .json(&batch)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let allowed: Vec<bool> = batch.answer.unwrap().iter().map(|a| a.allowed).collect();
    assert_eq!(allowed, [true, true, true, false]);

    let status = |path: String| {
        let http = http.clone();
        async move { http.get(path).send().await.unwrap().status() }
    };
    let c9 = format!("{base}/v1/accounts/acme/records/contact/c9/followers");
    assert_eq!(status(c9).await, 404);
    assert_eq!(status(format!("{base}/ready")).await, 200);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("followers_events_applied_total"),
        "{metrics}"
    );
}

/// Records a user owns or follows, a page at a time, and a contact's opportunities.
async fn pages_and_opportunities(f: &Account) {
    let bob = |after| RecordsOfUser {
        user: uid("bob"),
        after,
        limit: Some(1),
        min_position: None,
        at_position: None,
        at_time: None,
    };
    let page = f.query(bob(None)).await.unwrap();
    assert_eq!(page.records.len(), 1);
    let next = f.query(bob(page.answer.next)).await.unwrap();
    assert_eq!(next.records.len(), 1, "bob owns c1 and o1");

    let c1 = "c1".parse().unwrap();
    let opps = f.contact_opportunities(&c1).await.unwrap();
    assert_eq!(opps.opportunities.len(), 1);
}

/// Refusals with a stable code: a `min_position` the model never reaches, and (raw on purpose:
/// the typed client cannot write it) a field no query has.
async fn queries_are_refused_with_a_code(f: &Account, raw: &Followers, at: Position) {
    let bad: QueryReply<Value> = raw
        .query(
            "followers",
            json!({"record": client::contact("c1"), "extra": 1}),
        )
        .await;
    assert_eq!(bad.error.unwrap().code, ErrorCode::MalformedRequest);
    let far = FollowersQuery {
        record: c("c1"),
        min_position: Some(Position(at.0 + 1_000_000)),
        at_position: None,
        at_time: None,
    };
    let far = f.query(far).retry(followers_client::Retry::once(
        std::time::Duration::from_secs(30),
    ));
    assert_eq!(code(far.await), ErrorCode::Timeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_with_the_command_token_sees_the_change_and_http_answers_the_same() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &[]).await;
    let f = account(&server, "acme").await;
    small_account(&f).await;
    // Read-your-writes: the add's position, passed as min_position, shows the new follower.
    let added = f
        .command(by_workflow("wf-7"), add(c("c1"), &["fay"]))
        .await
        .unwrap();
    let nats = f.after(&added).followers(&c("c1")).await.unwrap();
    let fay = nats
        .followers
        .iter()
        .find(|x| x.user.as_str() == "fay")
        .expect("fay follows");
    assert_eq!(fay.name.as_deref(), Some("User fay"), "R18: name");
    assert!(fay.active);
    assert_eq!(
        serde_json::to_value(&fay.how).unwrap()["how"],
        "workflow",
        "R18: how"
    );
    assert_eq!(nats.owner.as_ref().unwrap().user.as_str(), "bob");

    let base = format!("http://{}", projection.http_addr);
    http_answers_the_same(&base, added.position(), &nats.answer).await;
    pages_and_opportunities(&f).await;
    let raw = Followers::new(server.client().await, "acme");
    queries_are_refused_with_a_code(&f, &raw, added.position()).await;
    projection.stop().await;
    commands.stop().await;
}

/// R23: a restart from the snapshot answers exactly as a full replay does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_from_snapshot_answers_like_a_full_replay() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("model.snapshot");
    let snap_arg = snap.to_str().unwrap();
    let projection = start_projection_service(&server, &["--snapshot-path", snap_arg]).await;
    let f = account(&server, "acme").await;
    small_account(&f).await;
    let r = f.command(by("ann"), add(o("o1"), &["fay", "cid"])).await;
    let at = r.unwrap().position();
    projection
        .model
        .wait_for(at, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    projection.stop().await; // writes the snapshot
    assert!(snap.exists());

    // More history after the snapshot: the restart must replay it on top.
    let r = f.command(by("ann"), remove(o("o1"), &["eve"])).await;
    let at = r.unwrap().position();
    let from_snapshot = start_projection_service(&server, &["--snapshot-path", snap_arg]).await;
    let full_replay = start_projection_service(&server, &[]).await;
    from_snapshot
        .model
        .wait_for(at, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    full_replay
        .model
        .wait_for(at, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let a = from_snapshot.model.read(|m| m.clone());
    let b = full_replay.model.read(|m| m.clone());
    assert_eq!(a, b, "snapshot + tail == full replay");

    // A snapshot of another format is ignored, never misread.
    from_snapshot.stop().await; // writes a current snapshot, which we then mark as foreign
    let mut foreign = std::fs::read(&snap).unwrap();
    foreign[8..12].copy_from_slice(&999u32.to_le_bytes()); // the header's format
    std::fs::write(&snap, foreign).unwrap();
    let ignored = start_projection_service(&server, &["--snapshot-path", snap_arg]).await;
    ignored
        .model
        .wait_for(at, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(ignored.model.read(|m| m.clone()), b);
    ignored.stop().await;

    // Nor is an old JSON snapshot (format 4) misread: it is not even decoded.
    let old = json!({"format": 4, "event_schema": 1, "position": at.0, "accounts": []});
    std::fs::write(&snap, serde_json::to_vec(&old).unwrap()).unwrap();
    let ignored = start_projection_service(&server, &["--snapshot-path", snap_arg]).await;
    ignored
        .model
        .wait_for(at, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(ignored.model.read(|m| m.clone()), b);
    ignored.stop().await;
    full_replay.stop().await;
    commands.stop().await;
}

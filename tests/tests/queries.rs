#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: read models over NATS and HTTP against a real nats-server, fed by the command
//! service. Rule numbers refer to docs/rules.md.

use followers_shared::access::Reason;
use followers_shared::error::ErrorCode;
use followers_shared::wire::{
    AccessAnswer, ContactOpportunitiesAnswer, FollowersAnswer, QueryReply, RecordsOfUserAnswer,
};
use followers_tests::client::{contact, opportunity, system, user, workflow};
use followers_tests::stack::{ok, open_account, start_command_service, start_projection_service};
use followers_tests::{Followers, NatsServer};
use serde_json::{Value, json};

const MEMBERS: &[(&str, &str, &str)] = &[
    ("ann", "admin", "all"),
    ("bob", "user", "only_assigned"),
    ("cid", "user", "all"),
    ("dee", "user", "only_assigned"),
    ("eve", "user", "only_assigned"),
    ("fay", "user", "only_assigned"),
];

/// A small account: contact c1 owned by bob, followed by dee; opportunity o1 of c1 owned by bob
/// (coupled), followed by eve; contact c2 unassigned.
async fn scenario(f: &Followers) -> u64 {
    open_account(f, MEMBERS).await;
    ok(
        f,
        "create_contact",
        user("ann"),
        json!({"contact": "c1", "owner": "bob", "followers": ["dee"]}),
    )
    .await;
    ok(
        f,
        "create_opportunity",
        user("ann"),
        json!({"opportunity": "o1", "contact": "c1", "followers": ["eve"]}),
    )
    .await;
    let r = ok(f, "create_contact", user("ann"), json!({"contact": "c2"})).await;
    r.position.unwrap().0
}

async fn check(f: &Followers, who: &str, action: &str, record: Value, at: u64) -> AccessAnswer {
    let r: QueryReply<AccessAnswer> = f
        .query(
            "check_access",
            json!({"user": who, "action": action, "record": record, "min_position": at}),
        )
        .await;
    assert!(r.ok, "{r:?}");
    r.answer.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r20_r21_access_answers_carry_every_reason() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &[]).await;
    let f = Followers::new(server.client().await, "acme");
    let at = scenario(&f).await;
    let cases: &[(&str, &str, Value, bool, Reason)] = &[
        ("ann", "change_owner", contact("c1"), true, Reason::Admin),
        ("cid", "edit", contact("c1"), true, Reason::AllData),
        ("bob", "view", contact("c1"), true, Reason::Owner),
        ("bob", "change_owner", contact("c1"), true, Reason::Owner),
        ("dee", "edit", contact("c1"), true, Reason::Follower),
        (
            "eve",
            "manage_followers",
            opportunity("o1"),
            true,
            Reason::Follower,
        ),
        (
            "dee",
            "view",
            opportunity("o1"),
            true,
            Reason::ContactFollower,
        ),
        ("fay", "view", contact("c1"), false, Reason::NotAssigned),
        (
            "dee",
            "change_owner",
            contact("c1"),
            false,
            Reason::OwnerChangeNotAllowed,
        ),
        (
            "cid",
            "change_owner",
            contact("c1"),
            false,
            Reason::OwnerChangeNotAllowed,
        ),
        ("cid", "change_owner", contact("c2"), true, Reason::AllData),
        ("ann", "view", contact("nope"), false, Reason::UnknownRecord),
        ("zed", "view", contact("c1"), false, Reason::NoMembership),
    ];
    for (who, action, record, allowed, reason) in cases {
        let a = check(&f, who, action, record.clone(), at).await;
        assert_eq!(
            (a.allowed, a.reason),
            (*allowed, *reason),
            "{who} {action} {record}"
        );
    }
    // contact_owner: bob owns c1, and a new opportunity o2 gets another owner once decoupled.
    ok(
        &f,
        "change_settings",
        user("ann"),
        json!({"allow_different_owners": true}),
    )
    .await;
    let r = ok(
        &f,
        "create_opportunity",
        user("ann"),
        json!({"opportunity": "o2", "contact": "c1", "owner": "cid"}),
    )
    .await;
    let at = r.position.unwrap().0;
    let a = check(&f, "bob", "edit", opportunity("o2"), at).await;
    assert_eq!((a.allowed, a.reason), (true, Reason::ContactOwner));
    // The setting off: contact access no longer reaches opportunities (R20).
    let r = ok(
        &f,
        "change_settings",
        user("ann"),
        json!({"contact_access_includes_opportunities": false}),
    )
    .await;
    let a = check(&f, "bob", "edit", opportunity("o2"), r.position.unwrap().0).await;
    assert_eq!((a.allowed, a.reason), (false, Reason::NotAssigned));
    // inactive (R3).
    let r = ok(&f, "deactivate_member", user("ann"), json!({"user": "dee"})).await;
    let a = check(&f, "dee", "view", contact("c1"), r.position.unwrap().0).await;
    assert_eq!((a.allowed, a.reason), (false, Reason::Inactive));
    projection.stop().await;
    commands.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_cross_account_queries_answer_no_membership() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &[]).await;
    let acme = Followers::new(server.client().await, "acme");
    let at = scenario(&acme).await;
    let globex = acme.for_account("globex");
    let r = ok(&globex, "open_account", system(), json!({"name": "Globex"})).await;
    let at = at.max(r.position.unwrap().0);
    // bob owns c1 in acme; asked in globex, he has no membership there.
    let a = check(&globex, "bob", "view", contact("c1"), at).await;
    assert_eq!((a.allowed, a.reason), (false, Reason::NoMembership));
    // And an account that does not exist at all.
    let a = check(
        &acme.for_account("nowhere"),
        "bob",
        "view",
        contact("c1"),
        at,
    )
    .await;
    assert_eq!((a.allowed, a.reason), (false, Reason::NoMembership));
    projection.stop().await;
    commands.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_with_the_command_token_sees_the_change_and_http_answers_the_same() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &[]).await;
    let f = Followers::new(server.client().await, "acme");
    scenario(&f).await;
    // Read-your-writes: the add's position, passed as min_position, shows the new follower.
    let r = ok(
        &f,
        "add_followers",
        workflow("wf-7"),
        json!({"record": contact("c1"), "users": ["fay"]}),
    )
    .await;
    let at = r.position.unwrap().0;
    let nats: QueryReply<FollowersAnswer> = f
        .query(
            "followers",
            json!({"record": contact("c1"), "min_position": at}),
        )
        .await;
    let answer = nats.answer.clone().unwrap();
    let fay = answer
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
    assert_eq!(answer.owner.as_ref().unwrap().user.as_str(), "bob");

    let http = reqwest::Client::new();
    let base = format!("http://{}", projection.http_addr);
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
        got.answer, nats.answer,
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
    let checks: Vec<Value> = ["ann", "bob", "fay", "zed"]
        .iter()
        .map(|u| json!({"user": u, "action": "view", "record": contact("c1")}))
        .collect();
    let batch: QueryReply<Vec<AccessAnswer>> = http
        .post(format!("{base}/v1/accounts/acme/access/batch"))
        .json(&json!({"checks": checks}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let allowed: Vec<bool> = batch.answer.unwrap().iter().map(|a| a.allowed).collect();
    assert_eq!(allowed, [true, true, true, false]);

    // Records a user owns or follows, a page at a time.
    let page: QueryReply<RecordsOfUserAnswer> = f
        .query("records_of_user", json!({"user": "bob", "limit": 1}))
        .await;
    let page = page.answer.unwrap();
    assert_eq!(page.records.len(), 1);
    let next: QueryReply<RecordsOfUserAnswer> = f
        .query(
            "records_of_user",
            json!({"user": "bob", "limit": 1, "after": page.next}),
        )
        .await;
    assert_eq!(next.answer.unwrap().records.len(), 1, "bob owns c1 and o1");

    let opps: QueryReply<ContactOpportunitiesAnswer> = f
        .query("contact_opportunities", json!({"contact": "c1"}))
        .await;
    assert_eq!(opps.answer.unwrap().opportunities.len(), 1);

    // Bad input: a stable code, over both transports.
    let bad: QueryReply<Value> = f
        .query("followers", json!({"record": contact("c1"), "extra": 1}))
        .await;
    assert_eq!(bad.error.unwrap().code, ErrorCode::MalformedRequest);
    let status = http
        .get(format!(
            "{base}/v1/accounts/acme/records/contact/c9/followers"
        ))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    let far: QueryReply<Value> = f
        .query(
            "followers",
            json!({"record": contact("c1"), "min_position": at + 1_000_000}),
        )
        .await;
    assert_eq!(far.error.unwrap().code, ErrorCode::Timeout);
    assert_eq!(
        http.get(format!("{base}/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
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
    projection.stop().await;
    commands.stop().await;
}

/// R23: a restart from the snapshot answers exactly as a full replay does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_from_snapshot_answers_like_a_full_replay() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("model.json");
    let snap_arg = snap.to_str().unwrap();
    let projection = start_projection_service(&server, &["--snapshot-path", snap_arg]).await;
    let f = Followers::new(server.client().await, "acme");
    scenario(&f).await;
    let r = ok(
        &f,
        "add_followers",
        user("ann"),
        json!({"record": opportunity("o1"), "users": ["fay", "cid"]}),
    )
    .await;
    let at = r.position.unwrap();
    projection
        .model
        .wait_for(at, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    projection.stop().await; // writes the snapshot
    assert!(snap.exists());

    // More history after the snapshot: the restart must replay it on top.
    let r = ok(
        &f,
        "remove_followers",
        user("ann"),
        json!({"record": opportunity("o1"), "users": ["eve"]}),
    )
    .await;
    let at = r.position.unwrap();
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
    let mut foreign: Value = serde_json::from_slice(&std::fs::read(&snap).unwrap()).unwrap();
    foreign["format"] = json!(999);
    std::fs::write(&snap, serde_json::to_vec(&foreign).unwrap()).unwrap();
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

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The audit tool against a real nats-server and command service: point-in-time answers,
//! timelines, tamper detection, and export/import (R22, R23).

use std::time::Duration;

use async_nats::jetstream;
use followers_audit::AuditError;
use followers_audit::progress::Progress;
use followers_audit::source::{self, History, Range};
use followers_audit::state::{
    AtQuery, Moment, RecordAt, commit_time, record_at, replay, replay_into,
};
use followers_audit::timeline::{Subject, timeline};
use followers_audit::transfer::{export, import};
use followers_audit::verify::{self, Options, ProblemKind};
use followers_client::{Account, CommandPayload};
use followers_shared::access::{Action, Reason};
use followers_shared::command::ChangeSettings;
use followers_shared::event::EventBody;
use followers_shared::ids::UserId;
use followers_shared::model::SettingsChange;
use followers_shared::model::{AddedHow, RecordRef};
use followers_shared::read_model::{Chains, ReadModel, Snapshot};
use followers_shared::store::{EventStore, Position, StoredCommit, StreamId};
use followers_store::{JetStreamStore, MemoryStore};
use followers_tests::NatsServer;
use followers_tests::stack::{history, open_team, start_command_service, start_projection_service};
use followers_tests::typed::{
    NONE, account, add, by, change_owner, new_contact, new_opportunity, remove,
};

use followers_tests::stack::TEAM as MEMBERS;

use followers_tests::stack::{contact_ref as c, opportunity_ref as o};

fn u(id: &str) -> UserId {
    id.parse().unwrap()
}

fn c1_stream() -> StreamId {
    StreamId::record("acme".parse().unwrap(), c("c1"))
}

async fn read_all<S: EventStore>(store: &S) -> History {
    source::read(store, Range::ALL, &Progress::hidden())
        .await
        .unwrap()
}

/// Polls the history until `check` holds, for at most 20 s: for effects of the follower sync.
async fn eventually_in_history(
    store: &JetStreamStore,
    what: &str,
    check: impl Fn(&History) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if check(&read_all(store).await) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn has_event(
    h: &History,
    stream: &StreamId,
    pred: impl Fn(&EventBody) -> bool,
) -> Option<Position> {
    h.commits
        .iter()
        .find(|s| &s.stream == stream && s.commit.events.iter().any(|e| pred(&e.body)))
        .map(|s| s.position)
}

/// Positions of the scripted changes to contact c1.
#[derive(Debug)]
struct Script {
    created: Position,
    dee_added: Position,
    owner_changed_o1: Position,
    cid_synced: Position,
    owner_changed_c1: Position,
    dee_removed: Position,
}

/// Sends `payload` by `who`, which must succeed; its position.
async fn ok<P: CommandPayload>(f: &Account, who: &str, payload: P) -> Position {
    f.command(by(who), payload).await.unwrap().position()
}

/// Owner changes, a sync and removals on contact c1 (owners decoupled, R8 on).
async fn scripted(server: &NatsServer) -> Script {
    let f = account(server, "acme").await;
    open_team(&f, MEMBERS).await;
    let change = SettingsChange {
        allow_different_owners: Some(true),
        sync_contact_follower_with_opportunity_owner: Some(true),
        ..SettingsChange::default()
    };
    ok(&f, "ann", ChangeSettings { change }).await;
    let created = ok(&f, "ann", new_contact("c1", Some("bob"), NONE)).await;
    ok(&f, "ann", new_opportunity("o1", "c1", None, NONE)).await;
    let store = history(server).await;
    // R10: bob already owns c1, so the sync records a skip.
    eventually_in_history(&store, "the sync skips bob", |h| {
        has_event(h, &c1_stream(), |b| {
            matches!(b, EventBody::FollowerSyncSkipped { .. })
        })
        .is_some()
    })
    .await;
    let dee_added = ok(&f, "bob", add(c("c1"), &["dee"])).await;
    let owner_changed_o1 = ok(&f, "ann", change_owner(o("o1"), Some("cid"))).await;
    // R8: cid now follows c1, added by the sync.
    eventually_in_history(&store, "the sync adds cid to c1", |h| {
        has_event(h, &c1_stream(), |b| matches!(b, EventBody::FollowersAdded { followers, .. } if followers[0].user.as_str() == "cid")).is_some()
    })
    .await;
    let cid_synced = has_event(&read_all(&store).await, &c1_stream(), |b| {
        matches!(b, EventBody::FollowersAdded { followers, .. } if followers[0].user.as_str() == "cid")
    })
    .unwrap();
    let owner_changed_c1 = ok(&f, "ann", change_owner(c("c1"), Some("cid"))).await;
    let dee_removed = ok(&f, "cid", remove(c("c1"), &["dee"])).await;
    Script {
        created,
        dee_added,
        owner_changed_o1,
        cid_synced,
        owner_changed_c1,
        dee_removed,
    }
}

fn at(h: &History, record: RecordRef, moment: Moment) -> Result<RecordAt, AuditError> {
    record_at(
        h,
        &AtQuery {
            account: "acme".parse().unwrap(),
            record,
            moment,
            user: None,
        },
    )
}

fn at_pos(h: &History, record: RecordRef, p: Position) -> RecordAt {
    at(h, record, Moment::Position(p)).unwrap()
}

fn before(p: Position) -> Position {
    Position(p.0 - 1)
}

fn owner(r: &RecordAt) -> Option<&str> {
    r.owner.as_ref().map(|u| u.as_str())
}

fn followers(r: &RecordAt) -> Vec<&str> {
    r.followers.iter().map(|f| f.user.as_str()).collect()
}

fn may(r: &RecordAt, who: &str, action: Action) -> (bool, Reason) {
    let d = r
        .access
        .iter()
        .find(|a| a.user.as_str() == who)
        .and_then(|a| a.decision(action))
        .unwrap_or_else(|| panic!("no decision for {who}"));
    (d.allowed, d.reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_answers_before_and_after_each_change() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let s = scripted(&server).await;
    service.stop().await;
    let h = read_all(&history(&server).await).await;

    // Before the contact exists, and a contact that never existed.
    match at(&h, c("c1"), Moment::Position(before(s.created))) {
        Err(AuditError::NotYetCreated { created, .. }) => assert_eq!(created, s.created.0),
        other => panic!("expected not-yet-created, got {other:?}"),
    }
    assert!(matches!(
        at(&h, c("c9"), Moment::Position(s.created)),
        Err(AuditError::Unknown { .. })
    ));

    // Created: bob owns it; dee (only assigned) cannot see it; cid (all data) can.
    let r = at_pos(&h, c("c1"), s.created);
    assert_eq!(owner(&r), Some("bob"));
    assert!(followers(&r).is_empty());
    assert_eq!(may(&r, "bob", Action::ChangeOwner), (true, Reason::Owner));
    assert_eq!(may(&r, "dee", Action::View), (false, Reason::NotAssigned));
    assert_eq!(may(&r, "cid", Action::View), (true, Reason::AllData));
    assert_eq!(r.access.len(), 4, "every member");

    // dee added by bob, manually: now dee may view, not change the owner.
    let r = at_pos(&h, c("c1"), before(s.dee_added));
    assert!(followers(&r).is_empty());
    let r = at_pos(&h, c("c1"), s.dee_added);
    assert_eq!(followers(&r), ["dee"]);
    assert_eq!(r.followers[0].how, AddedHow::Manual);
    assert_eq!(
        r.followers[0].added_by.user().map(|u| u.as_str()),
        Some("bob")
    );
    assert_eq!(may(&r, "dee", Action::View), (true, Reason::Follower));
    assert_eq!(
        may(&r, "dee", Action::ChangeOwner),
        (false, Reason::OwnerChangeNotAllowed)
    );

    // The owner of o1 changes to cid; the sync then adds cid to c1 (R8).
    assert!(s.owner_changed_o1 < s.cid_synced);
    let r = at_pos(&h, c("c1"), before(s.cid_synced));
    assert_eq!(followers(&r), ["dee"]);
    let r = at_pos(&h, c("c1"), s.cid_synced);
    assert_eq!(followers(&r), ["dee", "cid"]);
    assert_eq!(r.followers[1].how, AddedHow::OwnerSync { from: o("o1") });
    let o1 = at_pos(&h, o("o1"), s.owner_changed_o1);
    assert_eq!(owner(&o1), Some("cid"));
    assert_eq!(
        owner(&at_pos(&h, o("o1"), before(s.owner_changed_o1))),
        Some("bob")
    );

    // c1 changes owner to cid: bob loses access, cid gains the owner's rights.
    let r = at_pos(&h, c("c1"), before(s.owner_changed_c1));
    assert_eq!(owner(&r), Some("bob"));
    assert_eq!(may(&r, "bob", Action::Edit), (true, Reason::Owner));
    let r = at_pos(&h, c("c1"), s.owner_changed_c1);
    assert_eq!(owner(&r), Some("cid"));
    assert_eq!(may(&r, "bob", Action::Edit), (false, Reason::NotAssigned));
    assert_eq!(may(&r, "cid", Action::ChangeOwner), (true, Reason::Owner));

    // dee removed: dee cannot see it any more.
    let r = at_pos(&h, c("c1"), before(s.dee_removed));
    assert_eq!(may(&r, "dee", Action::View), (true, Reason::Follower));
    let r = at_pos(&h, c("c1"), s.dee_removed);
    assert_eq!(followers(&r), ["cid"]);
    assert_eq!(may(&r, "dee", Action::View), (false, Reason::NotAssigned));

    // By time: the commit's own time includes it, a moment earlier does not.
    let commit = h
        .commits
        .iter()
        .find(|c| c.position == s.dee_removed)
        .unwrap();
    let t = commit_time(commit).unwrap();
    let r = at(&h, c("c1"), Moment::Time(t)).unwrap();
    assert_eq!(r.position, s.dee_removed);
    assert_eq!(followers(&r), ["cid"]);
    let r = at(
        &h,
        c("c1"),
        Moment::Time(t - chrono::Duration::microseconds(1)),
    )
    .unwrap();
    assert!(r.position < s.dee_removed);
    assert_eq!(followers(&r), ["dee", "cid"]);
    // Before the history begins, and past its end.
    let first = commit_time(&h.commits[0]).unwrap();
    assert!(matches!(
        at(
            &h,
            c("c1"),
            Moment::Time(first - chrono::Duration::seconds(1))
        ),
        Err(AuditError::BeforeHistory { .. })
    ));
    assert!(matches!(
        at(&h, c("c1"), Moment::Position(Position(h.head.0 + 1))),
        Err(AuditError::OutsideHistory { .. })
    ));

    // One user only, even one who is not a member.
    let r = record_at(
        &h,
        &AtQuery {
            account: "acme".parse().unwrap(),
            record: c("c1"),
            moment: Moment::Position(s.dee_removed),
            user: Some(u("zed")),
        },
    )
    .unwrap();
    assert_eq!(r.access.len(), 1);
    assert_eq!(may(&r, "zed", Action::View), (false, Reason::NoMembership));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_names_actor_command_and_the_trigger_of_a_sync() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let s = scripted(&server).await;
    service.stop().await;
    let h = read_all(&history(&server).await).await;

    let entries = timeline(&h.commits, &Subject::Stream(c1_stream())).unwrap();
    assert!(entries.iter().all(|e| e.stream == "acme.contact.c1"));
    assert!(entries.windows(2).all(|w| w[0].position <= w[1].position));
    let synced = entries
        .iter()
        .find(|e| e.position == s.cid_synced.0)
        .unwrap();
    assert_eq!(synced.kind, "followers_added");
    let cause = synced.cause.as_ref().expect("a sync names its trigger");
    assert_eq!(cause.event.as_deref(), Some("owner_changed"));
    assert_eq!(cause.stream.as_deref(), Some("acme.opportunity.o1"));
    assert_eq!(cause.position, Some(s.owner_changed_o1.0));
    let removed = entries
        .iter()
        .find(|e| e.position == s.dee_removed.0)
        .unwrap();
    assert_eq!(removed.actor.user().map(|u| u.as_str()), Some("cid"));
    assert!(removed.cause.is_none());
    let stored = h
        .commits
        .iter()
        .find(|c| c.position == s.dee_removed)
        .unwrap();
    assert_eq!(removed.command_id, stored.commit.command_id);

    // Everything dee did or was given: registered, added, removed; nothing else.
    let dee = timeline(
        &h.commits,
        &Subject::User {
            user: u("dee"),
            account: None,
        },
    )
    .unwrap();
    let kinds: Vec<&str> = dee.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        ["member_registered", "followers_added", "followers_removed"]
    );
    // bob: registered, owner of c1 and o1, the skip, added dee, lost c1 and o1.
    let bob = timeline(
        &h.commits,
        &Subject::User {
            user: u("bob"),
            account: None,
        },
    )
    .unwrap();
    assert!(bob.iter().any(|e| e.kind == "follower_sync_skipped"));
    assert!(
        bob.iter()
            .any(|e| e.kind == "followers_added" && e.actor.user() == Some(&u("bob")))
    );
    assert!(matches!(
        timeline(
            &h.commits,
            &Subject::User {
                user: u("zed"),
                account: None
            }
        ),
        Err(AuditError::Unknown { .. })
    ));
}

/// Publishes `commit` to `stream`'s history subject directly, as someone with access to NATS
/// but not going through the command service.
async fn publish_behind_the_service(
    server: &NatsServer,
    stream: &StreamId,
    commit: &followers_shared::store::Commit,
) {
    let js = jetstream::new(server.client().await);
    let [a, k, i] = stream.tokens();
    js.publish(
        format!("followers.history.{a}.{k}.{i}"),
        commit.encode().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_on_the_service_history_and_matches_the_projection_snapshot() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("projection.snapshot");
    let projection =
        start_projection_service(&server, &["--snapshot-path", path.to_str().unwrap()]).await;
    scripted(&server).await;
    service.stop().await;
    let store = history(&server).await;
    let h = read_all(&store).await;
    projection
        .model
        .wait_for(h.head, Duration::from_secs(20))
        .await
        .unwrap();
    // The projection's live model is what the audit's replay gives (R23), replayed as the
    // projection does: without the streams' chain values, which only the command service keeps.
    let live = projection.model.read(|m| m.to_snapshot());
    assert_eq!(live.chains, Chains::Dropped);
    let replayed = replay_into(ReadModel::with_chains(Chains::Dropped), &h, h.head);
    assert_eq!(replayed.to_snapshot(), live);
    projection.stop().await;

    let snapshot = verify::load_snapshot(&path).unwrap();
    assert_eq!(snapshot.position, h.head);
    let report = verify::verify(&h, Some(&snapshot), Options::default(), &Progress::hidden());
    assert!(report.ok(), "{report:?}");
    assert_eq!(
        report.sealed,
        h.commits.len(),
        "the service seals every commit"
    );
    assert_eq!(report.commits, h.commits.len());

    // A snapshot that disagrees with the history is reported.
    let mut changed: Snapshot = snapshot.clone();
    let account = changed
        .accounts
        .iter_mut()
        .find(|a| a.account.as_str() == "acme")
        .unwrap();
    let mut c1 = account.records.get(&c("c1")).unwrap().to_entry();
    c1.state.owner = Some(u("dee"));
    account.records.insert(c("c1"), c1);
    let report = verify::verify(&h, Some(&changed), Options::default(), &Progress::hidden());
    assert!(report.has(ProblemKind::SnapshotDiffers), "{report:?}");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.stream.as_deref() == Some("acme.contact.c1"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_detects_a_commit_altered_behind_the_service() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let s = scripted(&server).await;
    service.stop().await;
    let store = history(&server).await;
    assert!(
        verify::verify(
            &read_all(&store).await,
            None,
            Options::default(),
            &Progress::hidden()
        )
        .ok()
    );

    // A copy of the removal of dee, altered to remove cid instead, chain value kept.
    let original = store.read_at(s.dee_removed).await.unwrap().unwrap();
    let mut altered = original.commit.clone();
    altered.command_id = followers_shared::ids::CommandId::new();
    if let EventBody::FollowersRemoved { users, .. } = &mut altered.events[0].body {
        *users = vec![u("cid")];
    }
    publish_behind_the_service(&server, &c1_stream(), &altered).await;
    let h = read_all(&store).await;
    let report = verify::verify(&h, None, Options::default(), &Progress::hidden());
    assert!(report.has(ProblemKind::ChainBroken), "{report:?}");
    assert_eq!(report.problems[0].position, Some(h.head));
    assert_eq!(
        report.problems[0].stream.as_deref(),
        Some("acme.contact.c1")
    );

    // A forged commit without a chain value is reported too.
    let mut forged = original.commit;
    forged.command_id = followers_shared::ids::CommandId::new();
    forged.chain = None;
    publish_behind_the_service(&server, &c1_stream(), &forged).await;
    let h = read_all(&store).await;
    let report = verify::verify(&h, None, Options::default(), &Progress::hidden());
    assert!(report.has(ProblemKind::Unsealed), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_detects_a_removed_commit() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let s = scripted(&server).await;
    service.stop().await;
    let h = read_all(&history(&server).await).await;
    let snapshot = replay(&h, h.head).to_snapshot();

    // The history copied without one commit from the middle of c1's stream.
    let copy = |skip: Position| {
        let commits: Vec<&StoredCommit> = h.commits.iter().filter(|c| c.position != skip).collect();
        let mut lines = Vec::new();
        for c in commits {
            serde_json::to_writer(&mut lines, c).unwrap();
            lines.push(b'\n');
        }
        lines
    };
    let store = MemoryStore::new();
    import(
        &store,
        &mut copy(s.dee_added).as_slice(),
        &Progress::hidden(),
    )
    .await
    .unwrap();
    let report = verify::verify(
        &read_all(&store).await,
        None,
        Options::default(),
        &Progress::hidden(),
    );
    assert!(report.has(ProblemKind::ChainBroken), "{report:?}");
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.stream.as_deref() == Some("acme.contact.c1"))
    );

    // The last commit removed: the chains still hold, the projection's snapshot does not.
    let store = MemoryStore::new();
    import(
        &store,
        &mut copy(s.dee_removed).as_slice(),
        &Progress::hidden(),
    )
    .await
    .unwrap();
    let shortened = read_all(&store).await;
    assert!(verify::verify(&shortened, None, Options::default(), &Progress::hidden()).ok());
    let report = verify::verify(
        &shortened,
        Some(&snapshot),
        Options::default(),
        &Progress::hidden(),
    );
    assert!(!report.ok(), "{report:?}");
    assert!(report.has(ProblemKind::SnapshotAhead), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_into_an_empty_store_reproduces_the_read_model() {
    let server = NatsServer::start();
    let service = start_command_service(&server, &[]).await;
    let s = scripted(&server).await;
    service.stop().await;
    let h = read_all(&history(&server).await).await;
    let mut lines = Vec::new();
    assert_eq!(export(&h, &mut lines).unwrap(), h.commits.len());

    let empty = NatsServer::start();
    let target = history(&empty).await;
    let done = import(&target, &mut lines.as_slice(), &Progress::hidden())
        .await
        .unwrap();
    assert_eq!(done.appended, h.commits.len());
    let imported = read_all(&target).await;
    assert_eq!(
        replay(&imported, imported.head).to_snapshot(),
        replay(&h, h.head).to_snapshot()
    );
    let ids = |h: &History| {
        h.commits
            .iter()
            .map(|c| c.commit.command_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&imported), ids(&h), "command ids are preserved");
    assert!(verify::verify(&imported, None, Options::default(), &Progress::hidden()).ok());

    // A range: up to the owner change of c1, into another empty store.
    let range = source::read(
        &history(&server).await,
        Range {
            from: None,
            to: Some(before(s.owner_changed_c1)),
        },
        &Progress::hidden(),
    )
    .await
    .unwrap();
    let mut part = Vec::new();
    export(&range, &mut part).unwrap();
    let store = MemoryStore::new();
    import(&store, &mut part.as_slice(), &Progress::hidden())
        .await
        .unwrap();
    let partial = read_all(&store).await;
    assert_eq!(partial.commits.len() as u64, before(s.owner_changed_c1).0);
    let r = at_pos(&partial, c("c1"), partial.head);
    assert_eq!(owner(&r), Some("bob"));
}

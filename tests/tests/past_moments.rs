#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: queries as of a past position (`at_position`) and a record's history
//! (`record_history`), over NATS and HTTP, against a real nats-server fed by the command
//! service (docs/protocol.md, "Past moments" and "record_history").

use followers_client::Account;
use followers_shared::access::{Action, Reason};
use followers_shared::error::ErrorCode;
use followers_shared::model::RecordRef;
use followers_shared::store::Position;
use followers_shared::wire::{
    AccessAnswer, AccountQuery, CheckAccess, FollowersAnswer, FollowersQuery, QueryReply,
    RecordHistory, RecordHistoryAnswer, WhoCanAccess,
};
use followers_tests::stack::{
    contact_ref as c, opportunity_ref as o, start_command_service, start_projection_service,
};
use followers_tests::typed::{account, by, change_owner, code, small_account, uid};
use followers_tests::{Followers, NatsServer, eventually};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

fn followers_at(record: RecordRef, at: Position) -> FollowersQuery {
    FollowersQuery {
        record,
        min_position: None,
        at_position: Some(at),
        at_time: None,
    }
}

fn followers_at_time(record: RecordRef, time: chrono::DateTime<chrono::Utc>) -> FollowersQuery {
    FollowersQuery {
        record,
        min_position: None,
        at_position: None,
        at_time: Some(time),
    }
}

fn check_at(user: &str, action: Action, record: RecordRef, at: Position) -> CheckAccess {
    CheckAccess {
        user: uid(user),
        action,
        record,
        hint: false,
        min_position: None,
        at_position: Some(at),
        at_time: None,
    }
}

fn history_page(record: RecordRef, after: Option<Position>, limit: usize) -> RecordHistory {
    RecordHistory {
        record,
        after,
        limit: Some(limit),
        min_position: None,
    }
}

/// The owner of `record` as the answer names them.
fn owner(answer: &FollowersAnswer) -> Option<&str> {
    answer.owner.as_ref().map(|o| o.user.as_str())
}

/// GETs `path` under the account's routes; the status and the reply.
async fn get<T: DeserializeOwned>(base: &str, path: &str) -> (u16, QueryReply<T>) {
    let response = reqwest::get(format!("{base}{path}")).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// bob owns c1 and, coupled, o1; ann gives c1 to cid; the sync mirrors it onto o1. The position
/// before the change, of the change, and of the sync's mirror.
async fn owner_changed(acme: &Account) -> (Position, Position, Position) {
    let before = small_account(acme).await;
    let changed = acme.command(by("ann"), change_owner(c("c1"), Some("cid")));
    let changed = changed.await.unwrap().position();
    let mirror = || async {
        let history = acme.query(history_page(o("o1"), Some(changed), 10)).await;
        let events = history.unwrap().into_inner().events;
        events
            .iter()
            .find(|e| e.event_type == "owner_changed")
            .map(|e| e.position)
    };
    eventually("the sync mirrors c1's new owner onto o1", || async {
        mirror().await.is_some()
    })
    .await;
    (before, changed, mirror().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_past_position_is_answered_as_the_model_did_then_over_nats_and_http() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    let (before, changed, mirrored) = owner_changed(&acme).await;

    // followers: bob owned c1 before the change, cid from it on; the reply says as of when.
    let then = acme.query(followers_at(c("c1"), before)).await.unwrap();
    assert_eq!((owner(&then), then.position), (Some("bob"), before));
    let now = acme.query(followers_at(c("c1"), changed)).await.unwrap();
    assert_eq!((owner(&now), now.position), (Some("cid"), changed));
    // o1 changed owner at the sync's mirror, not at ann's command.
    let o1 = acme.query(followers_at(o("o1"), changed)).await.unwrap();
    assert_eq!(owner(&o1), Some("bob"));
    let o1 = acme.query(followers_at(o("o1"), mirrored)).await.unwrap();
    assert_eq!(owner(&o1), Some("cid"));

    // check_access: bob (only_assigned) could edit c1 as its owner, and no longer can.
    let then = acme.query(check_at("bob", Action::Edit, c("c1"), before));
    let then = then.await.unwrap().into_inner();
    assert_eq!((then.allowed, then.reason), (true, Reason::Owner));
    let now = acme.query(check_at("bob", Action::Edit, c("c1"), changed));
    let now = now.await.unwrap().into_inner();
    assert_eq!((now.allowed, now.reason), (false, Reason::NotAssigned));

    // At the live model's own position, a past answer is the live one (same fold, same rule).
    let o1 = o("o1");
    let live = acme.at_least(mirrored);
    let live = live.who_can_access(&o1, Action::Edit).await.unwrap();
    let past = WhoCanAccess {
        record: o("o1"),
        action: Action::Edit,
        after: None,
        limit: None,
        min_position: None,
        at_position: Some(live.position),
        at_time: None,
    };
    let past = acme.query(past).await.unwrap();
    assert_eq!(past.answer, live.answer);

    // at_time: as of the account's last commit stored by then, whose position the reply gives.
    let c1 = acme.query(history_page(c("c1"), None, 1000)).await.unwrap();
    let created = c1.events.first().unwrap();
    let change = c1.events.iter().find(|e| e.position == changed).unwrap();
    assert!(created.at < change.at);
    let then = acme
        .query(followers_at_time(c("c1"), created.at))
        .await
        .unwrap();
    assert_eq!(owner(&then), Some("bob"));
    assert!(then.position >= created.position && then.position < changed);
    let now = acme
        .query(followers_at_time(c("c1"), change.at))
        .await
        .unwrap();
    assert_eq!(owner(&now), Some("cid"));
    assert!(now.position >= changed);
    // Before the account's first commit, it did not exist.
    let early = created.at - chrono::Duration::days(1);
    let none = acme.query(followers_at_time(c("c1"), early)).await;
    assert_eq!(code(none), ErrorCode::UnknownAccount);

    // HTTP: the same answers on the same routes, with ?at_position=.
    let base = format!("http://{}/v1/accounts/acme", projection.http_addr);
    let path = format!("/records/contact/c1/followers?at_position={}", before.0);
    let (status, reply) = get::<FollowersAnswer>(&base, &path).await;
    assert_eq!(status, 200);
    assert_eq!(reply.position, Some(before));
    assert_eq!(reply.answer.as_ref().and_then(owner), Some("bob"));
    let path = format!(
        "/access?user=bob&action=edit&kind=contact&id=c1&at_position={}",
        changed.0
    );
    let (status, reply) = get::<AccessAnswer>(&base, &path).await;
    assert_eq!(status, 200);
    let answer = reply.answer.unwrap();
    assert_eq!(
        (answer.allowed, answer.reason),
        (false, Reason::NotAssigned)
    );

    projection.stop().await;
    commands.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_records_history_lists_its_events_with_positions_and_the_syncs_causes() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    let (_, changed, mirrored) = owner_changed(&acme).await;

    // Over NATS, in one page: o1's creation, then the mirror of c1's change, caused by ann's
    // owner_changed of c1 at its position.
    let all = acme
        .at_least(mirrored)
        .query(history_page(o("o1"), None, 1000));
    let all = all.await.unwrap().into_inner();
    assert_eq!(all.next, None);
    assert_eq!(all.events[0].event_type, "opportunity_created");
    let positions: Vec<Position> = all.events.iter().map(|e| e.position).collect();
    assert!(positions.windows(2).all(|w| w[0] <= w[1]), "{positions:?}");
    let mirror = all.events.last().unwrap();
    assert_eq!(
        (mirror.event_type.as_str(), mirror.position),
        ("owner_changed", mirrored)
    );
    let cause = mirror.cause.as_ref().expect("the mirror names its cause");
    assert_eq!(Some(cause.event_id), mirror.event.meta.causation);
    assert_eq!(cause.position, Some(changed));
    assert_eq!(cause.record, Some(c("c1")));
    assert_eq!(cause.event_type.as_deref(), Some("owner_changed"));
    // ann's own change has no cause.
    let c1 = acme
        .at_least(mirrored)
        .query(history_page(c("c1"), None, 1000));
    let c1 = c1.await.unwrap().into_inner();
    let own = c1.events.iter().find(|e| e.position == changed).unwrap();
    assert_eq!(own.cause, None);
    assert_eq!(own.actor, by("ann"));

    // Over HTTP, a commit per page: the same events, `next` leading from page to page.
    let base = format!("http://{}/v1/accounts/acme", projection.http_addr);
    let mut paged = Vec::new();
    let mut after: Option<Position> = None;
    for _ in 0..100 {
        let cursor = after.map_or(String::new(), |p| format!("&after={}", p.0));
        let path = format!("/records/opportunity/o1/history?limit=1{cursor}");
        let (status, reply) = get::<RecordHistoryAnswer>(&base, &path).await;
        assert_eq!(status, 200, "{reply:?}");
        let page = reply.answer.unwrap();
        paged.extend(page.events);
        after = page.next;
        if after.is_none() {
            break;
        }
    }
    assert_eq!(after, None, "the pages end");
    assert_eq!(paged, all.events);

    // A record that does not exist: unknown_record, 404 over HTTP.
    let nope = acme.query(history_page(c("nope"), None, 10)).await;
    assert_eq!(code(nope), ErrorCode::UnknownRecord);
    let (status, _) = get::<Value>(&base, "/records/contact/nope/history").await;
    assert_eq!(status, 404);

    projection.stop().await;
    commands.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_answers_are_bounded_and_their_input_strict() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let flags = ["--max-past-commits", "4", "--max-wait-ms", "300"];
    let projection = start_projection_service(&server, &flags).await;
    let acme = account(&server, "acme").await;
    let head = small_account(&acme).await;
    let raw = Followers::new(server.client().await, "acme");
    let base = format!("http://{}/v1/accounts/acme", projection.http_addr);

    // Strict: a position is a non-negative integer, over NATS and HTTP alike.
    let c1 = json!({"kind": "contact", "id": "c1"});
    for bad in [json!("3"), json!(-1), json!(1.5), json!({"p": 3})] {
        let body = json!({"record": c1, "at_position": bad});
        let reply: QueryReply<Value> = raw.query("followers", body).await;
        let error = reply.error.expect("refused");
        assert_eq!(error.code, ErrorCode::MalformedRequest, "{bad}");
        assert!(error.message.contains("at_position"), "{}", error.message);
    }
    let both = json!({"record": c1, "at_position": 3, "at_time": "2026-11-24T19:48:39Z"});
    let future = json!({"record": c1, "at_time": "2999-01-01T00:00:00Z"});
    let no_time = json!({"record": c1, "at_time": "yesterday"});
    let local = json!({"record": c1, "at_time": "2026-11-24T19:48:39"});
    for (body, names) in [
        (both, "not both"),
        (future, "later than now"),
        (no_time, "at_time"),
        (local, "at_time"),
    ] {
        let reply: QueryReply<Value> = raw.query("followers", body.clone()).await;
        let error = reply.error.expect("refused");
        assert_eq!(error.code, ErrorCode::MalformedRequest, "{body}");
        assert!(error.message.contains(names), "{}", error.message);
    }
    for query in [
        "at_position=x",
        "at_position=-1",
        "at_position=1&at_position=2",
        "at_time=yesterday",
        "at_time=2999-01-01T00:00:00Z",
        "at_position=3&at_time=2026-11-24T19:48:39Z",
    ] {
        let path = format!("/records/contact/c1/followers?{query}");
        let (status, reply) = get::<Value>(&base, &path).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(reply.error.unwrap().code, ErrorCode::MalformedRequest);
    }
    for query in ["after=x", "limit=0", "limit=1001", "at_position=3"] {
        let path = format!("/records/contact/c1/history?{query}");
        let (status, reply) = get::<Value>(&base, &path).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(reply.error.unwrap().code, ErrorCode::MalformedRequest);
    }

    // The bound: a moment whose replay needs more than 4 of the account's commits is refused
    // with the limit named; an earlier one is answered.
    let refused = acme.query(followers_at(c("c1"), head)).await;
    assert_eq!(code(refused), ErrorCode::TooMuchHistory);
    let path = format!("/records/contact/c1/followers?at_position={}", head.0);
    let (status, reply) = get::<Value>(&base, &path).await;
    assert_eq!(status, 400);
    let error = reply.error.unwrap();
    assert_eq!(error.code, ErrorCode::TooMuchHistory);
    assert!(
        error.message.contains("more than 4 commits"),
        "{}",
        error.message
    );
    let opened = acme.query(account_at(Position(1))).await.unwrap();
    assert_eq!((opened.position, opened.members.len()), (Position(1), 0));
    // Before the account was opened, it did not exist.
    let none = acme.query(account_at(Position(0))).await;
    assert_eq!(code(none), ErrorCode::UnknownAccount);

    // A position the history has not reached is waited for like min_position, then timeout.
    let ahead = acme
        .query(followers_at(c("c1"), Position(head.0 + 1_000)))
        .await;
    assert_eq!(code(ahead), ErrorCode::Timeout);

    projection.stop().await;
    commands.stop().await;
}

/// `account` as of `at`.
fn account_at(at: Position) -> AccountQuery {
    AccountQuery {
        min_position: None,
        at_position: Some(at),
        at_time: None,
    }
}

/// docs/performance.md, "Past moments": how long a past answer takes at the default bound,
/// an account of 10,000 commits, against the floor of reading those commits without applying
/// them. Not run by default (it loads 10,000 commits); run it with
/// `cargo test -p followers-tests --test past_moments -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it with --ignored --nocapture"]
async fn measure_a_past_answer_at_the_bound() {
    use followers_shared::event::{AddedFollower, EventBody};
    use followers_shared::model::{AccountSettings, AddedHow, DataScope, Role};
    use followers_shared::store::{Commit, EventStore, Expected, StreamId};
    use futures::StreamExt;
    use std::time::Instant;

    const COMMITS: u64 = followers_projection_service::past::MAX_PAST_COMMITS as u64;
    let server = NatsServer::start();
    let store = followers_tests::stack::history(&server).await;
    let acme = followers_tests::typed::account_id("acme");
    let commit = Commit::of_system;
    // The account and 20 members in one commit, then a contact per commit (an owner and two
    // followers each), loaded straight into JetStream, 64 appends in flight.
    let mut opened = vec![EventBody::AccountOpened {
        account: acme.clone(),
        name: "Acme".to_owned(),
        settings: AccountSettings::default(),
    }];
    let members: Vec<String> = (0..20).map(|n| format!("u{n}")).collect();
    for m in &members {
        opened.push(EventBody::MemberRegistered {
            user: uid(m),
            name: m.clone(),
            email: format!("{m}@acme.example"),
            role: Role::User,
            data_scope: DataScope::OnlyAssigned,
        });
    }
    let account_stream = StreamId::account(acme.clone());
    store
        .append(&account_stream, Expected::NoStream, &commit(opened))
        .await
        .unwrap();
    let loading = Instant::now();
    futures::stream::iter(1..COMMITS)
        .map(|n| {
            let (store, acme, members) = (&store, &acme, &members);
            let contact = format!("c{n}");
            let record = c(&contact);
            let user = |k: u64| uid(&members[((n + k) % 20) as usize]);
            let bodies = vec![
                EventBody::ContactCreated {
                    contact: contact.parse().unwrap(),
                    owner: Some(user(0)),
                },
                EventBody::FollowersAdded {
                    record: record.clone(),
                    followers: (1..3)
                        .map(|k| AddedFollower {
                            user: user(k),
                            how: AddedHow::Manual,
                            until: None,
                        })
                        .collect(),
                },
            ];
            let stored = commit(bodies);
            async move {
                let stream = StreamId::record(acme.clone(), record);
                store.append(&stream, Expected::NoStream, &stored).await
            }
        })
        .buffer_unordered(64)
        .for_each(|appended| async move {
            appended.unwrap();
        })
        .await;
    let head = store.head().await.unwrap();
    println!("loaded {COMMITS} commits in {:?}", loading.elapsed());

    let commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &[]).await;
    let account = account(&server, "acme").await;

    // The floor: the account's commits read (and decoded), not applied; before and after the
    // cold answer, the faster of the two.
    let read_all = || async {
        let started = Instant::now();
        let read = store.read_account(&acme, Position(0)).await.unwrap();
        assert_eq!(read.count().await as u64, COMMITS);
        started.elapsed()
    };
    let floor = read_all().await;

    let ask = |at: Position| account.query(followers_at(c("c1"), at));
    let started = Instant::now();
    let cold = ask(head).await.unwrap();
    let cold_time = started.elapsed();
    assert_eq!(cold.position, head);
    let floor = floor.min(read_all().await);
    let started = Instant::now();
    ask(head).await.unwrap();
    let cached = started.elapsed();
    let started = Instant::now();
    ask(Position(head.0 / 2)).await.unwrap();
    let half = started.elapsed();

    // One commit more, and the head is beyond the bound: refused after reading 10,001.
    let more = StreamId::record(acme.clone(), c("c0"));
    let extra = commit(vec![EventBody::ContactCreated {
        contact: "c0".parse().unwrap(),
        owner: None,
    }]);
    let beyond = store
        .append(&more, Expected::NoStream, &extra)
        .await
        .unwrap()
        .position;
    let started = Instant::now();
    let refused = account
        .at_least(beyond)
        .query(followers_at(c("c1"), beyond))
        .await;
    let refused_time = started.elapsed();
    assert_eq!(code(refused), ErrorCode::TooMuchHistory);
    println!(
        "past answer at the bound ({COMMITS} commits): cold {cold_time:?}, cached {cached:?}, \
         half-way ({} commits) {half:?}, refused beyond it {refused_time:?}; floor (reading \
         the {COMMITS} commits, not applying them) {floor:?}",
        COMMITS / 2
    );
    projection.stop().await;
    commands.stop().await;
}

/// A `follower_expired` (issue 17.4) is caused by the event that set the `until`, on the record
/// itself: the history names it as it names the sync's causes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expirys_cause_is_the_event_that_set_the_until() {
    use followers_shared::command::AddFollowers;
    use followers_tests::typed::some_users;
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    small_account(&acme).await;
    let until = chrono::Utc::now() + chrono::Duration::milliseconds(500);
    let add = AddFollowers {
        record: Some(c("c2")),
        users: some_users(&["fay"]),
        until: [(uid("fay"), until)].into_iter().collect(),
    };
    let added = acme.command(by("ann"), add).await.unwrap().position();
    let expired = || async {
        let page = acme.query(history_page(c("c2"), Some(added), 10)).await;
        let events = page.unwrap().into_inner().events;
        events
            .into_iter()
            .find(|e| e.event_type == "follower_expired")
    };
    eventually("fay's following of c2 expires", || async {
        expired().await.is_some()
    })
    .await;
    let expiry = expired().await.unwrap();
    let cause = expiry.cause.expect("an expiry names its cause");
    assert_eq!(cause.position, Some(added));
    assert_eq!(cause.record, Some(c("c2")));
    assert_eq!(cause.event_type.as_deref(), Some("followers_added"));
    projection.stop().await;
    commands.stop().await;
}

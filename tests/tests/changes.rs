#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: the feed of access changes (docs/protocol.md 5.11), as pages over NATS through
//! the typed client and as Server-Sent Events over HTTP, against a real nats-server fed by the
//! command service. It misses nothing and repeats nothing across a reconnect with `after`.

use std::time::Duration;

use followers_client::Account;
use followers_shared::change::changes_access;
use followers_shared::error::ErrorCode;
use followers_shared::store::Position;
use followers_shared::wire::{Change, Changes, ChangesAnswer};
use followers_tests::NatsServer;
use followers_tests::contract::read_account;
use followers_tests::stack::{
    contact_ref as c, history, opportunity_ref as o, start_command_service,
    start_projection_service,
};
use followers_tests::typed::{account, account_id, add, by, code, remove, small_account, uid};
use serde_json::Value;

/// Every page of `changes` after `after`, `limit` at a time.
async fn every_change(acme: &Account, q: Changes, limit: usize) -> Vec<Change> {
    let mut all = Vec::new();
    let mut after = q.after;
    for _ in 0..1000 {
        let page = acme
            .query(Changes {
                after,
                limit: Some(limit),
                ..q.clone()
            })
            .await
            .unwrap()
            .into_inner();
        if page.changes.is_empty() {
            return all;
        }
        assert!(page.next > after, "a page moves on");
        after = page.next;
        all.extend(page.changes);
    }
    panic!("more than 1000 pages");
}

fn ids(changes: &[Change]) -> Vec<(Position, String)> {
    changes
        .iter()
        .map(|c| (c.position, c.event.meta.event_id.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_give_every_access_change_of_the_history_once_and_filters_narrow_them() {
    let server = NatsServer::start();
    let _commands = start_command_service(&server, &[]).await;
    let _projection = start_projection_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    let at = small_account(&acme).await;

    // What the history holds, every access change of acme in order.
    let store = history(&server).await;
    let stored = read_account(&store, &account_id("acme"), Position(0)).await;
    let expected: Vec<(Position, String)> = stored
        .iter()
        .flat_map(|c| c.commit.events.iter().map(move |e| (c.position, e)))
        .filter(|(_, e)| changes_access(&e.body))
        .map(|(p, e)| (p, e.meta.event_id.to_string()))
        .collect();
    assert!(expected.len() > 5);

    let q = Changes {
        min_position: Some(at),
        ..Changes::default()
    };
    let all = every_change(&acme, q.clone(), 2).await;
    assert_eq!(
        ids(&all),
        expected,
        "paged two at a time: all of them, in order"
    );
    assert!(
        all.iter()
            .all(|c| c.event.body.type_name() != "account_opened"),
        "opening the account changes nobody's access"
    );

    // Resuming after any position gives exactly the rest.
    let middle = all[all.len() / 2].position;
    let rest = every_change(
        &acme,
        Changes {
            after: middle,
            ..q.clone()
        },
        3,
    )
    .await;
    let tail: Vec<_> = expected
        .iter()
        .filter(|(p, _)| *p > middle)
        .cloned()
        .collect();
    assert_eq!(ids(&rest), tail);

    // A user's changes: eve's membership and her following o1; none of bob's or dee's.
    let eve = every_change(
        &acme,
        Changes {
            user: Some(uid("eve")),
            ..q.clone()
        },
        100,
    )
    .await;
    let types: Vec<&str> = eve.iter().map(|c| c.event.body.type_name()).collect();
    assert_eq!(types, ["member_registered", "followers_added"]);
    // A record's changes: o1's include those of its contact c1 (R20) and the members'.
    let o1 = every_change(
        &acme,
        Changes {
            record: Some(o("o1")),
            ..q.clone()
        },
        100,
    )
    .await;
    let o1_types: Vec<&str> = o1.iter().map(|c| c.event.body.type_name()).collect();
    assert!(o1_types.contains(&"contact_created"), "{o1_types:?}");
    assert!(o1_types.contains(&"opportunity_created"), "{o1_types:?}");
    let c2 = every_change(
        &acme,
        Changes {
            record: Some(c("c2")),
            ..q.clone()
        },
        100,
    )
    .await;
    assert!(
        c2.iter()
            .all(|c| c.event.body.type_name() != "opportunity_created"),
        "c2 has no opportunity"
    );

    // Bad input changes nothing and says why; an unknown account is refused.
    let too_many = acme
        .query(Changes {
            limit: Some(1001),
            ..q.clone()
        })
        .await;
    assert_eq!(code(too_many), ErrorCode::MalformedRequest);
    let nobody = account(&server, "nobody").await;
    assert_eq!(
        code(nobody.query(Changes::default()).await),
        ErrorCode::UnknownAccount
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_answers_with_the_next_change_as_soon_as_it_is_stored() {
    let server = NatsServer::start();
    let _commands = start_command_service(&server, &[]).await;
    let _projection = start_projection_service(&server, &["--max-wait-ms", "20000"]).await;
    let acme = account(&server, "acme").await;
    let at = small_account(&acme).await;

    let waiting = {
        let acme = acme.clone();
        tokio::spawn(async move {
            let q = Changes {
                after: at,
                wait_ms: Some(20_000),
                min_position: Some(at),
                ..Changes::default()
            };
            acme.query(q).await.map(|a| a.into_inner())
        })
    };
    // The poll is answered by the change, not by its time running out.
    let sent = acme
        .command(by("ann"), add(c("c2"), &["fay"]))
        .await
        .unwrap()
        .position();
    let page: ChangesAnswer = tokio::time::timeout(Duration::from_secs(15), waiting)
        .await
        .expect("the long poll answered before its wait ran out")
        .unwrap()
        .unwrap();
    assert_eq!(page.next, sent);
    let types: Vec<&str> = page
        .changes
        .iter()
        .map(|c| c.event.body.type_name())
        .collect();
    assert_eq!(types, ["followers_added"]);
}

/// A Server-Sent Events stream read as it arrives.
struct Events {
    response: reqwest::Response,
    buffered: String,
}

/// One event: its name, id and data.
#[derive(Debug, Clone)]
struct Sse {
    event: String,
    id: Option<u64>,
    data: Value,
}

impl Events {
    async fn open(url: &str, last_event_id: Option<u64>) -> Events {
        let mut request = reqwest::Client::new().get(url);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        Events {
            response,
            buffered: String::new(),
        }
    }

    /// The next event (comments skipped), within 10 s.
    async fn next(&mut self) -> Sse {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(end) = self.buffered.find("\n\n") {
                    let block: String = self.buffered.drain(..end + 2).collect();
                    let mut event = Sse {
                        event: "message".into(),
                        id: None,
                        data: Value::Null,
                    };
                    let mut data = None;
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            event.event = v.trim().to_owned();
                        } else if let Some(v) = line.strip_prefix("id:") {
                            event.id = Some(v.trim().parse().unwrap());
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data = Some(serde_json::from_str(v.trim()).unwrap());
                        }
                    }
                    if let Some(data) = data {
                        event.data = data;
                        return event;
                    }
                    continue;
                }
                let chunk = self
                    .response
                    .chunk()
                    .await
                    .unwrap()
                    .expect("the stream ended");
                self.buffered.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        })
        .await
        .expect("no event within 10 s")
    }

    /// The next `n` events, each a change; their positions.
    async fn changes(&mut self, n: usize) -> Vec<u64> {
        let mut positions = Vec::new();
        for _ in 0..n {
            let e = self.next().await;
            assert_eq!(e.event, "change", "{e:?}");
            assert_eq!(e.id, e.data["position"].as_u64());
            positions.push(e.id.unwrap());
        }
        positions
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_stream_catches_up_goes_live_and_resumes_after_a_disconnect_without_loss() {
    let server = NatsServer::start();
    let _commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &[]).await;
    let acme = account(&server, "acme").await;
    let at = small_account(&acme).await;
    let base = format!("http://{}/v1/accounts/acme/changes", projection.http_addr);

    // Catching up: the history's changes of c2 (its creation and the members' events).
    let everything = every_change(
        &acme,
        Changes {
            record: Some(c("c2")),
            min_position: Some(at),
            ..Changes::default()
        },
        100,
    )
    .await;
    let url = format!(
        "{base}?record_kind=contact&record_id=c2&min_position={}",
        at.0
    );
    let mut stream = Events::open(&url, None).await;
    let caught_up = stream.changes(everything.len()).await;
    let expected: Vec<u64> = everything.iter().map(|c| c.position.0).collect();
    assert_eq!(caught_up, expected);

    // Live: a change to c2 arrives; one to c1 does not (the filter).
    acme.command(by("ann"), add(c("c1"), &["fay"]))
        .await
        .unwrap();
    let live = acme
        .command(by("ann"), add(c("c2"), &["fay"]))
        .await
        .unwrap();
    let got = stream.next().await;
    assert_eq!(got.id, Some(live.position().0));
    assert_eq!(got.data["event"]["type"], "followers_added");
    let last_seen = got.id.unwrap();

    // Disconnected, two more changes happen; reconnecting with Last-Event-ID gives exactly those.
    drop(stream);
    let one = acme
        .command(by("ann"), remove(c("c2"), &["fay"]))
        .await
        .unwrap();
    let two = acme
        .command(by("ann"), add(c("c2"), &["dee"]))
        .await
        .unwrap();
    let mut resumed = Events::open(
        &format!("{base}?record_kind=contact&record_id=c2"),
        Some(last_seen),
    )
    .await;
    let again = resumed.changes(2).await;
    assert_eq!(again, [one.position().0, two.position().0]);
    // And with `after` in the address, as a dashboard would resume.
    let mut after = Events::open(&format!("{base}?after={}", one.position().0), None).await;
    assert_eq!(after.changes(1).await, [two.position().0]);

    // Bad input is refused before any stream opens.
    let http = reqwest::Client::new();
    for (query, status) in [
        ("?after=soon", 400),
        ("?limit=5", 400),
        ("?wait_ms=5", 400),
        ("?colour=blue", 400),
        ("?record_kind=planet&record_id=x", 400),
    ] {
        let response = http.get(format!("{base}{query}")).send().await.unwrap();
        assert_eq!(response.status(), status, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "malformed_request", "{query}");
    }
    let unknown = format!("http://{}/v1/accounts/nobody/changes", projection.http_addr);
    let response = http.get(unknown).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

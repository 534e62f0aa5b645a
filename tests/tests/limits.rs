#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: the projection service's bounds (docs/operations.md, "Limits and back-pressure").
//! Queries beyond the shared budget are answered `unavailable` at once, waiting queries cannot
//! take every place, and HTTP clients that stall (headers, body, or reading the response) are
//! dropped while the service stays ready.
//!
//! Queries go out raw on purpose: the test reads each `unavailable` reply as it comes, which
//! the typed client would try again. Commands (the setup) go through the typed client.

use std::time::Duration;

use followers_client::Account;
use followers_projection_service::queries::{Budget, QueryLimits, Refusal};
use followers_shared::error::ErrorCode;
use followers_shared::wire::{AccessAnswer, QueryReply};
use followers_tests::stack::{TEAM, open_team, start_command_service, start_projection_service};
use followers_tests::typed::{NONE, account, by, new_contact};
use followers_tests::{Followers, NatsServer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest any wait in these tests may take; a bound on a condition, not a speed target.
const BOUND: Duration = Duration::from_secs(10);

/// Sends a query with a long client-side timeout and returns the raw reply.
async fn query(f: &Followers, name: &str, body: Value) -> QueryReply<AccessAnswer> {
    let subject = format!("{}.query.{}.{name}", f.prefix, f.account);
    let request = async_nats::Request::new()
        .payload(serde_json::to_vec(&body).unwrap().into())
        .timeout(Some(Duration::from_secs(60)));
    let msg = f
        .client
        .send_request(subject, request)
        .await
        .expect("query request");
    serde_json::from_slice(&msg.payload).expect("reply is a QueryReply")
}

/// `create_contact` of `id` by ann; its position.
async fn create_contact(acme: &Account, id: &str) -> u64 {
    let contact = new_contact(id, None, NONE);
    acme.command(by("ann"), contact).await.unwrap().position().0
}

fn check(min_position: Option<u64>) -> Value {
    let mut body =
        json!({"user": "ann", "action": "view", "record": {"kind": "contact", "id": "c1"}});
    if let Some(p) = min_position {
        body["min_position"] = json!(p);
    }
    body
}

/// A client that keeps no idle connections, so it never holds a place of the server's own.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn ready_status(http: &reqwest::Client, addr: std::net::SocketAddr) -> u16 {
    tokio::time::timeout(BOUND, http.get(format!("http://{addr}/ready")).send())
        .await
        .expect("/ready answers in time")
        .expect("/ready request")
        .status()
        .as_u16()
}

/// Reads until the server closes the connection (or resets it); returns what arrived.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let read = async {
        let mut out = Vec::new();
        let mut buf = vec![0; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(BOUND, read)
        .await
        .expect("the server closes the connection in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_beyond_the_budget_are_refused_at_once_and_immediate_ones_still_answered() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    // 8 places, so 2 for queries that wait for their min_position; waits long enough that the
    // waiting queries end only when the test moves the history on.
    let projection = start_projection_service(
        &server,
        &["--max-queries-in-flight", "8", "--max-wait-ms", "60000"],
    )
    .await;
    let acme = account(&server, "acme").await;
    open_team(&acme, TEAM).await;
    let at = create_contact(&acme, "c1").await;
    let f = Followers::new(server.client().await, "acme");
    let ahead = at + 2;

    // 40 queries at once, all waiting for a position two commits ahead.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..40 {
        let (f, tx) = (f.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(query(&f, "check_access", check(Some(ahead))).await);
        });
    }
    drop(tx);
    // Every query beyond the waiting share is answered `unavailable` while the two admitted
    // ones still wait: promptly, not after a wait of their own.
    for _ in 0..38 {
        let r = tokio::time::timeout(BOUND, rx.recv())
            .await
            .expect("a refused query is answered in time")
            .expect("a reply");
        assert!(!r.ok, "{r:?}");
        let e = r.error.unwrap();
        assert_eq!(e.code, ErrorCode::Unavailable, "{e:?}");
        assert!(e.message.contains("retry later"), "{}", e.message);
    }
    assert!(rx.try_recv().is_err(), "two queries still wait");

    // The waiting share leaves room: a query without min_position, or with one already
    // reached, is answered at once.
    let now = query(&f, "check_access", check(None)).await;
    assert!(now.ok, "{now:?}");
    let reached = query(&f, "check_access", check(Some(at))).await;
    assert!(reached.ok, "{reached:?}");
    // HTTP shares the same budget: another waiting query is refused with 503 and Retry-After.
    let http = http_client();
    let response = http
        .get(format!(
            "http://{}/v1/accounts/acme/access?user=ann&action=view&kind=contact&id=c1&min_position={ahead}",
            projection.http_addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: QueryReply<AccessAnswer> = response.json().await.unwrap();
    assert_eq!(body.error.unwrap().code, ErrorCode::Unavailable);

    // Once the history reaches the position, the two waiting queries are answered from it.
    let mut position = at;
    for n in 0..2 {
        let contact = format!("c{}", n + 2);
        position = create_contact(&acme, &contact).await;
    }
    assert!(position >= ahead);
    for _ in 0..2 {
        let r = tokio::time::timeout(BOUND, rx.recv())
            .await
            .expect("a waiting query is answered once the position is reached")
            .expect("a reply");
        assert!(r.ok, "{r:?}");
        assert!(r.position.unwrap().0 >= ahead);
        assert!(r.answer.unwrap().allowed);
    }

    // And the service answers normally again: the places were all given back.
    let again =
        futures::future::join_all((0..8).map(|_| query(&f, "check_access", check(Some(position)))))
            .await;
    assert!(again.iter().all(|r| r.ok), "{again:?}");
    let waiting = futures::future::join_all((0..2).map(|_| {
        let f = f.clone();
        async move { query(&f, "check_access", check(Some(position + 1))).await }
    }));
    let writer = async {
        create_contact(&acme, "c9").await;
    };
    let (waiting, ()) = tokio::join!(waiting, writer);
    assert!(waiting.iter().all(|r| r.ok), "{waiting:?}");

    projection.stop().await;
    commands.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_client_that_stops_sending_headers_is_dropped_and_the_service_stays_ready() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await; // creates the history
    // One connection at a time: the next client is served only once the silent one is gone.
    let projection = start_projection_service(
        &server,
        &[
            "--http-header-timeout-ms",
            "500",
            "--http-max-connections",
            "1",
        ],
    )
    .await;
    let addr = projection.http_addr;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    silent
        .write_all(b"GET /ready HTTP/1.1\r\nHost: followers\r\nAccept: ")
        .await
        .unwrap();

    // Waits in the listen backlog while the silent client holds the only connection, and is
    // answered once that one is dropped.
    let http = http_client();
    assert_eq!(ready_status(&http, addr).await, 200);
    let got = read_until_closed(&mut silent).await;
    assert!(
        !got.starts_with(b"HTTP/1.1 200"),
        "an incomplete request is not answered: {}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(ready_status(&http, addr).await, 200);

    // A keep-alive connection left idle after its answer is closed the same way.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: followers\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut idle).await;
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(ready_status(&http, addr).await, 200);
    projection.stop().await;
    commands.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_is_answered_and_the_service_stays_ready() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await; // creates the history
    let projection = start_projection_service(&server, &["--http-body-timeout-ms", "500"]).await;
    let addr = projection.http_addr;
    let http = http_client();

    // Declared larger than --max-request-bytes: 413 at once, without waiting for the body.
    let mut huge = TcpStream::connect(addr).await.unwrap();
    huge.write_all(
        b"POST /v1/accounts/acme/access/batch HTTP/1.1\r\nHost: followers\r\n\
          Content-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n",
    )
    .await
    .unwrap();
    let got = String::from_utf8_lossy(&read_until_closed(&mut huge).await).into_owned();
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    assert!(got.contains(r#""code":"request_too_large""#), "{got}");

    // A route without a body answers, and the connection is closed rather than drained.
    let mut ignored = TcpStream::connect(addr).await.unwrap();
    ignored
        .write_all(b"GET /ready HTTP/1.1\r\nHost: followers\r\nContent-Length: 99999999999\r\n\r\n")
        .await
        .unwrap();
    let got = String::from_utf8_lossy(&read_until_closed(&mut ignored).await).into_owned();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");

    // Declared within the limit, but only part of it is sent: 408 after the body timeout.
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    trickle
        .write_all(
            b"POST /v1/accounts/acme/access/batch HTTP/1.1\r\nHost: followers\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"checks\":",
        )
        .await
        .unwrap();
    let got = String::from_utf8_lossy(&read_until_closed(&mut trickle).await).into_owned();
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains(r#""code":"timeout""#), "{got}");
    assert!(got.contains("did not arrive within 500 ms"), "{got}");

    assert_eq!(ready_status(&http, addr).await, 200);
    projection.stop().await;
    commands.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_client_that_never_reads_its_responses_is_dropped() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await; // creates the history
    let projection = start_projection_service(
        &server,
        &[
            "--http-write-timeout-ms",
            "500",
            "--http-max-connections",
            "1",
        ],
    )
    .await;
    let addr = projection.http_addr;
    // 400 pipelined requests for the OpenAPI description (about 17 MB of responses), far more
    // than the socket buffers hold; the client reads none of it.
    const REQUESTS: usize = 400;
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    let requests = b"GET /openapi.json HTTP/1.1\r\nHost: followers\r\n\r\n".repeat(REQUESTS);
    stalled.write_all(&requests).await.unwrap();

    // The only connection is taken until the server gives up on the stalled one.
    let http = http_client();
    assert_eq!(ready_status(&http, addr).await, 200);
    let got = read_until_closed(&mut stalled).await;
    let answered = got.windows(12).filter(|w| w == b"HTTP/1.1 200").count();
    assert!(answered < REQUESTS, "the stalled connection was cut short");
    assert_eq!(ready_status(&http, addr).await, 200);
    projection.stop().await;
    commands.stop().await;
}

#[test]
fn the_byte_budget_refuses_when_the_bytes_held_would_exceed_it() {
    let budget = Budget::new(QueryLimits {
        in_flight: 4,
        waiting: 1,
        bytes: 1000,
    });
    let first = budget.admit(600).expect("600 of 1000 bytes fit");
    assert_eq!(
        budget.admit(500).err(),
        Some(Refusal::Bytes {
            bytes: 500,
            limit: 1000
        })
    );
    let second = budget.admit(400).expect("exactly the rest fits");
    assert!(budget.admit(1).is_err(), "nothing is left");
    assert!(
        budget.admit(0).is_ok(),
        "a query that holds no bytes needs only a place"
    );
    drop(first);
    let third = budget
        .admit(500)
        .expect("bytes are given back when a query ends");
    assert!(
        budget.admit(usize::MAX).is_err(),
        "more than the whole budget never fits"
    );
    let fourth = budget.admit(0).unwrap();
    let fifth = budget.admit(0).unwrap();
    assert_eq!(budget.admit(0).err(), Some(Refusal::InFlight(4)));
    let message = Refusal::Bytes {
        bytes: 500,
        limit: 1000,
    }
    .to_string();
    assert!(message.contains("retry later"), "{message}");
    drop((second, third, fourth, fifth));
}

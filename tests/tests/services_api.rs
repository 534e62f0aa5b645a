#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: both services show themselves in the NATS services API (`$SRV.PING`,
//! `$SRV.INFO`, `$SRV.STATS`, what `nats micro ls|info|stats` ask), with one endpoint per
//! command and per query on the documented subjects, and request counts that move; and the
//! command service's health, readiness and metrics over HTTP.

use std::collections::BTreeSet;
use std::time::Duration;

use followers_admin::probe::probe;
use followers_client::{Client, user};
use followers_shared::access::Action;
use followers_shared::bounded::Users;
use followers_shared::command::CreateContact;
use followers_shared::error::ErrorCode;
use followers_shared::wire::{COMMAND_NAMES, Query};
use followers_tests::stack::{
    TEAM, contact_ref, open_team, start_command_service, start_projection_service,
};
use followers_tests::typed::{self, NONE, by, new_opportunity};
use followers_tests::{NatsServer, eventually};
use futures::StreamExt;
use serde_json::Value;

/// Asks every service on `subject` and collects the answers until `expected` have come (or
/// 10 s have passed).
async fn ask_all(client: &async_nats::Client, subject: &str, expected: usize) -> Vec<Value> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(subject.to_owned(), inbox, "".into())
        .await
        .unwrap();
    let mut answers = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while answers.len() < expected {
        match tokio::time::timeout_at(deadline, replies.next()).await {
            Ok(Some(m)) => answers.push(serde_json::from_slice(&m.payload).unwrap()),
            _ => break,
        }
    }
    answers
}

async fn ask(client: &async_nats::Client, subject: &str) -> Value {
    let reply = client.request(subject.to_owned(), "".into()).await.unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

fn names(values: &[Value], field: &str) -> BTreeSet<String> {
    values
        .iter()
        .map(|v| v[field].as_str().unwrap().to_owned())
        .collect()
}

/// The endpoints of a `$SRV.INFO` answer, as (name, subject, queue group).
fn endpoints(info: &Value) -> BTreeSet<(String, String, String)> {
    let field = |e: &Value, f: &str| e[f].as_str().unwrap().to_owned();
    info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                field(e, "name"),
                field(e, "subject"),
                field(e, "queue_group"),
            )
        })
        .collect()
}

fn expected(names: &[&str], kind: &str, queue: &str) -> BTreeSet<(String, String, String)> {
    names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                format!("followers.{kind}.*.{n}"),
                queue.to_owned(),
            )
        })
        .collect()
}

/// The number of requests an endpoint of a `$SRV.STATS` answer has served.
fn served(stats: &Value, endpoint: &str) -> u64 {
    let all = stats["endpoints"].as_array().unwrap();
    let found = all.iter().find(|e| e["name"] == endpoint).unwrap();
    found["num_requests"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_show_every_endpoint_and_count_requests() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &[]).await;
    let projection = start_projection_service(&server, &[]).await;
    let client = server.client().await;

    let pings = ask_all(&client, "$SRV.PING", 2).await;
    let found = names(&pings, "name");
    assert_eq!(
        found,
        ["followers-command", "followers-projection"]
            .map(String::from)
            .into()
    );

    let info = ask(&client, "$SRV.INFO.followers-command").await;
    assert_eq!(
        endpoints(&info),
        expected(&COMMAND_NAMES, "cmd", "followers-command")
    );
    let info = ask(&client, "$SRV.INFO.followers-projection").await;
    assert_eq!(
        endpoints(&info),
        expected(Query::NAMES, "query", "followers-projection")
    );

    let before = ask(&client, "$SRV.STATS.followers-projection").await;
    let acme = Client::new(client.clone()).account("acme".parse().unwrap());
    open_team(&acme, TEAM).await;
    let c1 = CreateContact {
        contact: "c1".parse().unwrap(),
        owner: Some("bob".parse().unwrap()),
        followers: Users::default(),
    };
    let at = acme
        .command(user(&"ann".parse().unwrap()), c1)
        .await
        .unwrap();
    let bob = "bob".parse().unwrap();
    let reader = acme.after(&at);
    let record = contact_ref("c1");
    let answered = reader.check_access(&bob, Action::View, &record);
    answered.await.unwrap();

    let after = ask(&client, "$SRV.STATS.followers-projection").await;
    assert_eq!(
        served(&after, "check_access"),
        served(&before, "check_access") + 1
    );
    let stats = ask(&client, "$SRV.STATS.followers-command").await;
    assert!(served(&stats, "create_contact") >= 1, "{stats}");
    assert!(served(&stats, "open_account") >= 1, "{stats}");

    projection.stop().await;
    commands.stop().await;
}

/// The value of the sample `name{labels}` in a Prometheus text exposition (the labels in any
/// order, others allowed).
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let rest = series.strip_prefix(name)?;
        let all = labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
        let labelled = rest.is_empty() || rest.starts_with('{');
        (labelled && all).then(|| value.parse().ok())?
    })
}

async fn scrape(base: &str) -> String {
    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// With `--http-addr`, the command service answers `/health` and `/ready` (what `followers-admin
/// probe` asks) and counts each command by outcome, with its latency, on `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_service_serves_health_readiness_and_metrics() {
    let server = NatsServer::start();
    let commands = start_command_service(&server, &["--http-addr", "127.0.0.1:0"]).await;
    let base = format!("http://{}", commands.http_addr.expect("an HTTP address"));
    let wait = Duration::from_secs(5);
    assert_eq!(probe(&format!("{base}/health"), wait).unwrap(), 200);
    assert_eq!(probe(&format!("{base}/ready"), wait).unwrap(), 200);
    let ready: Value = reqwest::get(format!("{base}/ready"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ready"], true, "{ready}");

    // This test alone sends create_opportunity in this process (the recorder is process-wide).
    let metered = typed::account(&server, "metered").await;
    open_team(&metered, TEAM).await;
    let owned = typed::new_contact("c1", Some("bob"), NONE);
    metered.command(by("ann"), owned).await.unwrap();
    let opportunity = || new_opportunity("o1", "c1", None, NONE);
    metered.command(by("ann"), opportunity()).await.unwrap();
    let again = metered.command(by("ann"), opportunity()).await;
    assert_eq!(typed::code(again), ErrorCode::RecordExists);

    let metrics = scrape(&base).await;
    let counted = |outcome| {
        let labels = [("command", "create_opportunity"), ("outcome", outcome)];
        sample(&metrics, "followers_commands_total", &labels)
    };
    assert_eq!(counted("ok"), Some(1.0), "{metrics}");
    assert_eq!(counted("record_exists"), Some(1.0), "{metrics}");
    let timed = [("command", "create_opportunity")];
    assert_eq!(
        sample(&metrics, "followers_command_seconds_count", &timed),
        Some(2.0),
        "{metrics}"
    );
    let bucket = [("command", "create_opportunity"), ("le", "+Inf")];
    assert_eq!(
        sample(&metrics, "followers_command_seconds_bucket", &bucket),
        Some(2.0),
        "{metrics}"
    );
    // The follower sync passes every commit: its lag comes down to none.
    eventually("the follower sync catches up", || async {
        sample(&scrape(&base).await, "followers_sync_lag_commits", &[]) == Some(0.0)
    })
    .await;
    commands.stop().await;
}

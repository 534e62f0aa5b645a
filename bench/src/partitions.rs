//! Row 8: the same records served by two projection instances, each serving half the
//! partitions, against one instance serving all of them (issue 15, docs/scaling.md).
//!
//! The records are spread over [`ACCOUNTS`] accounts (a partition holds whole accounts), loaded
//! straight into a history of [`PARTITIONS`] partitions on a server that maps queries to them.
//! Each layout is measured from a cold start of `projection-service` child processes (no
//! snapshot): the time until every instance is ready, each instance's resident memory, and
//! `check_access` over NATS on random accounts with the same clients (the server routes each
//! check to the instance serving its account), summed over the instances.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use followers_shared::access::Action;
use followers_shared::ids::UserId;
use followers_shared::partition::PartitionCount;
use followers_shared::store::StreamId;
use followers_shared::wire::CheckAccess;
use followers_store::{JetStreamConfig, JetStreamStore};
use followers_tests::NatsServer;
use followers_tests::nats::{free_port, partition_mappings};
use followers_tests::stack::contact_ref;
use serde_json::json;

use crate::data::{self, Dataset, Rng};
use crate::load::{Stats, closed_loop};
use crate::report::{Line, Report, count};
use crate::rows::{Child, projection_binary, status_kb, wait_ready};
use crate::{Args, Row};

/// The history's partitions.
const PARTITIONS: u16 = 8;
/// The accounts the records are spread over.
const ACCOUNTS: usize = 64;
const PREFIX: &str = "followers.history";

/// One layout's figures.
struct Layout {
    /// Seconds from spawning every instance until the last is ready.
    ready_secs: f64,
    /// Each instance's resident memory once ready, in MB.
    rss_mb: Vec<f64>,
    checks: Stats,
}

pub async fn run(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    if !args.wants(Row::Partitions) {
        return Ok(());
    }
    let partitions = PartitionCount::new(PARTITIONS).map_err(anyhow::Error::msg)?;
    let server = NatsServer::start_configured("", &partition_mappings("followers", partitions));
    let accounts = datasets(args);
    let started = Instant::now();
    let commits = seed(&server, partitions, &accounts).await?;
    eprintln!(
        "partitions row: loaded {} commits over {ACCOUNTS} accounts in {:.1} s",
        count_text(commits),
        started.elapsed().as_secs_f64()
    );
    let all = layout(args, &server, &accounts, &["all"]).await?;
    let halves = layout(args, &server, &accounts, &["0-3", "4-7"]).await?;
    let records: usize = accounts.iter().map(|d| d.records).sum();
    let mb = |l: &Layout| {
        l.rss_mb
            .iter()
            .map(|m| format!("{m:.0} MB"))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let text = |l: &Layout| {
        format!(
            "RSS {}, ready in {:.1} s, {} checks/s (p99 {:.2} ms)",
            mb(l),
            l.ready_secs,
            count(l.checks.rate()),
            l.checks.p99()
        )
    };
    report.add(
        Line {
            row: format!(
                "8. partitions: {} records over {ACCOUNTS} accounts, 2 instances x half the {PARTITIONS} partitions",
                count(records as f64)
            ),
            ours: text(&halves),
            floor: format!("1 instance serving all: {}", text(&all)),
            ratio: format!(
                "memory per instance {:.2}, checks {:.2}",
                max(&halves.rss_mb) / max(&all.rss_mb).max(1.0),
                halves.checks.rate() / all.checks.rate().max(1.0)
            ),
            target: "-".to_owned(),
            met: None,
        },
        json!({"kind": "partitions", "records": records, "accounts": ACCOUNTS,
               "partitions": PARTITIONS,
               "one": {"rss_mb": all.rss_mb, "ready_s": all.ready_secs,
                       "checks_per_s": all.checks.rate(), "p99_ms": all.checks.p99()},
               "two": {"rss_mb": halves.rss_mb, "ready_s": halves.ready_secs,
                       "checks_per_s": halves.checks.rate(), "p99_ms": halves.checks.p99()}}),
    );
    Ok(())
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

fn count_text(n: u64) -> String {
    count(n as f64)
}

/// The big row's records, spread over [`ACCOUNTS`] accounts.
fn datasets(args: &Args) -> Vec<Dataset> {
    let per_account = (args.big_records() / ACCOUNTS).max(1);
    (0..ACCOUNTS)
        .map(|a| Dataset {
            account: format!("tenant-{a}"),
            users: args.users.max(1),
            records: per_account,
            followers: args.followers,
        })
        .collect()
}

/// Creates the history with [`PARTITIONS`] partitions as the services do, and loads every
/// account on its partition's subjects.
async fn seed(
    server: &NatsServer,
    count: PartitionCount,
    accounts: &[Dataset],
) -> anyhow::Result<u64> {
    let client = server.client().await;
    let config = JetStreamConfig {
        partition_count: Some(count),
        ..JetStreamConfig::default()
    };
    JetStreamStore::connect(client.clone(), config).await?;
    let js = async_nats::jetstream::new(client);
    let mut commits = 0;
    for data in accounts {
        let subject = |stream: &StreamId| {
            let [a, k, i] = stream.tokens();
            format!("{PREFIX}.{}.{a}.{k}.{i}", count.of(&stream.account))
        };
        commits += data::publish_on(&js, data, subject).await?;
    }
    Ok(commits)
}

/// Starts one projection instance per set of partitions, all at once, from cold; measures
/// them; stops them.
async fn layout(
    args: &Args,
    server: &NatsServer,
    accounts: &[Dataset],
    sets: &[&str],
) -> anyhow::Result<Layout> {
    let bin = projection_binary()?;
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut instances = Vec::new();
    for set in sets {
        let port = free_port();
        let child = Child::spawn_with(&bin, server, port, &["--partitions", set])?;
        instances.push((child, port));
    }
    for (_, port) in &instances {
        wait_ready(&http, *port).await?;
    }
    let ready_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_mb = instances
        .iter()
        .map(|(c, _)| status_kb(c.child.id(), "VmRSS:").unwrap_or(0) as f64 / 1024.0)
        .collect();
    let checks = checks(args, server, accounts).await;
    for (child, _) in instances {
        child.terminate()?;
    }
    Ok(Layout {
        ready_secs,
        rss_mb,
        checks,
    })
}

/// `check_access` on random accounts, users and records, over NATS: the server's mapping
/// sends each to the instance serving its account.
async fn checks(args: &Args, server: &NatsServer, accounts: &[Dataset]) -> Stats {
    let client = server.client().await;
    let mut rng = Rng::new(11);
    let requests: Arc<Vec<(String, Bytes)>> = Arc::new(
        (0..4096)
            .map(|_| {
                let data = &accounts[rng.below(accounts.len() as u64) as usize];
                let check = CheckAccess {
                    hint: false,
                    user: UserId::new(data::user(rng.below(data.users as u64))).expect("user"),
                    action: Action::View,
                    record: contact_ref(&data::contact(rng.below(data.records as u64))),
                    min_position: None,
                    at_position: None,
                    at_time: None,
                };
                let subject = format!("followers.query.{}.check_access", data.account);
                let body = serde_json::to_vec(&check).expect("json");
                (subject, Bytes::from(body))
            })
            .collect(),
    );
    closed_loop(args.clients, args.warmup(), args.duration(), move |c, n| {
        let (client, requests) = (client.clone(), requests.clone());
        async move {
            let (subject, body) = requests[(c * 131 + n as usize) % requests.len()].clone();
            match client.request(subject, body).await {
                Ok(msg) if msg.payload.starts_with(b"{\"ok\":true") => Ok(1),
                _ => Err(()),
            }
        }
    })
    .await
}

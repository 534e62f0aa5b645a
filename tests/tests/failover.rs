#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end on a 3-node cluster: killing the history stream's leader under load costs
//! latency, not errors. Callers that wait 15 s for a reply get every command applied, exactly
//! once; the command service tries its appends again through the leader election.
//!
//! Two variants: the stream leader is killed wherever the cluster put it (the JetStream meta
//! leader may or may not be on the same node), and the stream leader is first moved onto the
//! meta leader's node, so that both elections happen at once. Each prints one line with the
//! figures (`--nocapture`): how long the stream had no leader and the commands' latencies.

use std::time::{Duration, Instant};

use clap::Parser;
use followers_client::{Client, Retry, system};
use followers_command_service as command_service;
use followers_shared::bounded::Text;
use followers_shared::command::OpenAccount;
use followers_shared::partition::PartitionCount;
use followers_shared::store::EventStore;
use followers_shared::wire::Outcome;
use followers_store::{JetStreamConfig, JetStreamStore};
use followers_tests::NatsCluster;
use followers_tests::stack::contact_ref;
use followers_tests::typed::{NONE, account_id, add, member, new_contact, remove};
use serde_json::json;

/// How long a caller waits for a reply.
const CALLER_TIMEOUT: Duration = Duration::from_secs(15);
/// Callers sending at once, and commands each sends (bounded load).
const CALLERS: usize = 8;
const COMMANDS_PER_CALLER: usize = 60;

/// One attempt per command, waiting `CALLER_TIMEOUT`: the client does not retry, so every
/// command the service fails to apply in time shows as a failure.
fn caller_retry() -> Retry {
    Retry::once(CALLER_TIMEOUT)
}

/// The index of a node from its server name `n<i>-<port>`.
fn node_index(name: &str) -> usize {
    name.trim_start_matches('n')
        .split('-')
        .next()
        .and_then(|i| i.parse().ok())
        .expect("server names are n<i>-<port>")
}

/// The stream's cluster as its leader tells it, if it answers within 300 ms.
#[derive(Debug)]
struct StreamState {
    leader: String,
    followers: Vec<String>,
    /// Both followers are current.
    healthy: bool,
}

async fn stream_state(js: &async_nats::jetstream::Context, stream: &str) -> Option<StreamState> {
    let info = tokio::time::timeout(Duration::from_millis(300), async {
        js.get_stream(stream).await.ok()?.info().await.ok().cloned()
    })
    .await
    .ok()??;
    let cluster = info.cluster?;
    Some(StreamState {
        leader: cluster.leader?,
        followers: cluster.replicas.iter().map(|r| r.name.clone()).collect(),
        healthy: cluster.replicas.len() == 2 && cluster.replicas.iter().all(|r| r.current),
    })
}

/// The node that leads the JetStream meta group, from the servers' logs: the latest election
/// any of them logged.
fn meta_leader(cluster: &NatsCluster) -> Option<usize> {
    let mut latest: Option<(String, usize)> = None;
    for (i, node) in cluster.nodes.iter().enumerate() {
        for line in node.log().lines() {
            // `[pid] 2026/11/26 03:17:10.750057 [INF] ...`: the time sorts as text.
            let at: String = line.split(' ').skip(1).take(2).collect();
            let leader = if line.contains("Self is new JetStream cluster metadata leader") {
                Some(i)
            } else {
                line.split("JetStream cluster new metadata leader: ")
                    .nth(1)
                    .map(|name| node_index(name.split('/').next().unwrap_or_default()))
            };
            if let Some(leader) = leader
                && latest.as_ref().is_none_or(|(t, _)| at >= *t)
            {
                latest = Some((at, leader));
            }
        }
    }
    latest.map(|(_, leader)| leader)
}

/// The elections the surviving servers logged, for a failure message.
fn elections(cluster: &NatsCluster, doomed: usize) -> String {
    let mut lines: Vec<String> = cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != doomed)
        .flat_map(|(i, node)| {
            node.log()
                .lines()
                .filter(|l| l.contains("leader"))
                .map(|l| format!("n{i}: {l}"))
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort_by(|a, b| a[4..].cmp(&b[4..]));
    lines.join("\n")
}

/// One cluster at a time: two would share the machine's cores and measure each other.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts a cluster and the command service, kills the stream's leader (moved first onto the
/// meta leader's node if `with_meta_leader`) while 8 callers send 480 commands, and checks that
/// every command was applied exactly once.
async fn kill_the_stream_leader_under_load(with_meta_leader: bool) {
    let _alone = ONE_CLUSTER.lock().await;
    // The history is partitioned (8 partitions, the nodes mapping requests to them), so the
    // cluster test runs with partitions (issue 15).
    let partitions = PartitionCount::new(8).unwrap();
    let mut cluster = NatsCluster::start_partitioned(partitions);
    let all = cluster.urls();
    let setup = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(all.clone())
        .await
        .unwrap();
    let config = JetStreamConfig {
        replicas: 3,
        partition_count: Some(partitions),
        ..JetStreamConfig::default()
    };
    // The cluster elects its JetStream meta leader after the nodes meet: wait for it, bounded.
    let deadline = Instant::now() + Duration::from_secs(60);
    let store = loop {
        match JetStreamStore::connect(setup.clone(), config.clone()).await {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "cluster never became ready: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let js = async_nats::jetstream::new(setup.clone());
    // A healthy stream: a leader and both followers current.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut state = loop {
        match stream_state(&js, &config.stream).await {
            Some(state) if state.healthy => break state,
            _ => assert!(Instant::now() < deadline, "the stream never became healthy"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if with_meta_leader {
        // Move the stream's leadership onto the meta leader's node, as the cluster may put it
        // by itself; then killing that node costs both elections at once.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let meta = meta_leader(&cluster).expect("the servers logged a meta leader");
            if node_index(&state.leader) == meta {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the stream's leadership never moved to the meta leader n{meta}"
            );
            let name = state
                .followers
                .iter()
                .find(|f| node_index(f) == meta)
                .expect("the meta leader holds a replica")
                .clone();
            // JetStream's own API, not a followers request.
            let _ = setup
                .request(
                    format!("$JS.API.STREAM.LEADER.STEPDOWN.{}", config.stream),
                    serde_json::to_vec(&json!({"placement": {"preferred": name}}))
                        .unwrap()
                        .into(),
                )
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Some(now) = stream_state(&js, &config.stream).await
                && now.healthy
            {
                state = now;
            }
        }
    }
    let leader_name = state.leader;
    let doomed = node_index(&leader_name);
    // The service and the callers are connected to the two nodes that stay, given as a
    // comma-separated seed list: the test is about the history's leader, not about clients
    // losing their own server.
    let survivors: Vec<String> = (0..3)
        .filter(|i| *i != doomed)
        .map(|i| all[i].clone())
        .collect();
    let seeds = survivors.join(",");
    let service = command_service::start(command_service::Config::parse_from([
        "command-service",
        "--nats-url",
        seeds.as_str(),
        "--replicas",
        "3",
        "--partition-count",
        "8",
    ]))
    .await
    .expect("command service starts");
    let nats = async_nats::ConnectOptions::new()
        .request_timeout(Some(CALLER_TIMEOUT))
        .connect(survivors.clone())
        .await
        .unwrap();
    let client = Client::new(nats.clone()).with_retry(caller_retry());
    let acme = client.account(account_id("acme"));
    let open = OpenAccount {
        name: Text::new("Acme").unwrap(),
        settings: Default::default(),
    };
    acme.command(system(), open).await.unwrap();
    let ann = member("ann", "admin", "all");
    acme.command(system(), ann).await.unwrap();
    for c in 0..CALLERS {
        let contact = new_contact(&format!("c{c}"), None, NONE);
        acme.command(system(), contact).await.unwrap();
    }
    let head_before = store.head().await.unwrap();

    // Each caller toggles ann as a follower of its own contact, one command after another.
    let mut callers = Vec::new();
    for c in 0..CALLERS {
        let acme = acme.clone();
        callers.push(tokio::spawn(async move {
            let record = contact_ref(&format!("c{c}"));
            let mut results = Vec::new();
            for i in 0..COMMANDS_PER_CALLER {
                let started = Instant::now();
                let reply = if i % 2 == 0 {
                    let add = add(record.clone(), &["ann"]);
                    acme.command(system(), add).await
                } else {
                    let remove = remove(record.clone(), &["ann"]);
                    acme.command(system(), remove).await
                };
                results.push((started.elapsed(), reply));
            }
            results
        }));
    }
    // Kill the leader once the load runs.
    let running = Instant::now();
    while store
        .head()
        .await
        .map_or(true, |h| h.0 < head_before.0 + 40)
    {
        assert!(
            running.elapsed() < Duration::from_secs(30),
            "the load never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.nodes[doomed].kill();
    let killed = Instant::now();
    // How long the stream has no leader, seen from the survivors.
    let leaderless = {
        let js = async_nats::jetstream::new(nats.clone());
        let stream = config.stream.clone();
        let doomed_name = leader_name.clone();
        tokio::spawn(async move {
            loop {
                match stream_state(&js, &stream).await {
                    Some(state) if state.leader != doomed_name => {
                        return format!("{:?}", killed.elapsed());
                    }
                    _ if killed.elapsed() > CALLER_TIMEOUT * 2 => return "never".to_owned(),
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
    };

    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    for caller in callers {
        for (took, reply) in caller.await.unwrap() {
            latencies.push(took);
            match reply {
                Ok(r) if r.outcome() == Outcome::Applied => {}
                other => failures.push(format!("after {took:?}: {other:?}")),
            }
        }
    }
    let leaderless = leaderless.await.unwrap();
    if with_meta_leader {
        // The killed node did lead the meta group: the survivors elected another.
        let deadline = Instant::now() + Duration::from_secs(30);
        while meta_leader(&cluster) == Some(doomed) {
            assert!(Instant::now() < deadline, "no new meta leader was elected");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    latencies.sort();
    let at = |q: usize| latencies[(latencies.len() * q / 100).min(latencies.len() - 1)];
    eprintln!(
        "failover (stream leader n{doomed}{}): {} commands, {} failed; a new stream leader after \
         {leaderless}; latency p50 {:?}, p99 {:?}, max {:?}",
        if with_meta_leader {
            ", also the meta leader"
        } else {
            ""
        },
        latencies.len(),
        failures.len(),
        at(50),
        at(99),
        latencies.last().copied().unwrap_or_default(),
    );
    assert!(
        failures.is_empty(),
        "failed commands: {failures:#?}\nelections the surviving servers logged:\n{}",
        elections(&cluster, doomed)
    );

    // Exactly once: every toggle appended one commit, no more.
    let head_after = store.head().await.unwrap();
    assert_eq!(
        head_after.0 - head_before.0,
        (CALLERS * COMMANDS_PER_CALLER) as u64,
        "one commit per command"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_under_load_fails_no_command() {
    kill_the_stream_leader_under_load(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_and_meta_leader_under_load_fails_no_command() {
    kill_the_stream_leader_under_load(true).await;
}

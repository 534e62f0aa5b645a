#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A partitioned history served by instances that each serve some partitions (issue 15,
//! docs/scaling.md), against a real nats-server whose subject mapping puts every request in its
//! account's partition: callers keep sending to `followers.cmd.<account>.<command>` and
//! `followers.query.<account>.<query>`.
//!
//! Eight partitions; three command and three projection instances serving 0-3, 4-7 and 2-5 (the
//! third overlaps both others); two accounts in every partition. Rule numbers refer to
//! docs/rules.md.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use followers_audit::progress::Progress;
use followers_audit::source::{self, Range};
use followers_audit::transfer::{export, import};
use followers_audit::verify::{self, Options};
use followers_client::{Account, system};
use followers_shared::ids::AccountId;
use followers_shared::partition::{Partition, PartitionCount};
use followers_shared::store::{EventStore, StreamId};
use followers_shared::wire::{FollowersAnswer, QueryReply};
use followers_store::{JetStreamConfig, JetStreamStore};
use followers_tests::nats::partition_mappings;
use followers_tests::stack::{
    TEAM, contact_ref, history, open_team, opportunity_ref, service_binary, start_command_service,
    start_projection_service,
};
use followers_tests::typed::{account, by, change_owner, new_contact, new_opportunity};
use followers_tests::{NatsServer, eventually};

const P: u16 = 8;
const NONE: &[&str] = &[];

/// A nats-server mapping commands and queries to their account's partition, as
/// docs/scaling.md tells an operator to configure it.
fn mapped_server() -> NatsServer {
    let count = PartitionCount::new(P).unwrap();
    NatsServer::start_configured("", &partition_mappings("followers", count))
}

/// Two account ids in each partition, and each one's partition.
fn accounts_in_every_partition() -> Vec<(AccountId, Partition)> {
    let count = PartitionCount::new(P).unwrap();
    let mut per = [0u8; P as usize];
    let mut out = Vec::new();
    for n in 0.. {
        let id = AccountId::new(format!("tenant-{n}")).unwrap();
        let p = count.of(&id);
        if per[usize::from(p.0)] < 2 {
            per[usize::from(p.0)] += 1;
            out.push((id, p));
        }
        if out.len() == 2 * usize::from(P) {
            return out;
        }
    }
    unreachable!()
}

fn flags(partitions: &str) -> [&str; 4] {
    ["--partition-count", "8", "--partitions", partitions]
}

fn serves(partitions: &str, p: Partition) -> bool {
    let set: followers_shared::partition::PartitionSet = partitions.parse().unwrap();
    set.contains(p)
}

/// Every command and query of every account is answered, whichever instances serve its
/// partition; the follower sync (R7) runs for every partition; each projection holds exactly the
/// accounts of its partitions; and any projection's HTTP API answers for any account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_serving_some_partitions_answer_for_every_account() {
    let server = mapped_server();
    const SETS: [&str; 3] = ["0-3", "4-7", "2-5"];
    let mut commands = Vec::new();
    let mut projections = Vec::new();
    for set in SETS {
        commands.push(start_command_service(&server, &flags(set)).await);
        projections.push(start_projection_service(&server, &flags(set)).await);
    }
    let accounts = accounts_in_every_partition();
    for (id, _) in &accounts {
        let tenant = account(&server, id.as_str()).await;
        open_team(&tenant, TEAM).await;
        let c1 = new_contact("c1", Some("bob"), &["dee"]);
        tenant.command(by("ann"), c1).await.expect("create c1");
        let o1 = new_opportunity("o1", "c1", None, NONE);
        tenant.command(by("ann"), o1).await.expect("create o1");
        // R7: the contact's new owner becomes its opportunity's, by the follower sync of the
        // account's partition.
        let to_cid = change_owner(contact_ref("c1"), Some("cid"));
        tenant
            .command(by("ann"), to_cid)
            .await
            .expect("change owner");
    }
    for (id, p) in &accounts {
        let tenant = account(&server, id.as_str()).await;
        eventually(&format!("R7 in {id} (partition {p})"), || {
            owner_is(&tenant, "cid")
        })
        .await;
    }
    for (set, projection) in SETS.iter().zip(&projections) {
        let held: BTreeSet<AccountId> = projection
            .model
            .read(|m| m.accounts().map(|(a, _)| a.clone()).collect());
        let theirs: BTreeSet<AccountId> = accounts
            .iter()
            .filter(|(_, p)| serves(set, *p))
            .map(|(a, _)| a.clone())
            .collect();
        assert_eq!(
            held, theirs,
            "projection {set} holds its partitions' accounts only"
        );
        for (id, p) in &accounts {
            let has = projection
                .model
                .read(|m| m.record(id, &contact_ref("c1")).is_some());
            assert_eq!(has, serves(set, *p), "projection {set}, record c1 of {id}");
        }
    }
    // HTTP: the first projection (0-3) answers for an account of every partition, passing the
    // others' queries on to the instances that serve them.
    let http = reqwest::Client::new();
    let first = projections[0].http_addr;
    for (id, p) in &accounts {
        let url = format!("http://{first}/v1/accounts/{id}/records/opportunity/o1/followers");
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{id} in partition {p}");
        let reply: QueryReply<FollowersAnswer> = response.json().await.unwrap();
        let answer = reply.answer.expect("an answer");
        let owner = answer.owner.map(|o| o.user.to_string());
        assert_eq!(owner.as_deref(), Some("cid"), "{id} in partition {p}");
    }
    // Read-your-writes across partitions: a position from a commit of one partition is
    // reached by the instances of another, which never see that commit.
    let (last_id, last_p) = accounts.last().unwrap();
    let last = account(&server, last_id.as_str()).await;
    let written = last
        .command(by("ann"), new_contact("c2", None, NONE))
        .await
        .expect("create c2");
    for (id, p) in accounts.iter().filter(|(_, p)| p != last_p) {
        let other = account(&server, id.as_str()).await.after(&written);
        let answer = other
            .followers(&opportunity_ref("o1"))
            .await
            .unwrap_or_else(|e| panic!("{id} (partition {p}) after a write in {last_p}: {e}"));
        assert!(answer.position >= written.position(), "{id}: {answer:?}");
    }
    let unknown = http
        .get(format!(
            "http://{first}/v1/accounts/nobody-here/records/contact/c1/followers"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        unknown.status(),
        404,
        "an unknown account, wherever it is served"
    );
    for running in commands {
        running.stop().await;
    }
    for running in projections {
        running.stop().await;
    }
}

async fn owner_is(tenant: &Account, want: &str) -> bool {
    match tenant.followers(&opportunity_ref("o1")).await {
        Ok(answer) => answer.answer.owner.map(|o| o.user.to_string()).as_deref() == Some(want),
        Err(_) => false,
    }
}

/// One of the two command instances serving a partition stops while commands for that
/// partition keep coming: every command is acknowledged (the client retries with the same
/// command id, R24), and every acknowledged one is in the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_one_of_two_instances_of_a_partition_loses_no_command() {
    const COMMANDS: usize = 60;
    let server = mapped_server();
    let keeps = start_command_service(&server, &flags("0-3")).await;
    let leaves = start_command_service(&server, &flags("2-5")).await;
    let (id, p) = accounts_in_every_partition()
        .into_iter()
        .find(|(_, p)| p.0 == 2 || p.0 == 3)
        .unwrap();
    let tenant = account(&server, id.as_str()).await;
    open_team(&tenant, TEAM).await;
    let done = Arc::new(AtomicUsize::new(0));
    let load = {
        let (tenant, done) = (tenant.clone(), done.clone());
        tokio::spawn(async move {
            for n in 0..COMMANDS {
                let contact = new_contact(&format!("k{n}"), Some("bob"), NONE);
                tenant
                    .command(system(), contact)
                    .await
                    .unwrap_or_else(|e| panic!("command {n} acknowledged: {e}"));
                done.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    eventually("a third of the load sent", || {
        let done = done.clone();
        async move { done.load(Ordering::SeqCst) >= COMMANDS / 3 }
    })
    .await;
    leaves.stop().await;
    load.await.expect("every command acknowledged");
    let contacts = (0..COMMANDS).map(|n| format!("k{n}"));
    assert_each_stored_once(&server, &id, p, contacts).await;
    keeps.stop().await;
}

/// A history written before partitions moves into a partitioned stream by export and import
/// (docs/scaling.md, "Existing histories"): every commit keeps its position, command id and
/// chain value, the copy verifies, and instances serving half the partitions each answer from
/// it as the instance of the old history did, and take new commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_without_partitions_moves_into_a_partitioned_one() {
    let old = NatsServer::start_configured("sync_interval: always", "");
    let writer = start_command_service(&old, &[]).await;
    let reader = start_projection_service(&old, &[]).await;
    let tenants: Vec<AccountId> = accounts_in_every_partition()
        .into_iter()
        .step_by(3)
        .map(|(a, _)| a)
        .collect();
    for id in &tenants {
        let tenant = account(&old, id.as_str()).await;
        open_team(&tenant, TEAM).await;
        tenant
            .command(by("ann"), new_contact("c1", Some("bob"), &["dee"]))
            .await
            .unwrap();
        let o1 = new_opportunity("o1", "c1", None, NONE);
        tenant.command(by("ann"), o1).await.unwrap();
        let to_cid = change_owner(contact_ref("c1"), Some("cid"));
        tenant.command(by("ann"), to_cid).await.unwrap();
        eventually(&format!("R7 in {id}"), || owner_is(&tenant, "cid")).await;
    }
    writer.stop().await;
    reader.stop().await;
    let before = source::read(&history(&old).await, Range::ALL, &Progress::hidden())
        .await
        .unwrap();
    let mut lines = Vec::new();
    export(&before, &mut lines).unwrap();

    let new = mapped_server();
    let config = JetStreamConfig {
        partition_count: Some(PartitionCount::new(P).unwrap()),
        ..JetStreamConfig::default()
    };
    let target = JetStreamStore::connect(new.client().await, config)
        .await
        .unwrap();
    let imported = import(&target, &mut lines.as_slice(), &Progress::hidden())
        .await
        .unwrap();
    assert_eq!(imported.appended, before.commits.len());
    let after = source::read(&target, Range::ALL, &Progress::hidden())
        .await
        .unwrap();
    let marks = |h: &source::History| {
        h.commits
            .iter()
            .map(|c| (c.position, c.commit.command_id, c.commit.chain.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        marks(&after),
        marks(&before),
        "positions, ids and chains kept"
    );
    let report = verify::verify(&after, None, Options::default(), &Progress::hidden());
    assert!(report.ok(), "{report:?}");

    let mut running = Vec::new();
    for half in ["0-3", "4-7"] {
        running.push(start_command_service(&new, &flags(half)).await);
    }
    let projection = start_projection_service(&new, &["--partitions", "0-3"]).await;
    let other = start_projection_service(&new, &["--partitions", "4-7"]).await;
    for id in &tenants {
        let tenant = account(&new, id.as_str()).await;
        assert!(owner_is(&tenant, "cid").await, "{id}: as before the move");
        let c2 = new_contact("c2", Some("dee"), NONE);
        tenant
            .command(by("ann"), c2)
            .await
            .expect("a new command after the move");
    }
    let held = projection.model.read(|m| m.accounts().count());
    let ours = tenants
        .iter()
        .filter(|a| serves("0-3", PartitionCount::new(P).unwrap().of(a)))
        .count();
    assert_eq!(held, ours, "the projection of 0-3 holds its accounts only");
    projection.stop().await;
    other.stop().await;
    for r in running {
        r.stop().await;
    }
}

/// Snapshots in the JetStream object store, one per partition: an instance serving partitions
/// 0-3 leaves one for each of them when it stops; another instance for the same partitions,
/// without any local file (as on another machine), starts from them and replays nothing. After
/// the history moves on, an instance for 4-7 finds none of its own and replays its partitions,
/// leaving theirs; an instance for all eight then starts from both sets, written at different
/// positions (0-3's brought forward from their own commits), applies nothing more, and holds what
/// a replay of the whole history holds. A damaged partition's snapshot is ignored, that
/// partition replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_start_from_their_partitions_snapshots_in_the_object_store() {
    let server = mapped_server();
    let writer = start_command_service(&server, &flags("all")).await;
    let accounts = accounts_in_every_partition();
    // One account per partition, in partition order: the last commit below is partition 7's.
    let mut one_each = std::collections::BTreeMap::new();
    for (id, p) in &accounts {
        one_each.entry(*p).or_insert(id);
    }
    let mut tenants: Vec<Account> = Vec::new();
    for id in one_each.into_values() {
        tenants.push(account(&server, id.as_str()).await);
    }
    for tenant in &tenants {
        open_team(tenant, TEAM).await;
    }
    let snapshots = |set| ["--partitions", set, "--snapshot-in-jetstream"];
    // Ready once it has caught up with its partitions' history, all written before.
    let first = start_projection_service(&server, &snapshots("0-3")).await;
    assert!(
        first.model.counts().0 > 0,
        "the first start replays its partitions"
    );
    let before = first.model.read(|m| m.clone());
    first.stop().await; // writes partitions 0 to 3's snapshots
    let second = start_projection_service(&server, &snapshots("0-3")).await;
    assert_eq!(
        second.model.counts().0,
        0,
        "nothing replayed: the snapshots were used"
    );
    assert_eq!(second.model.read(|m| m.clone()), before, "the same model");
    second.stop().await;

    // The history moves on in every partition.
    for tenant in &tenants {
        let c2 = new_contact("c2", Some("bob"), &["dee"]);
        tenant.command(by("ann"), c2).await.expect("create c2");
    }
    let other = start_projection_service(&server, &snapshots("4-7")).await;
    assert!(
        other.model.counts().0 > 0,
        "no snapshot of 4-7 yet: replayed"
    );
    other.stop().await; // writes partitions 4 to 7's, at a later position than 0-3's

    // Partition 6's snapshot damaged: ignored, that partition read from the start.
    let bucket = async_nats::jetstream::new(server.client().await)
        .get_object_store("FOLLOWERS_snapshots")
        .await
        .unwrap();
    bucket
        .put("projection.p6", &mut b"FLWSNAP\0 not a snapshot".as_slice())
        .await
        .unwrap();
    let every = start_projection_service(&server, &snapshots("all")).await;
    assert_eq!(
        every.model.counts().0,
        0,
        "every commit came with the snapshots, or was read while they were put together"
    );
    let replayed = start_projection_service(&server, &["--partitions", "all"]).await;
    assert!(replayed.model.counts().0 > 0);
    assert_eq!(
        every.model.read(|m| m.clone()),
        replayed.model.read(|m| m.clone()),
        "the partitions' snapshots put together hold what a replay of the history holds"
    );
    every.stop().await;
    replayed.stop().await;
    writer.stop().await;
}

/// Two command instances serve the same partitions, so a caller's commands are shared between
/// them. Each command is decided after every command the caller was already answered for,
/// whichever instance stored it: a member registered right after its account was opened is
/// never refused as of an unknown account, though the other instance stored the opening and
/// this one may not have applied it yet (R1, R24: a refusal is a reply, and must be right).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_decided_after_those_answered_whichever_instance_stored_them() {
    let server = mapped_server();
    let one = start_command_service(&server, &flags("all")).await;
    let two = start_command_service(&server, &flags("all")).await;
    // Callers at once, so that the instances' feeds have something to do.
    let mut callers = tokio::task::JoinSet::new();
    for c in 0..12 {
        let tenants: Vec<Account> = {
            let mut t = Vec::new();
            for n in 0..6 {
                t.push(account(&server, &format!("tenant-{c}-{n}")).await);
            }
            t
        };
        callers.spawn(async move {
            for tenant in tenants {
                // Opens the account, then registers four members, each answered before the
                // next is sent.
                open_team(&tenant, TEAM).await;
            }
        });
    }
    while let Some(done) = callers.join_next().await {
        done.expect("every command of every caller answered as decided after the last");
    }
    one.stop().await;
    two.stop().await;
}

/// One of the two command instances serving a partition is killed (SIGKILL, as a crash) while
/// commands for that partition keep coming from several callers: every command is acknowledged
/// in the end (the client retries an unanswered one with the same command id, R24), and every
/// acknowledged one is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_instances_of_a_partition_under_load_loses_no_command() {
    const CALLERS: usize = 6;
    const EACH: usize = 20;
    let server = mapped_server();
    let keeps = start_command_service(&server, &flags("0-3")).await;
    let port = followers_tests::nats::free_port();
    let addr = format!("127.0.0.1:{port}");
    let doomed = std::process::Command::new(service_binary("command-service"))
        .args(["--nats-url", &server.url(), "--http-addr", &addr])
        .args(flags("2-5"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the second instance starts");
    let mut doomed = KilledOnDrop(doomed);
    let http = reqwest::Client::new();
    let ready = format!("http://{addr}/ready");
    eventually("the second instance is ready", || {
        let (http, ready) = (http.clone(), ready.clone());
        async move {
            let answer = http.get(&ready).send().await;
            answer.is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    let (id, p) = accounts_in_every_partition()
        .into_iter()
        .find(|(_, p)| p.0 == 2 || p.0 == 3)
        .unwrap();
    let tenant = account(&server, id.as_str()).await;
    open_team(&tenant, TEAM).await;
    let done = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for c in 0..CALLERS {
        let (tenant, done) = (tenant.clone(), done.clone());
        callers.push(tokio::spawn(async move {
            for n in 0..EACH {
                let contact = new_contact(&format!("k{c}-{n}"), Some("bob"), NONE);
                tenant
                    .command(system(), contact)
                    .await
                    .unwrap_or_else(|e| panic!("command {c}-{n} acknowledged: {e}"));
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let metrics = format!("http://{addr}/metrics");
    eventually(
        "the second instance has served commands of the load",
        || {
            let (http, metrics) = (http.clone(), metrics.clone());
            async move {
                let Ok(r) = http.get(&metrics).send().await else {
                    return false;
                };
                let text = r.text().await.unwrap_or_default();
                text.lines().any(|l| {
                    l.starts_with("followers_commands_total{command=\"create_contact\"")
                        && !l.ends_with(" 0")
                })
            }
        },
    )
    .await;
    doomed.0.kill().expect("SIGKILL");
    doomed.0.wait().expect("the killed instance is gone");
    for caller in callers {
        caller.await.expect("every command acknowledged");
    }
    assert_eq!(done.load(Ordering::SeqCst), CALLERS * EACH);
    let contacts = (0..CALLERS).flat_map(|c| (0..EACH).map(move |n| format!("k{c}-{n}")));
    assert_each_stored_once(&server, &id, p, contacts).await;
    keeps.stop().await;
}

/// A child process that does not outlive a failed test.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A command instance reads the history straight from the store when its feed is slow to bring
/// its own commit (`LiveModel::read_up_to`): an instance of some partitions steps over the
/// others' commits there too, as its feed would, and never holds their accounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_up_to_a_position_keeps_a_model_to_its_partitions() {
    let server = mapped_server();
    let writer = start_command_service(&server, &flags("all")).await;
    let accounts = accounts_in_every_partition();
    for (id, _) in &accounts {
        open_team(&account(&server, id.as_str()).await, TEAM).await;
    }
    let all = history(&server).await;
    let head = EventStore::head(&all).await.unwrap();
    let config = JetStreamConfig {
        owned: "0-3".parse().unwrap(),
        ..JetStreamConfig::default()
    };
    let half = JetStreamStore::bind(server.client().await, config)
        .await
        .unwrap();
    let model = followers_store::LiveModel::new(followers_shared::read_model::ReadModel::new());
    model.read_up_to(&half, head).await.unwrap();
    assert_eq!(model.position(), head, "every position passed");
    let held: BTreeSet<AccountId> = model.read(|m| m.accounts().map(|(a, _)| a.clone()).collect());
    let ours: BTreeSet<AccountId> = accounts
        .iter()
        .filter(|(_, p)| serves("0-3", *p))
        .map(|(a, _)| a.clone())
        .collect();
    assert_eq!(held, ours, "only the accounts of partitions 0-3");
    writer.stop().await;
}

/// Every contact of `contacts` in `account` was stored exactly once: a command acknowledged
/// was never lost, and a retried one never applied twice (R24).
async fn assert_each_stored_once(
    server: &NatsServer,
    account: &AccountId,
    partition: Partition,
    contacts: impl Iterator<Item = String>,
) {
    let store = history(server).await;
    for contact in contacts {
        let stream = StreamId::record(account.clone(), contact_ref(&contact));
        let commits = store.read_stream(&stream).await.unwrap();
        let what = format!("contact {contact} of {account} (partition {partition})");
        assert_eq!(commits.len(), 1, "{what} stored once");
    }
}

/// An auditor of one account of a partitioned history gives the number of partitions, since it
/// may not read the stream's metadata: without it, the account's subjects are looked for in the
/// layout without partitions, find nothing, and the error says to give it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_of_one_account_without_the_partition_count_says_to_give_it() {
    use clap::Parser;
    let server = mapped_server();
    let writer = start_command_service(&server, &flags("all")).await;
    open_team(&account(&server, "acme").await, TEAM).await;
    writer.stop().await;
    let url = server.url();
    let audit = |extra: &[&str]| {
        let mut argv = vec!["followers-audit", "--quiet", "--nats-url", url.as_str()];
        argv.extend_from_slice(extra);
        followers_audit::Cli::parse_from(argv)
    };
    let mut out = Vec::new();
    let without = followers_audit::run(audit(&["verify", "--account", "acme"]), &mut out).await;
    let error = without.expect_err("nothing of acme read").to_string();
    assert!(error.contains("--partition-count"), "{error}");
    let with = audit(&["--partition-count", "8", "verify", "--account", "acme"]);
    let outcome = followers_audit::run(with, &mut out).await.unwrap();
    assert_eq!(outcome, followers_audit::Outcome::Done);
}

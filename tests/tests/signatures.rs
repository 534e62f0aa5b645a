#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Signed history against a real nats-server: the command service signs what it writes,
//! `followers-audit verify` tells its commits from anyone else's and finds a commit removed from
//! the end of a stream through the signed head, keys rotate, and services started with
//! `--require-signatures` do not apply a forged commit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream;
use chrono::Utc;
use clap::Parser;
use followers_audit::progress::Progress;
use followers_audit::source::{self, History, Range};
use followers_audit::{Cli, Outcome};
use followers_client::{Account, Error, Retry, Transient};
use followers_shared::command::ChangeSettings;
use followers_shared::command::CommandMeta;
use followers_shared::error::ErrorCode;
use followers_shared::event::EventBody;
use followers_shared::ids::CommandId;
use followers_shared::model::SettingsChange;
use followers_shared::model::{Actor, Role};
use followers_shared::signing::{SIGNED_HEAD_KEY, SignedHead, Signer};
use followers_shared::store::{Commit, EventStore, Position, StoredCommit, StreamId, chain_hash};
use followers_tests::NatsServer;
use followers_tests::stack::{
    TEAM, contact_ref, history, open_team, start_command_service, start_projection_service,
};
use followers_tests::typed::{NONE, account, add, by, change_owner, new_contact};
use serde_json::{Value, json};

fn acme() -> StreamId {
    StreamId::account("acme".parse().unwrap())
}

fn c(id: &str) -> StreamId {
    StreamId::record(
        "acme".parse().unwrap(),
        followers_tests::stack::contact_ref(id),
    )
}

/// Runs `followers-audit` with `args` against `server`; its outcome and stdout.
async fn audit(server: &NatsServer, args: &[&str]) -> (Outcome, String) {
    let url = server.url();
    let mut argv = vec!["followers-audit", "--quiet", "--nats-url", url.as_str()];
    argv.extend_from_slice(args);
    let mut out = Vec::new();
    let outcome = followers_audit::run(Cli::parse_from(argv), &mut out)
        .await
        .expect("followers-audit runs");
    (outcome, String::from_utf8(out).unwrap())
}

/// `followers-audit keygen` for `id` into `dir`: the private and the public key file.
async fn keygen(server: &NatsServer, dir: &Path, id: &str) -> (PathBuf, PathBuf) {
    let (outcome, _) = audit(
        server,
        &["keygen", "--key-id", id, "--out", dir.to_str().unwrap()],
    )
    .await;
    assert_eq!(outcome, Outcome::Done);
    (dir.join(format!("{id}.key")), dir.join(format!("{id}.pub")))
}

/// `verify --json` with these public keys: the report.
async fn verify(server: &NatsServer, public_keys: &[&Path]) -> Value {
    let mut args = vec!["verify", "--json"];
    for k in public_keys {
        args.extend(["--public-key", k.to_str().unwrap()]);
    }
    let (outcome, out) = audit(server, &args).await;
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    let problems = report["problems"].as_array().unwrap().len();
    match outcome {
        Outcome::Done => assert_eq!(problems, 0, "{report}"),
        Outcome::VerifyFailed { problems: n, .. } => assert_eq!(n, problems, "{report}"),
    }
    report
}

/// `(kind, position)` of every problem, in report order.
fn problems(report: &Value) -> Vec<(String, Option<u64>)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap().to_owned(),
                p["position"].as_u64(),
            )
        })
        .collect()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

async fn read_all<S: EventStore>(store: &S) -> History {
    source::read(store, Range::ALL, &Progress::hidden())
        .await
        .unwrap()
}

/// Publishes `commit` to `stream`'s history subject directly, as someone with access to NATS
/// but not going through the command service; its position.
async fn publish_behind_the_service(
    server: &NatsServer,
    stream: &StreamId,
    commit: &Commit,
) -> u64 {
    let js = jetstream::new(server.client().await);
    let [a, k, i] = stream.tokens();
    js.publish(
        format!("followers.history.{a}.{k}.{i}"),
        commit.encode().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap()
    .sequence
}

/// The chain value of `stream`'s last commit as stored.
async fn last_chain(server: &NatsServer, stream: &StreamId) -> Option<String> {
    let commits = history(server).await.read_stream(stream).await.unwrap();
    commits.last().and_then(|c| c.commit.chain.clone())
}

/// "bob is now an admin of acme", as a forger would write it.
fn bob_made_admin() -> Vec<followers_shared::event::Event> {
    let meta = CommandMeta {
        command_id: CommandId::new(),
        actor: Actor::System,
        caller: None,
        correlation: uuid::Uuid::now_v7(),
        causation: None,
        at: Utc::now(),
    };
    meta.events(vec![EventBody::MemberRoleChanged {
        user: "bob".parse().unwrap(),
        role: Role::Admin,
    }])
}

/// The signed head the command service keeps in the checkpoint bucket.
async fn signed_head(server: &NatsServer) -> SignedHead {
    let js = jetstream::new(server.client().await);
    let bucket = js.get_key_value("FOLLOWERS_checkpoints").await.unwrap();
    let bytes = bucket
        .get(SIGNED_HEAD_KEY)
        .await
        .unwrap()
        .expect("a signed head");
    SignedHead::decode(&bytes).unwrap()
}

/// `create_contact` of `id` owned by cid, by ann; its position.
async fn contact_of_cid(f: &Account, id: &str) -> u64 {
    let contact = new_contact(id, Some("cid"), NONE);
    f.command(by("ann"), contact).await.unwrap().position().0
}

/// The account, a contact c1 owned by cid with dee following, then a contact c2.
async fn scripted(f: &Account) -> (u64, u64) {
    open_team(f, TEAM).await;
    contact_of_cid(f, "c1").await;
    let dee = add(contact_ref("c1"), &["dee"]);
    let c1_last = f.command(by("cid"), dee).await.unwrap().position().0;
    let c2 = contact_of_cid(f, "c2").await;
    (c1_last, c2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_service_signs_every_commit_and_verify_accepts_them() {
    let server = NatsServer::start();
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = keygen(&server, keys.path(), "k1").await;
    let service = start_command_service(&server, &["--signing-key-file", s(&private)]).await;
    let f = account(&server, "acme").await;
    let (_, last) = scripted(&f).await;
    service.stop().await;

    let h = read_all(&history(&server).await).await;
    assert!(!h.commits.is_empty());
    for c in &h.commits {
        let sig = c.commit.signature.as_ref().expect("every commit is signed");
        assert_eq!(sig.key_id, "k1");
        assert_eq!(sig.ed25519.len(), 128);
    }
    // The head the service signed on shutdown covers everything it wrote.
    let head = signed_head(&server).await;
    assert_eq!(head.position, Position(last));
    assert_eq!(head.key_id, "k1");

    let report = verify(&server, &[&public]).await;
    assert_eq!(report["signatures_checked"], json!(true));
    assert_eq!(report["signed_by"], json!({"k1": h.commits.len()}));
    assert_eq!(report["signed_head"]["position"], json!(last));
    // The private key file is not a public key.
    let cli = Cli::parse_from([
        "followers-audit",
        "--nats-url",
        server.url().as_str(),
        "verify",
        "--public-key",
        s(&private),
    ]);
    let err = followers_audit::run(cli, &mut Vec::new())
        .await
        .expect_err("a private key is refused as a public key");
    assert!(err.to_string().contains("holds a private key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_forged_altered_and_foreign_commits_with_their_position() {
    let server = NatsServer::start();
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = keygen(&server, keys.path(), "k1").await;
    let service = start_command_service(&server, &["--signing-key-file", s(&private)]).await;
    let f = account(&server, "acme").await;
    scripted(&f).await;
    service.stop().await;
    let report = verify(&server, &[&public]).await;
    assert!(problems(&report).is_empty(), "{report}");

    let genuine = last_chain(&server, &acme()).await;
    // 1. A correct chain value and no signature: the hash chain alone would let it pass.
    let unsigned = Commit::sealed(CommandId::new(), bob_made_admin(), genuine.as_deref());
    let p_unsigned = publish_behind_the_service(&server, &acme(), &unsigned).await;
    // 2. Signed by a key that claims the id k1 but is not the service's.
    let elsewhere = tempfile::tempdir().unwrap();
    let impostor = signer(&keygen(&server, elsewhere.path(), "k1").await.0);
    let forged = impostor.seal(
        &acme(),
        CommandId::new(),
        bob_made_admin(),
        genuine.as_deref(),
    );
    let p_impostor = publish_behind_the_service(&server, &acme(), &forged).await;
    // 3. Signed by a key that is not configured at all.
    let stranger = signer(&keygen(&server, elsewhere.path(), "k9").await.0);
    let foreign = stranger.seal(
        &acme(),
        CommandId::new(),
        bob_made_admin(),
        genuine.as_deref(),
    );
    let p_foreign = publish_behind_the_service(&server, &acme(), &foreign).await;
    // 4. A genuine commit of c1 altered to add bob instead of dee: signature and chain kept.
    let original = history(&server).await.read_stream(&c("c1")).await.unwrap();
    let original: &StoredCommit = original.last().unwrap();
    let mut altered = original.commit.clone();
    if let EventBody::FollowersAdded { followers, .. } = &mut altered.events[0].body {
        followers[0].user = "bob".parse().unwrap();
    } else {
        panic!("c1's last commit adds dee: {:?}", altered.events);
    }
    let p_altered = publish_behind_the_service(&server, &c("c1"), &altered).await;
    // 5. The same, with its chain value recomputed to follow from c1's last commit.
    altered.chain = Some(chain_hash(
        original.commit.chain.as_deref(),
        &altered.events,
    ));
    let p_rechained = publish_behind_the_service(&server, &c("c1"), &altered).await;

    let report = verify(&server, &[&public]).await;
    assert_eq!(
        problems(&report),
        vec![
            ("unsigned".to_owned(), Some(p_unsigned)),
            ("bad_signature".to_owned(), Some(p_impostor)),
            ("unknown_key".to_owned(), Some(p_foreign)),
            ("chain_broken".to_owned(), Some(p_altered)),
            ("bad_signature".to_owned(), Some(p_rechained)),
        ],
        "{report}"
    );
    for p in report["problems"].as_array().unwrap() {
        let stream = p["stream"].as_str().unwrap();
        assert!(
            stream == "acme.account._" || stream == "acme.contact.c1",
            "{p}"
        );
    }
    // Without public keys the first forged commit, whose chain value is right, passes unnoticed:
    // that is what signatures add.
    let unchecked = verify(&server, &[]).await;
    assert_eq!(unchecked["signatures_checked"], json!(false));
    assert!(
        !problems(&unchecked)
            .iter()
            .any(|(_, p)| *p == Some(p_unsigned)),
        "{unchecked}"
    );
}

/// The signer of a private key file.
fn signer(private: &Path) -> Signer {
    Signer::from_private_key_file(private, std::fs::read_to_string(private)).unwrap()
}

/// Deletes the history stream and publishes `commits` into a new one: what someone with
/// JetStream administration rights (not only publish rights) can do.
async fn rewrite_history(server: &NatsServer, commits: &[StoredCommit]) {
    let js = jetstream::new(server.client().await);
    js.delete_stream("FOLLOWERS").await.unwrap();
    history(server).await;
    for c in commits {
        publish_behind_the_service(server, &c.stream, &c.commit).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_last_commit_of_a_stream_is_found_through_the_signed_head() {
    let server = NatsServer::start();
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = keygen(&server, keys.path(), "k1").await;
    let service = start_command_service(&server, &["--signing-key-file", s(&private)]).await;
    let f = account(&server, "acme").await;
    let (c1_last, c2) = scripted(&f).await;
    service.stop().await;
    let earlier_head = signed_head(&server).await;
    assert_eq!(earlier_head.position, Position(c2));
    // Later, more commits and a later head.
    let service = start_command_service(&server, &["--signing-key-file", s(&private)]).await;
    let f = account(&server, "acme").await;
    let c3 = contact_of_cid(&f, "c3").await;
    service.stop().await;
    assert_eq!(signed_head(&server).await.position, Position(c3));
    let whole = read_all(&history(&server).await).await;
    assert_eq!(whole.head, Position(c3));
    let report = verify(&server, &[&public]).await;
    assert!(problems(&report).is_empty(), "{report}");

    // c1's last commit (dee added) taken out; everything else kept, signatures and all. Every
    // chain is still whole and every commit validly signed: only the head shows it. The history
    // is now shorter than the head says.
    let without: Vec<StoredCommit> = whole
        .commits
        .iter()
        .filter(|c| c.position.0 != c1_last)
        .cloned()
        .collect();
    rewrite_history(&server, &without).await;
    let report = verify(&server, &[&public]).await;
    assert_eq!(
        problems(&report),
        vec![("head_ahead".to_owned(), Some(c3))],
        "{report}"
    );

    // Even the earlier head, written before c3 (as if the last one had been lost, or rolled
    // back), shows it: the history up to its position is not what it signed.
    let js = jetstream::new(server.client().await);
    let bucket = js.get_key_value("FOLLOWERS_checkpoints").await.unwrap();
    bucket
        .put(SIGNED_HEAD_KEY, earlier_head.encode().into())
        .await
        .unwrap();
    let report = verify(&server, &[&public]).await;
    assert_eq!(
        problems(&report),
        vec![("head_differs".to_owned(), Some(c2))],
        "{report}"
    );
    // The untouched history verifies against that earlier head.
    rewrite_history(&server, &whole.commits).await;
    let report = verify(&server, &[&public]).await;
    assert!(problems(&report).is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_signed_by_rotated_keys_all_verify() {
    let server = NatsServer::start();
    let keys = tempfile::tempdir().unwrap();
    let (old_private, old_public) = keygen(&server, keys.path(), "2025").await;
    let (new_private, new_public) = keygen(&server, keys.path(), "2026").await;
    let service = start_command_service(&server, &["--signing-key-file", s(&old_private)]).await;
    let f = account(&server, "acme").await;
    open_team(&f, TEAM).await;
    service.stop().await;
    let old = read_all(&history(&server).await).await.commits.len();

    // The new key signs from now on; the old one is still trusted for what it signed.
    let service = start_command_service(
        &server,
        &[
            "--signing-key-file",
            s(&new_private),
            "--require-signatures",
            "--public-key",
            s(&old_public),
        ],
    )
    .await;
    let f = account(&server, "acme").await;
    let c1 = new_contact("c1", Some("bob"), NONE);
    let last = f.command(by("ann"), c1).await.unwrap().position();
    service.stop().await;
    assert_eq!(signed_head(&server).await.key_id, "2026");
    assert_eq!(signed_head(&server).await.position, last);

    let report = verify(&server, &[&old_public, &new_public]).await;
    assert_eq!(
        report["signed_by"],
        json!({"2025": old, "2026": 1}),
        "{report}"
    );

    // With only the new key, each of the old key's commits is reported as signed by a key that
    // is not configured (and the head, which counts them, no longer matches what is accepted).
    let report = verify(&server, &[&new_public]).await;
    let mut expected: Vec<(String, Option<u64>)> = (1..=old as u64)
        .map(|p| ("unknown_key".to_owned(), Some(p)))
        .collect();
    expected.push(("head_differs".to_owned(), Some(last.0)));
    assert_eq!(problems(&report), expected, "{report}");
}

/// GETs `path` from a projection's HTTP API; the JSON body.
async fn get(addr: std::net::SocketAddr, path: &str) -> Value {
    reqwest::get(format!("http://{addr}{path}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_requiring_signatures_do_not_apply_a_forged_commit() {
    let server = NatsServer::start();
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = keygen(&server, keys.path(), "k1").await;
    let service = start_command_service(
        &server,
        &["--signing-key-file", s(&private), "--require-signatures"],
    )
    .await;
    let strict = start_projection_service(
        &server,
        &["--require-signatures", "--public-key", s(&public)],
    )
    .await;
    let trusting = start_projection_service(&server, &[]).await;
    let f = account(&server, "acme").await;
    scripted(&f).await;

    // "bob is now an admin", published behind the service with a correct chain value.
    let genuine = last_chain(&server, &acme()).await;
    let forged = Commit::sealed(CommandId::new(), bob_made_admin(), genuine.as_deref());
    let p_forged = publish_behind_the_service(&server, &acme(), &forged).await;
    let after = contact_of_cid(&f, "c3").await;
    assert!(after > p_forged);

    let access = format!(
        "/v1/accounts/acme/access?user=bob&action=change_owner&kind=contact&id=c1&min_position={after}"
    );
    // A projection that trusts whatever is in the history makes bob an admin...
    let fooled = get(trusting.http_addr, &access).await;
    assert_eq!(fooled["answer"]["allowed"], json!(true), "{fooled}");
    assert_eq!(fooled["answer"]["reason"], json!("admin"), "{fooled}");
    // ...one that requires signatures does not.
    let answer = get(strict.http_addr, &access).await;
    assert_eq!(answer["ok"], json!(true), "{answer}");
    assert_eq!(answer["answer"]["allowed"], json!(false), "{answer}");
    let account = get(
        strict.http_addr,
        &format!("/v1/accounts/acme?min_position={after}"),
    )
    .await;
    let bob = account["answer"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user"] == json!("bob"))
        .cloned()
        .unwrap();
    assert_eq!(bob["role"], json!("user"), "{account}");
    assert_eq!(strict.model.refused(), 1);
    assert!(strict.model.refused_at(Position(p_forged)));
    assert_eq!(trusting.model.refused(), 0);

    // The command service does not decide against it either: bob may not reassign c1.
    let r = f.command(by("bob"), change_owner(contact_ref("c1"), Some("bob")));
    assert!(r.await.is_err());
    // Nor does it build on it: the account's own stream, which holds it, takes no more commits
    // until an operator repairs the history.
    // One attempt: the client would try a `conflict` again.
    let change = SettingsChange {
        allow_different_owners: Some(true),
        ..SettingsChange::default()
    };
    let r = f.command(by("ann"), ChangeSettings { change });
    let r = r.retry(Retry::once(Duration::from_secs(30))).await;
    assert!(
        matches!(
            r,
            Err(Error::GaveUp {
                last: Transient::Retry {
                    code: ErrorCode::Conflict,
                    ..
                },
                ..
            })
        ),
        "{r:?}"
    );

    // The refusal is counted in the metrics (one recorder per process: the trusting one goes).
    trusting.stop().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = reqwest::get(format!("http://{}/metrics", strict.http_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics
            .lines()
            .any(|l| l.trim() == "followers_commits_refused_total 1")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no followers_commits_refused_total 1 in:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    strict.stop().await;
    service.stop().await;
}

/// In a partitioned history each partition has its own signed head (`signed-head.p<N>`), of the
/// streams of its accounts, written by the instances serving it: two instances serving half the
/// partitions each never replace each other's, and `verify --partition-count` compares each
/// partition's streams with its own head. A partition's head missing, or another partition's
/// head in its place, is a problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_partition_has_its_own_signed_head() {
    use followers_shared::partition::{Partition, PartitionCount};
    use followers_shared::signing::signed_head_key;
    let count = PartitionCount::new(8).unwrap();
    let server = NatsServer::start_configured(
        "",
        &followers_tests::nats::partition_mappings("followers", count),
    );
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = keygen(&server, keys.path(), "k1").await;
    let signed = |half| {
        [
            "--partition-count",
            "8",
            "--partitions",
            half,
            "--signing-key-file",
            s(&private),
        ]
    };
    let low = start_command_service(&server, &signed("0-3")).await;
    let high = start_command_service(&server, &signed("4-7")).await;
    // acme is in partition 7; the other account in one of 0-3.
    let other = (0..)
        .map(|n| format!("tenant-{n}"))
        .find(|id| count.of(&id.parse().unwrap()).0 < 4)
        .unwrap();
    let other_partition = count.of(&other.parse().unwrap());
    scripted(&account(&server, "acme").await).await;
    scripted(&account(&server, &other).await).await;
    low.stop().await;
    high.stop().await;

    let pk = s(&public);
    let args = [
        "--partition-count",
        "8",
        "verify",
        "--json",
        "--public-key",
        pk,
    ];
    let (outcome, out) = audit(&server, &args).await;
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(outcome, Outcome::Done, "{report}");
    let compared: Vec<u64> = report["partition_heads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["partition"].as_u64().unwrap())
        .collect();
    assert!(compared.contains(&7), "{report}");
    assert!(compared.contains(&u64::from(other_partition.0)), "{report}");

    // Partition 7's head replaced by the other partition's: its streams differ from it.
    let js = jetstream::new(server.client().await);
    let bucket = js.get_key_value("FOLLOWERS_checkpoints").await.unwrap();
    let theirs = bucket
        .get(signed_head_key(Some(other_partition)))
        .await
        .unwrap()
        .unwrap();
    let seven = signed_head_key(Some(Partition(7)));
    bucket.put(&seven, theirs).await.unwrap();
    let (_, out) = audit(&server, &args).await;
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    let kinds: Vec<String> = problems(&report).into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, ["head_differs"], "{report}");
    // And without it, partition 7's commits have no head to be checked against.
    bucket.delete(&seven).await.unwrap();
    let (_, out) = audit(&server, &args).await;
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    let kinds: Vec<String> = problems(&report).into_iter().map(|(k, _)| k).collect();
    assert_eq!(kinds, ["head_missing"], "{report}");
}

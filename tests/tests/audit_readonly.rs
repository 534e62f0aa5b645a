#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The audit tool as one account's auditor (issue 12): on a 3-node cluster running the shipped
//! deploy/nats/accounts.conf, `followers-audit --account acme` run as the user auditor-acme
//! reads acme's history, nothing of globex's, with nothing but that user's grants, and changes
//! nothing: the 3-replica history keeps its configuration whatever the tool's default flags say.
//! Asking for another account fails at once with the server's refusal.

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use clap::Parser;
use followers_audit::progress::Progress;
use followers_audit::source::{self, Range, Scope};
use followers_audit::{AuditError, Cli, Outcome};
use followers_client::{Account, Client, user};
use followers_shared::bounded::Users;
use followers_shared::command::CreateContact;
use followers_shared::store::StoredCommit;
use followers_tests::NatsCluster;
use followers_tests::shipped::{Connection, Init, Keys, shipped};
use followers_tests::stack::{TEAM, open_team};
use serde_json::{Value, json};

fn new_contact(id: &str, owner: Option<&str>) -> CreateContact {
    CreateContact {
        contact: id.parse().unwrap(),
        owner: owner.map(|o| o.parse().unwrap()),
        followers: Users::default(),
    }
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// The cluster with the shipped accounts, and every user's seed in `keys`.
struct Deployment {
    cluster: NatsCluster,
    keys: Keys,
}

impl Deployment {
    fn start() -> Self {
        let keys = Keys::provision();
        let cluster = NatsCluster::start_including(&shipped("accounts.conf"), &keys.env);
        Self { cluster, keys }
    }

    /// The NATS flags of a process running as `user`, given every node.
    fn flags(&self, user: &str, inbox: &str) -> Vec<String> {
        self.keys.flags(user, inbox, &self.cluster.urls().join(","))
    }

    async fn connect(&self, user: &str, inbox: &str) -> Connection {
        self.keys.connect(user, inbox, self.cluster.urls()).await
    }

    /// `followers-admin init --replicas 3` as the admin user, once the cluster has elected its
    /// JetStream leader (bounded).
    async fn init(&self) {
        let mut argv = vec!["followers-admin".to_owned()];
        argv.extend(self.flags("admin", "_INBOX_followers_admin"));
        argv.extend(["--replicas".to_owned(), "3".to_owned()]);
        let init = Init::parse_from(argv);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match followers_admin::init(&init.store).await {
                Ok(()) => return,
                Err(e) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "the cluster never took the history: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The command service as its own user, with the shipped caller policy.
    async fn command_service(&self) -> followers_command_service::Running {
        let mut argv = vec!["command-service".to_owned()];
        argv.extend(self.flags("command", "_INBOX_followers_command"));
        argv.extend([
            "--caller-policy".to_owned(),
            path(&shipped("caller-policy.json")),
        ]);
        followers_command_service::start(followers_command_service::Config::parse_from(argv))
            .await
            .expect("the command service starts as its own user")
    }

    /// `account`'s commands through the typed client, over `user`'s own authenticated
    /// connection.
    async fn caller(&self, user: &str, inbox: &str, account: &str) -> Account {
        let nats = self.connect(user, inbox).await.client;
        Client::new(nats).account(account.parse().unwrap())
    }

    /// `followers-audit <args>` as `user`, with default flags otherwise.
    async fn audit(
        &self,
        user: &str,
        inbox: &str,
        args: &[&str],
    ) -> Result<(Outcome, String), AuditError> {
        let mut argv = vec!["followers-audit".to_owned(), "--quiet".to_owned()];
        argv.extend(self.flags(user, inbox));
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        let mut out = Vec::new();
        let outcome = followers_audit::run(Cli::parse_from(argv), &mut out).await?;
        Ok((outcome, String::from_utf8(out).unwrap()))
    }

    async fn auditor(&self, args: &[&str]) -> Result<(Outcome, String), AuditError> {
        self.audit("auditor-acme", "_INBOX_audit_acme", args).await
    }

    /// The whole history, read as the admin.
    async fn everything(&self) -> Vec<StoredCommit> {
        let mut argv = vec!["followers-audit".to_owned()];
        argv.extend(self.flags("admin", "_INBOX_followers_admin"));
        let args = Init::parse_from(argv).store;
        source::load(&args, &Scope::Whole, Range::ALL, &Progress::hidden())
            .await
            .expect("the admin reads everything")
            .commits
    }

    /// The history stream's and the checkpoint bucket's configurations, as the admin sees them.
    async fn configs(&self) -> (jetstream::stream::Config, jetstream::stream::Config) {
        let admin = self.connect("admin", "_INBOX_followers_admin").await;
        let js = jetstream::new(admin.client);
        let mut history = js.get_stream("FOLLOWERS").await.unwrap();
        let mut bucket = js.get_stream("KV_FOLLOWERS_checkpoints").await.unwrap();
        (
            history.info().await.unwrap().config.clone(),
            bucket.info().await.unwrap().config.clone(),
        )
    }

    /// Every permission violation the nodes logged.
    fn violations(&self) -> Vec<String> {
        self.cluster
            .nodes
            .iter()
            .flat_map(|n| {
                n.log()
                    .lines()
                    .filter(|l| l.contains("Violation"))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// Commits for acme and for globex, each through its own caller account.
async fn write_both(d: &Deployment) {
    let acme = d.caller("caller-acme", "_INBOX_acme_crm", "acme").await;
    open_team(&acme, TEAM).await;
    let c1 = new_contact("c1", Some("bob"));
    acme.command(user(&"ann".parse().unwrap()), c1)
        .await
        .expect("create_contact c1");
    let globex = d
        .caller("caller-globex", "_INBOX_globex_crm", "globex")
        .await;
    open_team(&globex, &[("gus", "admin", "all")]).await;
    let gx1 = new_contact("gx1", None);
    globex
        .command(user(&"gus".parse().unwrap()), gx1)
        .await
        .expect("create_contact gx1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditor_of_acme_reads_acmes_history_only_and_changes_nothing() {
    let d = Deployment::start();
    d.init().await;
    let service = d.command_service().await;
    write_both(&d).await;
    let everything = d.everything().await;
    let acme: Vec<u64> = everything
        .iter()
        .filter(|c| c.stream.account.as_str() == "acme")
        .map(|c| c.position.0)
        .collect();
    assert!(acme.len() < everything.len(), "globex wrote too");
    let before = d.configs().await;
    assert_eq!(before.0.num_replicas, 3);

    // A consumer an interrupted run left, already past acme's first commits, is replaced, not
    // resumed.
    let left = d.connect("auditor-acme", "_INBOX_audit_acme").await;
    let stream = jetstream::new(left.client.clone())
        .get_stream_no_info("FOLLOWERS")
        .await
        .unwrap();
    let interrupted = stream
        .create_consumer(pull::Config {
            name: Some("audit-acme".to_owned()),
            filter_subject: "followers.history.acme.>".to_owned(),
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut taken = interrupted
        .fetch()
        .max_messages(2)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    while futures::StreamExt::next(&mut taken).await.is_some() {}

    // verify, with nothing but the auditor's grants and the tool's default flags.
    let (outcome, text) = d
        .auditor(&["verify", "--account", "acme"])
        .await
        .expect("the auditor verifies acme");
    assert_eq!(outcome, Outcome::Done, "{text}");
    assert!(text.contains("account acme only"), "{text}");
    assert!(text.contains(&format!("{} commits", acme.len())), "{text}");
    let (_, json_report) = d
        .auditor(&["verify", "--account", "acme", "--json"])
        .await
        .unwrap();
    let report: Value = serde_json::from_str(json_report.trim()).unwrap();
    assert_eq!(report["account"], "acme", "{report}");
    assert_eq!(report["commits"], json!(acme.len()), "{report}");
    assert_eq!(report["problems"], json!([]), "{report}");

    // export, a timeline and a point in time: acme's commits, at their positions, and no other.
    let (_, export) = d.auditor(&["export", "--account", "acme"]).await.unwrap();
    let exported: Vec<StoredCommit> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let positions: Vec<u64> = exported.iter().map(|c| c.position.0).collect();
    assert_eq!(positions, acme);
    assert!(
        !export.contains("globex") && !export.contains("gx1"),
        "{export}"
    );
    let (_, timeline) = d
        .auditor(&["history", "--account", "acme", "--contact", "c1"])
        .await
        .unwrap();
    assert!(
        timeline.contains("contact c1 created, owner bob"),
        "{timeline}"
    );
    let last = acme.last().unwrap().to_string();
    let (_, at) = d
        .auditor(&[
            "at",
            "--account",
            "acme",
            "--contact",
            "c1",
            "--position",
            &last,
            "--user",
            "bob",
            "--json",
        ])
        .await
        .unwrap();
    let at: Value = serde_json::from_str(at.trim()).unwrap();
    assert_eq!(at["owner"], "bob", "{at}");
    // Reading as the auditor provoked no refusal.
    assert_eq!(d.violations(), Vec::<String>::new());

    // Another account: refused by the server, reported at once.
    let other = tokio::time::timeout(
        Duration::from_secs(15),
        d.auditor(&["verify", "--account", "globex"]),
    )
    .await
    .expect("a refusal, not a hang");
    let err = other.expect_err("acme's auditor may not read globex");
    assert!(matches!(err, AuditError::Refused { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("globex") && message.contains("Permissions Violation"),
        "{message}"
    );
    let violations = d.violations();
    assert!(!violations.is_empty());
    assert!(
        violations
            .iter()
            .all(|v| v.contains("$JS.API.CONSUMER.CREATE.FOLLOWERS.audit-globex.")),
        "{violations:#?}"
    );

    // The admin's whole-history reads and an import into the existing history, with the
    // default --replicas 1, change nothing either.
    let admin = ["admin", "_INBOX_followers_admin"];
    let (outcome, text) = d.audit(admin[0], admin[1], &["verify"]).await.unwrap();
    assert_eq!(outcome, Outcome::Done, "{text}");
    let empty = tempfile::NamedTempFile::new().unwrap();
    let (_, imported) = d
        .audit(
            admin[0],
            admin[1],
            &["import", "--input", empty.path().to_str().unwrap()],
        )
        .await
        .unwrap();
    assert!(imported.contains("imported 0 commits"), "{imported}");

    let after = d.configs().await;
    assert_eq!(after.0.num_replicas, 3);
    assert_eq!(after, before);
    let admin = d.connect("admin", "_INBOX_followers_admin").await;
    let stream = jetstream::new(admin.client.clone())
        .get_stream("FOLLOWERS")
        .await
        .unwrap();
    assert!(
        stream.consumer_info("audit-acme").await.is_err(),
        "the auditor's consumer is deleted when done"
    );
    assert!(admin.errors().is_empty());
    service.stop().await;
}

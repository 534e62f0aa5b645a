#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Least privilege, as shipped: nats-server runs with deploy/nats/single.conf and
//! deploy/nats/accounts.conf themselves (only moved onto loopback, a free port and a temporary
//! folder), with one nkey per user made by `followers-admin nkeys`. The services run as their own
//! users, the command service with deploy/nats/caller-policy.json. Each test shows what a user
//! can do and what the server refuses it.

use std::path::Path;
use std::time::Duration;

use async_nats::jetstream;
use clap::Parser;
use followers_client::{Account, Client, Error, Retry, system};
use followers_shared::bounded::Text;
use followers_shared::command::OpenAccount;
use followers_shared::error::ErrorCode;
use followers_shared::wire::{AccountQuery, CommandReply, RecordHistory};
use followers_tests::NatsServer;
use followers_tests::shipped::{Connection, Init, Keys, shipped};
use followers_tests::stack::contact_ref;
use followers_tests::typed::{
    NONE, account_id, add, by, by_workflow, code, member, new_contact, remove,
};
use futures::StreamExt;
use serde_json::{Value, json};

/// The shipped configuration running, with every user's seed in `keys`.
struct Deployment {
    server: NatsServer,
    keys: Keys,
    command: Option<followers_command_service::Running>,
    projection: Option<followers_projection_service::Running>,
}

/// A JetStream context of a connection that gives up on an unanswered request after 2 s.
fn jetstream(c: &Connection) -> jetstream::Context {
    let mut js = jetstream::new(c.client.clone());
    js.set_timeout(Duration::from_secs(2));
    js
}

impl Deployment {
    /// The server alone.
    fn server_only() -> Self {
        let keys = Keys::provision();
        let server = NatsServer::start_from_file(&shipped("single.conf"), keys.env.clone());
        Self {
            server,
            keys,
            command: None,
            projection: None,
        }
    }

    /// The server, the history created by the admin user, and both services as their users.
    async fn start() -> Self {
        let mut d = Self::server_only();
        let admin = d.flags("admin", "_INBOX_followers_admin");
        let init = Init::parse_from(std::iter::once("followers-admin".to_owned()).chain(admin));
        followers_admin::init(&init.store)
            .await
            .expect("admin init");
        let mut command = vec!["command-service".to_owned()];
        command.extend(d.flags("command", "_INBOX_followers_command"));
        command.extend([
            "--caller-policy".to_owned(),
            path(&shipped("caller-policy.json")),
        ]);
        let command = followers_command_service::Config::parse_from(command);
        let mut projection = vec![
            "projection-service".to_owned(),
            "--http-addr".to_owned(),
            "127.0.0.1:0".to_owned(),
        ];
        projection.extend(d.flags("projection", "_INBOX_followers_projection"));
        let projection = followers_projection_service::Config::parse_from(projection);
        d.command = Some(
            followers_command_service::start(command)
                .await
                .expect("the command service starts as its own user"),
        );
        d.projection = Some(
            followers_projection_service::start(projection)
                .await
                .expect("the projection service starts as its own user"),
        );
        d
    }

    /// The NATS flags of a process running as `user`.
    fn flags(&self, user: &str, inbox: &str) -> Vec<String> {
        self.keys.flags(user, inbox, &self.server.url())
    }

    async fn connect(&self, user: &str, inbox: &str) -> Connection {
        self.keys
            .connect(user, inbox, vec![self.server.url()])
            .await
    }

    /// How many commits the history holds, as the admin sees it.
    async fn commits(&self) -> u64 {
        let admin = self.connect("admin", "_INBOX_followers_admin").await;
        let mut stream = jetstream(&admin).get_stream("FOLLOWERS").await.unwrap();
        stream.info().await.unwrap().state.messages
    }

    /// A typed client's handle on `account` over `user`'s own connection (and its inbox).
    async fn caller(&self, user: &str, inbox: &str, account: &str) -> (Account, Connection) {
        let c = self.connect(user, inbox).await;
        (
            Client::new(c.client.clone()).account(account_id(account)),
            c,
        )
    }
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// How long a test waits for the reply to a request the server refuses to carry: none comes.
const REFUSED: Duration = Duration::from_secs(1);

fn open_account(name: &str) -> OpenAccount {
    OpenAccount {
        name: Text::new(name).unwrap(),
        settings: Default::default(),
    }
}

/// A request the server refuses to carry gets no reply: one attempt, given up on after
/// `REFUSED`, with no considered reply.
fn not_carried<T: std::fmt::Debug>(r: Result<T, Error>) {
    match r {
        Err(e @ (Error::GaveUp { .. } | Error::Nats { .. })) => assert_eq!(e.code(), None),
        other => panic!("expected no reply, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_run_as_their_own_users_and_callers_reach_them_through_imports() {
    let d = Deployment::start().await;
    let (acme, _c) = d.caller("caller-acme", "_INBOX_acme_crm", "acme").await;
    let opened = acme.command(system(), open_account("Acme")).await.unwrap();
    let (dashboard, _c) = d
        .caller("dashboard-acme", "_INBOX_acme_dashboard", "acme")
        .await;
    let answer = dashboard.after(&opened).settings_and_members().await;
    let answer = answer.unwrap_or_else(|e| panic!("{e:?}\n{}", d.server.log()));
    assert_eq!(answer.name, "Acme");
    // A past moment and a record's history read the history itself (one account's consumer,
    // one record's messages): the projection's grants cover them too.
    let c1 = acme.command(system(), new_contact("c1", None, NONE)).await;
    let c1 = c1.unwrap();
    let past = AccountQuery {
        min_position: None,
        at_position: Some(opened.position()),
        at_time: None,
    };
    let past = dashboard.query(past).await.unwrap();
    assert_eq!(
        (past.position, past.name.as_str()),
        (opened.position(), "Acme")
    );
    let history = RecordHistory {
        record: contact_ref("c1"),
        after: None,
        limit: None,
        min_position: Some(c1.position()),
    };
    let history = dashboard.query(history).await.unwrap();
    assert_eq!(history.events.len(), 1);
    // The shipped grants are all the services need: the server refused them nothing.
    let log = d.server.log();
    assert!(!log.contains("Violation"), "{log}");
}

/// The shipped configuration for a partitioned history (docs/scaling.md): accounts.conf with
/// its mapping block uncommented for 8 partitions, the history created with 8, two instances of
/// each service serving half the partitions each, all as their own users.
async fn partitioned_deployment() -> (Deployment, tempfile::TempDir, Vec<Running>) {
    let dir = tempfile::tempdir().unwrap();
    let accounts = std::fs::read_to_string(shipped("accounts.conf")).unwrap();
    let mapped = accounts
        .lines()
        .map(
            |line| match line.trim_start().strip_prefix('#').map(str::trim_start) {
                Some(rest) if rest.starts_with("mappings") || rest.starts_with("\"followers.") => {
                    rest.replace("partition(64,", "partition(8,")
                }
                Some("}") => "}".to_owned(),
                _ => line.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        mapped.contains("{{partition(8,1)}}"),
        "the block is uncommented"
    );
    std::fs::write(dir.path().join("accounts.conf"), mapped).unwrap();
    std::fs::copy(shipped("single.conf"), dir.path().join("single.conf")).unwrap();
    let keys = Keys::provision();
    let server = NatsServer::start_from_file(&dir.path().join("single.conf"), keys.env.clone());
    let d = Deployment {
        server,
        keys,
        command: None,
        projection: None,
    };
    let mut admin = d.flags("admin", "_INBOX_followers_admin");
    admin.extend(["--partition-count".to_owned(), "8".to_owned()]);
    let init = Init::parse_from(std::iter::once("followers-admin".to_owned()).chain(admin));
    followers_admin::init(&init.store)
        .await
        .expect("admin init");
    let mut running = Vec::new();
    for half in ["0-3", "4-7"] {
        let mut command = vec!["command-service".to_owned()];
        command.extend(d.flags("command", "_INBOX_followers_command"));
        command.extend(["--partitions".to_owned(), half.to_owned()]);
        command.extend([
            "--caller-policy".to_owned(),
            path(&shipped("caller-policy.json")),
            "--snapshot-in-jetstream".to_owned(),
        ]);
        let command = followers_command_service::Config::parse_from(command);
        let command = followers_command_service::start(command).await;
        let command = command.expect("a command service for half the partitions");
        let mut projection = vec![
            "projection-service".to_owned(),
            "--http-addr".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--partitions".to_owned(),
            half.to_owned(),
            "--snapshot-in-jetstream".to_owned(),
        ];
        projection.extend(d.flags("projection", "_INBOX_followers_projection"));
        let projection = followers_projection_service::Config::parse_from(projection);
        let projection = followers_projection_service::start(projection).await;
        let projection = projection.expect("a projection service for half the partitions");
        running.push(Running {
            command,
            projection,
        });
    }
    (d, dir, running)
}

/// A command and a projection instance serving the same partitions.
struct Running {
    command: followers_command_service::Running,
    projection: followers_projection_service::Running,
}

/// Partitions as shipped: callers in their own NATS accounts reach the instances serving
/// their account's partition through the FOLLOWERS account's mapping, and either projection's
/// HTTP API answers for both tenants, asking the other projection over NATS with the grants
/// accounts.conf gives it; the projections and the command services keep their snapshots in
/// the object store (issue 14); the server refused nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_deployment_as_shipped_serves_every_tenant() {
    let (d, _dir, running) = partitioned_deployment().await;
    let count = followers_shared::partition::PartitionCount::new(8).unwrap();
    let tenants = [
        ("caller-acme", "_INBOX_acme_crm", "acme"),
        ("caller-globex", "_INBOX_globex_crm", "globex"),
    ];
    for (user, inbox, tenant) in tenants {
        let partition = count.of(&account_id(tenant));
        let (caller, _c) = d.caller(user, inbox, tenant).await;
        let opened = caller.command(system(), open_account(tenant)).await;
        let opened = opened.unwrap_or_else(|e| panic!("{tenant} ({partition}): {e:?}"));
        let answer = caller.after(&opened).settings_and_members().await;
        let answer = answer.unwrap_or_else(|e| panic!("{tenant}: {e:?}\n{}", d.server.log()));
        assert_eq!(answer.name, tenant);
        for instance in &running {
            let url = format!(
                "http://{}/v1/accounts/{tenant}",
                instance.projection.http_addr
            );
            let response = reqwest::get(&url).await.unwrap();
            assert_eq!(
                response.status(),
                200,
                "{url}: {tenant} in partition {partition}"
            );
        }
    }
    // Stopping writes each projection's snapshots into the object store, one per partition:
    // 0-3's first, then, after one more commit of acme (partition 7), 4-7's, at a later
    // position. A projection started for all eight puts both together.
    let [low, high] = <[Running; 2]>::try_from(running).ok().unwrap();
    low.projection.stop().await;
    let (acme, _c) = d.caller("caller-acme", "_INBOX_acme_crm", "acme").await;
    let eve = member("eve", "user", "all");
    let added = acme.command(system(), eve).await.expect("a member added");
    // Answered as of the new commit by the only projection of partition 7, so it has it.
    acme.after(&added).settings_and_members().await.unwrap();
    low.command.stop().await;
    high.command.stop().await;
    high.projection.stop().await;
    let mut again = vec!["projection-service".to_owned(), "--http-addr".to_owned()];
    again.extend([
        "127.0.0.1:0".to_owned(),
        "--partitions".to_owned(),
        "all".to_owned(),
    ]);
    again.push("--snapshot-in-jetstream".to_owned());
    again.extend(d.flags("projection", "_INBOX_followers_projection"));
    let again = followers_projection_service::Config::parse_from(again);
    let again = followers_projection_service::start(again).await.unwrap();
    assert_eq!(again.model.counts().0, 0, "started from the snapshots");
    let eve_is_member = again.model.read(|m| {
        m.account(&account_id("acme"))
            .is_some_and(|a| a.state.members.contains_key(&"eve".parse().unwrap()))
    });
    assert!(
        eve_is_member,
        "acme's last commit, in partition 7's snapshot"
    );
    again.stop().await;
    // The command services' snapshots too: one for all eight starts from them, and knows
    // acme's last command (R24).
    let mut command = vec!["command-service".to_owned()];
    command.extend(d.flags("command", "_INBOX_followers_command"));
    command.extend([
        "--partitions".to_owned(),
        "all".to_owned(),
        "--snapshot-in-jetstream".to_owned(),
    ]);
    let command = followers_command_service::Config::parse_from(command);
    let command = followers_command_service::start(command).await.unwrap();
    assert_eq!(command.model.counts().0, 0, "started from the snapshots");
    let acme_id = account_id("acme");
    let added_id = added.command_id().unwrap();
    let known = command
        .model
        .read(|m| m.command_candidates(&acme_id, &added_id));
    assert_eq!(
        known,
        [added.position()],
        "acme's last command, in partition 7's snapshot"
    );
    command.stop().await;
    let log = d.server.log();
    assert!(!log.contains("Violation"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_sees_both_services_in_the_services_api_and_a_caller_does_not() {
    let d = Deployment::start().await;
    let admin = d.connect("admin", "_INBOX_followers_admin").await;
    let inbox = admin.client.new_inbox();
    let mut pongs = admin.client.subscribe(inbox.clone()).await.unwrap();
    let ping = admin
        .client
        .publish_with_reply("$SRV.PING", inbox, "".into());
    ping.await.unwrap();
    let mut names = Vec::new();
    while names.len() < 2 {
        let pong = tokio::time::timeout(Duration::from_secs(10), pongs.next()).await;
        let pong: Value = serde_json::from_slice(&pong.unwrap().unwrap().payload).unwrap();
        names.push(pong["name"].as_str().unwrap().to_owned());
    }
    names.sort();
    assert_eq!(names, ["followers-command", "followers-projection"]);
    let acme = d.connect("caller-acme", "_INBOX_acme_crm").await;
    acme.client.publish("$SRV.PING", "".into()).await.unwrap();
    acme.refused("$SRV.PING").await;
    let log = d.server.log();
    assert!(
        !log.contains("Violation") || !log.contains("followers_"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_can_neither_write_the_history_nor_use_jetstream() {
    let d = Deployment::start().await;
    let before = d.commits().await;
    let acme = d.connect("caller-acme", "_INBOX_acme_crm").await;
    // Raw on purpose: a forged commit published to the history, not a request.
    let forged = json!({"command_id": uuid::Uuid::now_v7(), "events": []});
    acme.client
        .publish(
            "followers.history.acme.account.acme",
            serde_json::to_vec(&forged).unwrap().into(),
        )
        .await
        .unwrap();
    acme.refused("followers.history.acme.account.acme").await;
    assert!(jetstream(&acme).get_stream("FOLLOWERS").await.is_err());
    acme.refused("$JS.API.STREAM.INFO.FOLLOWERS").await;
    assert_eq!(d.commits().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projection_can_neither_delete_nor_change_nor_write_the_history() {
    let d = Deployment::start().await;
    let projection = d.connect("projection", "_INBOX_followers_projection").await;
    let js = jetstream(&projection);
    let mut stream = js.get_stream("FOLLOWERS").await.expect("it may read");
    let config = stream.info().await.unwrap().config.clone();

    assert!(js.delete_stream("FOLLOWERS").await.is_err());
    projection.refused("$JS.API.STREAM.DELETE.FOLLOWERS").await;
    let bigger = jetstream::stream::Config {
        max_bytes: 1 << 20,
        ..config.clone()
    };
    assert!(js.update_stream(bigger).await.is_err());
    projection.refused("$JS.API.STREAM.UPDATE.FOLLOWERS").await;
    let written = match js
        .publish("followers.history.acme.account.acme", "{}".into())
        .await
    {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    };
    assert!(!written);
    projection
        .refused("followers.history.acme.account.acme")
        .await;

    let admin = d.connect("admin", "_INBOX_followers_admin").await;
    let mut after = jetstream(&admin).get_stream("FOLLOWERS").await.unwrap();
    assert_eq!(
        after.info().await.unwrap().config.max_bytes,
        config.max_bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_reads_its_accounts_history_and_no_other() {
    let d = Deployment::start().await;
    let (acme, _a) = d.caller("caller-acme", "_INBOX_acme_crm", "acme").await;
    let (globex, _g) = d
        .caller("caller-globex", "_INBOX_globex_crm", "globex")
        .await;
    acme.command(system(), open_account("Acme")).await.unwrap();
    globex
        .command(system(), open_account("Globex"))
        .await
        .unwrap();

    let auditor = d.connect("auditor-acme", "_INBOX_audit_acme").await;
    let js = jetstream(&auditor);
    let stream = js.get_stream_no_info("FOLLOWERS").await.unwrap();
    let own = jetstream::consumer::pull::Config {
        name: Some("audit-acme".to_owned()),
        filter_subject: "followers.history.acme.>".to_owned(),
        ..Default::default()
    };
    let consumer = stream
        .create_consumer(own.clone())
        .await
        .expect("its own account");
    let mut batch = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .unwrap();
    let mut subjects = Vec::new();
    while let Some(Ok(m)) = futures::StreamExt::next(&mut batch).await {
        subjects.push(m.subject.to_string());
    }
    assert!(!subjects.is_empty());
    assert!(
        subjects
            .iter()
            .all(|s| s.starts_with("followers.history.acme.")),
        "{subjects:?}"
    );

    let other = jetstream::consumer::pull::Config {
        filter_subject: "followers.history.globex.>".to_owned(),
        ..own.clone()
    };
    assert!(stream.create_consumer(other).await.is_err());
    auditor
        .refused("$JS.API.CONSUMER.CREATE.FOLLOWERS.audit-acme.followers.history.globex.>")
        .await;
    let everything = jetstream::consumer::pull::Config {
        filter_subject: String::new(),
        ..own
    };
    assert!(stream.create_consumer(everything).await.is_err());
    // Stream info with a subject filter would list every account's record ids.
    assert!(js.get_stream("FOLLOWERS").await.is_err());
    auditor.refused("$JS.API.STREAM.INFO.FOLLOWERS").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_reaches_only_its_accounts_and_only_its_own_replies() {
    let d = Deployment::start().await;
    let before = d.commits().await;
    let once = Retry::once(REFUSED);
    let (globex, acme) = d.caller("caller-acme", "_INBOX_acme_crm", "globex").await;
    not_carried(
        globex
            .command(system(), open_account("G"))
            .retry(once)
            .await,
    );
    acme.refused("followers.cmd.globex.open_account").await;
    not_carried(globex.query(AccountQuery::default()).retry(once).await);
    acme.refused("followers.query.globex.account").await;

    let (own, dashboard) = d
        .caller("dashboard-acme", "_INBOX_acme_dashboard", "acme")
        .await;
    not_carried(own.command(system(), open_account("A")).retry(once).await);
    dashboard.refused("followers.cmd.acme.open_account").await;
    // Another client's replies, in the same NATS account or any.
    let _spy = dashboard
        .client
        .subscribe("_INBOX_acme_crm.>")
        .await
        .unwrap();
    dashboard.refused("_INBOX_acme_crm.>").await;
    let _spy = dashboard.client.subscribe("_INBOX.>").await.unwrap();
    dashboard.refused("_INBOX.>").await;
    assert_eq!(d.commits().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_policy_limits_actor_kinds_and_each_event_names_its_caller() {
    let d = Deployment::start().await;
    let (acme, acme_conn) = d.caller("caller-acme", "_INBOX_acme_crm", "acme").await;
    acme.command(system(), open_account("Acme")).await.unwrap();
    let ann = member("ann", "admin", "all");
    acme.command(system(), ann).await.unwrap();
    let c1 = new_contact("c1", None, NONE);
    acme.command(by("ann"), c1).await.unwrap();

    // The workflow engine may act only as a workflow.
    let (engine, _e) = d.caller("workflows", "_INBOX_workflows", "acme").await;
    let before = d.commits().await;
    let ann_follows = || add(contact_ref("c1"), &["ann"]);
    let as_system = engine.command(system(), ann_follows()).await;
    assert_eq!(code(as_system), ErrorCode::CallerNotAllowed);
    assert_eq!(d.commits().await, before);
    let as_workflow = engine.command(by_workflow("w1"), ann_follows()).await;
    as_workflow.unwrap();

    // A header the caller wrote itself is replaced by the server: acme cannot pass for the
    // workflow engine. Sent by hand, as the client sends no headers; the body is the client's.
    let mut forged = async_nats::HeaderMap::new();
    forged.insert(
        "Nats-Request-Info",
        r#"{"acc":"WORKFLOWS","user":"engine"}"#,
    );
    let remove = acme.command(by_workflow("w2"), remove(contact_ref("c1"), &["ann"]));
    let to = "followers.cmd.acme.remove_followers";
    let sent = acme_conn
        .client
        .request_with_headers(to, forged, remove.body().unwrap().into());
    let reply = tokio::time::timeout(Duration::from_secs(30), sent).await;
    let reply: CommandReply = serde_json::from_slice(&reply.unwrap().unwrap().payload).unwrap();
    assert_eq!(reply.error.unwrap().code, ErrorCode::CallerNotAllowed);

    // The history names who sent each command.
    let history = jetstream::new(d.connect("admin", "_INBOX_followers_admin").await.client);
    let mut stream = history.get_stream("FOLLOWERS").await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let commit: Value =
        serde_json::from_slice(&stream.get_raw_message(last).await.unwrap().payload).unwrap();
    let caller = &commit["events"][0]["meta"]["caller"];
    assert_eq!(caller["account"], "WORKFLOWS", "{commit}");
    let engine_key = std::fs::read_to_string(d.keys.seed("workflows")).unwrap();
    let engine_key = nkeys_public(&engine_key);
    assert_eq!(caller["user"], engine_key.as_str());
    let first: Value =
        serde_json::from_slice(&stream.get_raw_message(1).await.unwrap().payload).unwrap();
    assert_eq!(first["events"][0]["meta"]["caller"]["account"], "ACME");
}

/// The public key of a user seed.
fn nkeys_public(seed: &str) -> String {
    followers_admin::nkeys::public_key(seed.trim()).unwrap()
}

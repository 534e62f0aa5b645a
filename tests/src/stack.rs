//! A running system for end-to-end tests: a nats-server and service instances in this process.

use crate::nats::NatsServer;
use clap::Parser;
use followers_command_service as command_service;
use followers_shared::partition::PartitionCount;
use followers_store::{JetStreamConfig, JetStreamStore};

/// With `FOLLOWERS_TEST_PARTITION_COUNT=N`, the tests' servers map requests to N partitions
/// and their histories are created with N partitions, so the same end-to-end tests run against
/// the partitioned layout (`scripts/test` runs the rules' tests both ways; docs/scaling.md);
/// with 8, against three instances of each service ([`SPREAD`]).
pub fn partition_count() -> Option<PartitionCount> {
    let n = std::env::var("FOLLOWERS_TEST_PARTITION_COUNT").ok()?;
    Some(
        n.parse()
            .expect("FOLLOWERS_TEST_PARTITION_COUNT is a number of partitions"),
    )
}

/// The partitions of the three command and three projection instances a test starts in place of
/// one, against a history of 8 partitions (issue 15): each a different set, two pairs
/// overlapping, all eight covered. The first serves the partitions of the tests' usual accounts
/// (`acme` is in 7, `globex` and `nobody` in 6), so its HTTP API serves their feeds itself (a feed
/// is not passed on); each of those partitions has a second instance, so their commands and
/// queries are shared between two; the others' queries over HTTP are passed on.
pub const SPREAD: [&str; 3] = ["6-7", "0-5", "4-7"];

/// The sets of partitions to start an instance for, one instance each: [`SPREAD`] against a
/// history of 8 partitions, unless the test chose its own partitions or a snapshot file (which
/// instances of different partitions cannot share); otherwise one instance serving all.
fn instance_partitions(extra: &[&str]) -> Vec<Option<&'static str>> {
    let own = extra
        .iter()
        .any(|f| matches!(*f, "--partitions" | "--snapshot-path"));
    match partition_count() {
        Some(c) if c.get() == 8 && !own => SPREAD.iter().map(|s| Some(*s)).collect(),
        _ => vec![None],
    }
}

/// Instances started as one ([`SPREAD`]): used as the first, stopped together.
pub struct Instances<R> {
    first: R,
    others: Vec<R>,
}

impl<R> std::fmt::Debug for Instances<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} instances", 1 + self.others.len())
    }
}

impl<R> std::ops::Deref for Instances<R> {
    type Target = R;
    fn deref(&self) -> &R {
        &self.first
    }
}

/// What an instance does when stopped.
pub trait Stop {
    fn stop(self) -> impl std::future::Future<Output = ()> + Send;
}

impl Stop for command_service::Running {
    async fn stop(self) {
        command_service::Running::stop(self).await;
    }
}

impl Stop for followers_projection_service::Running {
    async fn stop(self) {
        followers_projection_service::Running::stop(self).await;
    }
}

impl<R: Stop> Instances<R> {
    /// Stops every instance.
    pub async fn stop(self) {
        self.first.stop().await;
        for other in self.others {
            other.stop().await;
        }
    }
}

/// Starts one instance per set of partitions [`instance_partitions`] gives, with `start`.
async fn start_instances<R, E, F>(
    extra: &[&str],
    start: impl Fn(&[&str]) -> F,
    what: &str,
) -> Instances<R>
where
    E: std::fmt::Debug,
    F: std::future::Future<Output = Result<R, E>>,
{
    let mut started = Vec::new();
    for partitions in instance_partitions(extra) {
        let mut flags = extra.to_vec();
        if let Some(p) = partitions {
            flags.extend(["--partitions", p]);
        }
        started.push(start(&flags).await.expect(what));
    }
    let mut started = started.into_iter();
    let first = started.next().expect("one instance at least");
    Instances {
        first,
        others: started.collect(),
    }
}

/// With `FOLLOWERS_TEST_GROUP_COMMIT=N`, the tests' command services batch commits when at
/// least N wait (`--group-commit N`), so the same end-to-end tests run with group commit.
pub fn group_commit() -> Option<String> {
    std::env::var("FOLLOWERS_TEST_GROUP_COMMIT").ok()
}

/// Flags for a command-service instance talking to `server`.
pub fn command_config(server: &NatsServer, extra: &[&str]) -> command_service::Config {
    let url = server.url();
    // The tests' command services are the administrative step that creates the history.
    let mut args = vec![
        "command-service",
        "--nats-url",
        url.as_str(),
        "--manage-stream",
        "true",
    ];
    let count = partition_count().map(|c| c.to_string());
    if let Some(count) = &count
        && !extra.contains(&"--partition-count")
    {
        args.extend(["--partition-count", count.as_str()]);
    }
    let group_commit = group_commit();
    if let Some(min) = &group_commit
        && !extra.contains(&"--group-commit")
    {
        args.extend(["--group-commit", min.as_str()]);
    }
    args.extend_from_slice(extra);
    command_service::Config::parse_from(args)
}

/// Starts one command-service instance, or three ([`SPREAD`]).
pub async fn start_command_service(
    server: &NatsServer,
    extra: &[&str],
) -> Instances<command_service::Running> {
    let start = |flags: &[&str]| command_service::start(command_config(server, flags));
    start_instances(extra, start, "command service starts").await
}

/// The history as the test sees it, straight from JetStream.
pub async fn history(server: &NatsServer) -> JetStreamStore {
    JetStreamStore::connect(server.client().await, JetStreamConfig::default())
        .await
        .expect("history store")
}

/// Opens `acme`'s account through the typed client and registers members: `(id, role,
/// data_scope)` as in [`TEAM`]; returns the last reply.
pub async fn open_team(
    acme: &followers_client::Account,
    members: &[(&str, &str, &str)],
) -> followers_client::Reply {
    use followers_client::system;
    use followers_shared::bounded::Text;
    use followers_shared::command::OpenAccount;

    let name = Text::new(acme.id().as_str()).expect("account name");
    let open = OpenAccount {
        name,
        settings: Default::default(),
    };
    let mut last = acme.command(system(), open).await.expect("open_account");
    for (user, role, scope) in members {
        let member = crate::typed::member(user, role, scope);
        last = acme
            .command(system(), member)
            .await
            .expect("register_member");
    }
    last
}

/// Flags for a projection-service instance talking to `server`, HTTP on a free port.
pub fn projection_config(
    server: &NatsServer,
    extra: &[&str],
) -> followers_projection_service::Config {
    let url = server.url();
    let mut args = vec![
        "projection-service",
        "--nats-url",
        url.as_str(),
        "--http-addr",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    followers_projection_service::Config::parse_from(args)
}

/// Starts one projection-service instance; returns once it is ready.
pub async fn start_projection_service(
    server: &NatsServer,
    extra: &[&str],
) -> Instances<followers_projection_service::Running> {
    let start =
        |flags: &[&str]| followers_projection_service::start(projection_config(server, flags));
    start_instances(extra, start, "projection service starts").await
}

/// A small team used by several tests: an admin, and users with each data scope.
pub const TEAM: &[(&str, &str, &str)] = &[
    ("ann", "admin", "all"),
    ("bob", "user", "only_assigned"),
    ("cid", "user", "all"),
    ("dee", "user", "only_assigned"),
];

/// A contact by id, as the domain names it.
pub fn contact_ref(id: &str) -> followers_shared::model::RecordRef {
    followers_shared::model::RecordRef::Contact(id.parse().expect("contact id"))
}

/// An opportunity by id, as the domain names it.
pub fn opportunity_ref(id: &str) -> followers_shared::model::RecordRef {
    followers_shared::model::RecordRef::Opportunity(id.parse().expect("opportunity id"))
}

/// The path of one of the workspace's service binaries (`command-service`,
/// `projection-service`), for tests that must kill a service the way a crash does. `cargo test`
/// builds them beside the test binaries (the services' own integration tests need them); if one
/// is missing, it is built.
pub fn service_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("the target folder");
    let bin = dir.join(name);
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let package = format!("followers-{name}");
        let built = std::process::Command::new(cargo)
            .args(["build", "-p", &package])
            .status()
            .expect("cargo runs");
        assert!(built.success(), "cannot build {name}");
    }
    bin
}

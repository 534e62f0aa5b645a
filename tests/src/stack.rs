//! A running system for end-to-end tests: a nats-server and service instances in this process.

use crate::nats::NatsServer;
use clap::Parser;
use followers_command_service as command_service;
use followers_shared::partition::PartitionCount;
use followers_store::{JetStreamConfig, JetStreamStore};

/// With `FOLLOWERS_TEST_PARTITION_COUNT=N`, the tests' servers map requests to N partitions
/// and their histories are created with N partitions, so the same end-to-end tests run against
/// the partitioned layout (`scripts/test` runs the rules' tests both ways; docs/scaling.md).
pub fn partition_count() -> Option<PartitionCount> {
    let n = std::env::var("FOLLOWERS_TEST_PARTITION_COUNT").ok()?;
    Some(
        n.parse()
            .expect("FOLLOWERS_TEST_PARTITION_COUNT is a number of partitions"),
    )
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

/// Starts one command-service instance.
pub async fn start_command_service(
    server: &NatsServer,
    extra: &[&str],
) -> command_service::Running {
    command_service::start(command_config(server, extra))
        .await
        .expect("command service starts")
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
) -> followers_projection_service::Running {
    followers_projection_service::start(projection_config(server, extra))
        .await
        .expect("projection service starts")
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

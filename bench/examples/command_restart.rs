//! How long a command service takes to start, replaying the whole history and from its snapshot
//! (issue 14), on the memory row's data: one account, 200 members, N contacts with an owner and
//! three followers, published straight to JetStream by the bench's loader.
//!
//! `cargo run --release -p followers-bench --example command_restart -- 100000`
//!
//! Each start is timed from the call to the moment the service takes commands (in this
//! process): first without a snapshot (the whole history replayed; the snapshot is written at
//! shutdown), then from that snapshot.

#[path = "../src/data.rs"]
#[allow(dead_code)]
mod data;

use std::time::Instant;

use clap::Parser;
use followers_command_service::{Config, Running};
use followers_store::{JetStreamConfig, JetStreamStore};
use followers_tests::NatsServer;

/// Starts a command service on `server` with `flags`; returns it and the seconds it took.
async fn start(server: &NatsServer, flags: &[&str]) -> anyhow::Result<(Running, f64)> {
    let url = server.url();
    let mut args = vec!["command-service", "--nats-url", url.as_str()];
    args.extend_from_slice(flags);
    let started = Instant::now();
    let running = followers_command_service::start(Config::parse_from(args)).await?;
    Ok((running, started.elapsed().as_secs_f64()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let records: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 100_000,
    };
    let data = data::Dataset {
        account: "big".to_owned(),
        users: 200,
        records,
        followers: 3,
    };
    let server = NatsServer::start();
    let client = server.client().await;
    JetStreamStore::connect(client.clone(), JetStreamConfig::default()).await?;
    let loading = Instant::now();
    let js = async_nats::jetstream::new(client);
    let commits = data::publish(&js, "followers.history", &data).await?;
    eprintln!(
        "{commits} commits loaded in {:.1} s",
        loading.elapsed().as_secs_f64()
    );

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("command.snapshot");
    let path = path.to_str().unwrap_or_default();
    let flags = [
        "--follower-sync",
        "false",
        "--snapshot-path",
        path,
        "--snapshot-every-secs",
        "86400",
    ];
    let (cold, cold_secs) = start(&server, &flags).await?;
    let replayed = cold.model.counts().0;
    let stopping = Instant::now();
    cold.stop().await;
    let write_secs = stopping.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(path)?.len();

    let (warm, warm_secs) = start(&server, &flags).await?;
    let applied = warm.model.counts().0;
    let position = warm.model.position().0;
    warm.stop().await;

    println!(
        "{records} records: full replay {cold_secs:.2} s ({replayed} commits applied); \
         from the snapshot {warm_secs:.2} s ({applied} commits applied after it; model at \
         {position}); snapshot {:.1} MB, written in {write_secs:.2} s at shutdown",
        bytes as f64 / 1e6
    );
    Ok(())
}

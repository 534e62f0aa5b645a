//! `command-service`: serves followers commands over NATS. See `--help` and docs/configuration.md.

use clap::Parser;
use followers_command_service::{Config, start};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("FOLLOWERS_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let running = start(Config::parse()).await?;
    followers_store::service::run_until_signal(running).await;
    Ok(())
}

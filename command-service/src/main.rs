//! `command-service`: serves followers commands over NATS. See `--help` and docs/configuration.md.

use clap::Parser;
use followers_command_service::{Config, start};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    followers_runtime::init_logging();
    let running = start(Config::parse()).await?;
    followers_runtime::run_until_signal(running).await;
    Ok(())
}

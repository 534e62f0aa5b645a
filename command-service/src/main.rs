//! `command-service`: serves followers commands over NATS. See `--help` and docs/configuration.md.

use clap::Parser;
use followers_command_service::{Config, Running, start};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    followers_runtime::init_logging();
    // The health listener's address was logged; only the service's handle is needed here.
    let Running { handle, .. } = start(Config::parse()).await?;
    followers_runtime::run_until_signal(handle).await;
    Ok(())
}

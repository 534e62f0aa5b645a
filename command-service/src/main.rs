//! `command-service`: serves followers commands over NATS. See `--help` and docs/configuration.md.

use clap::Parser;
use followers_command_service::{Config, Running, SERVICE_NAME, start};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let telemetry = followers_runtime::telemetry::init(&config.service.telemetry, SERVICE_NAME)?;
    // The health listener's address was logged; only the service's handle is needed here.
    let Running { handle, .. } = start(config).await?;
    followers_runtime::run_until_signal(handle).await;
    telemetry.shutdown();
    Ok(())
}

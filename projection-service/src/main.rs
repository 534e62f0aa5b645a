//! `projection-service`: serves followers read models over NATS and HTTP. See `--help` and
//! docs/configuration.md.

use clap::Parser;
use followers_projection_service::{Config, SERVICE_NAME, start};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let telemetry = followers_runtime::telemetry::init(&config.service.telemetry, SERVICE_NAME)?;
    let running = start(config).await?;
    followers_runtime::run_until_signal(running.handle).await;
    telemetry.shutdown();
    Ok(())
}

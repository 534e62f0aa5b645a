//! The administrative steps of a followers installation, apart from the services:
//!
//! - [`init`]: create the history stream and the checkpoint bucket, or bring their replicas,
//!   size and dedup window in line with the flags. Only this step (or `command-service
//!   --manage-stream`) changes them; every other process binds to what exists.
//! - [`nkeys`]: make an nkey for each user that a nats-server accounts file names, so the
//!   server's configuration holds only public keys and each process reads its own seed file.
//! - [`request`]: send one command or query as a caller, and print the reply.
//! - [`probe`]: a plain HTTP health probe, for container health checks.
//! - [`cli`]: the command line (those steps and `completions`); the store and NATS flags go
//!   before or after the subcommand.

pub mod cli;
pub mod nkeys;
pub mod probe;
pub mod request;

use std::time::Duration;

use followers_shared::store::StoreError;
use followers_store::{StoreArgs, StreamSetup};

/// Creates or updates the history stream and the checkpoint bucket described by `args`.
pub async fn init(args: &StoreArgs) -> Result<(), StoreError> {
    let client = args.nats.connect_once("followers-admin").await?;
    args.open(client, StreamSetup::Manage).await?;
    Ok(())
}

/// [`init`], waiting at most `wait` for a server to answer and for JetStream to be available (a
/// fresh cluster electing its meta leader), and saying why it waits.
pub async fn init_waiting(args: &StoreArgs, wait: Duration) -> Result<(), StoreError> {
    let client = args.nats.connect_service("followers-admin", wait).await?;
    args.open_waiting(client, StreamSetup::Manage, wait).await?;
    Ok(())
}

//! The administrative steps of a followers installation, apart from the services:
//!
//! - [`init`]: create the history stream and the checkpoint bucket, or bring their replicas,
//!   size and dedup window in line with the flags. Only this step (or `command-service
//!   --manage-stream`) changes them; every other process binds to what exists.
//! - [`nkeys`]: make an nkey for each user that a nats-server accounts file names, so the
//!   server's configuration holds only public keys and each process reads its own seed file.

pub mod nkeys;

use followers_shared::store::StoreError;
use followers_store::{StoreArgs, StreamSetup};

/// Creates or updates the history stream and the checkpoint bucket described by `args`.
pub async fn init(args: &StoreArgs) -> Result<(), StoreError> {
    let client = args.nats.connect_once("followers-admin").await?;
    args.open(client, StreamSetup::Manage).await?;
    Ok(())
}

//! `followers-admin`: the administrative steps. See `--help` and docs/operations.md.

use std::path::PathBuf;

use clap::Parser;
use followers_store::StoreArgs;

/// Administrative steps of a followers installation.
#[derive(Debug, clap::Parser)]
#[command(name = "followers-admin", version)]
enum Cli {
    /// Create the history stream and the checkpoint bucket, or bring their replicas, size and
    /// dedup window in line with these flags. Needs NATS credentials allowed to manage streams.
    Init {
        #[command(flatten)]
        store: Box<StoreArgs>,
    },
    /// Make an nkey seed file for each user of a nats-server accounts file
    /// (`$FOLLOWERS_<NAME>_NKEY`) that has none yet, and `nats-users.env` with their public keys.
    Nkeys {
        /// The accounts file (deploy/nats/accounts.conf).
        #[arg(long, default_value = "deploy/nats/accounts.conf")]
        accounts: PathBuf,
        /// Where the seeds and the env file go.
        #[arg(long)]
        out: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    followers_runtime::init_logging();
    match Cli::parse() {
        Cli::Init { store } => {
            followers_admin::init(&store).await?;
            tracing::info!(stream = %store.stream, "the history stream and the checkpoint bucket are in place");
        }
        Cli::Nkeys { accounts, out } => {
            for key in followers_admin::nkeys::provision(&accounts, &out)? {
                println!("{} {}", key.seed_file.display(), key.public_key);
            }
        }
    }
    Ok(())
}

//! The flags every service takes, written once and flattened into each service's `Config`:
//! where the history is, the subject prefix, how long start-up may take, and which signatures
//! a commit must carry to be applied.

use std::path::PathBuf;
use std::time::Duration;

use followers_shared::signing::{KeyFileError, Signer, Verifier};
use followers_shared::store::StoreError;
use followers_store::{AnyStore, StoreArgs, StreamSetup};

/// What both services are told at start.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Requests are served on `{prefix}.cmd.{account}.{command}` and
    /// `{prefix}.query.{account}.{query}`.
    #[arg(long, env = "FOLLOWERS_SUBJECT_PREFIX", default_value = "followers")]
    pub subject_prefix: String,
    /// How long start-up may take to reach NATS and load the history.
    #[arg(long, env = "FOLLOWERS_STARTUP_TIMEOUT_SECS", default_value_t = 300)]
    pub startup_timeout_secs: u64,
    #[command(flatten)]
    pub signatures: SignatureArgs,
    #[command(flatten)]
    pub telemetry: crate::TelemetryArgs,
}

/// `--require-signatures` and the keys it trusts. Each service's `Config` defines the arg group
/// `keys` (the key flags it has), which `--require-signatures` needs one of.
#[derive(Debug, Clone, clap::Args)]
pub struct SignatureArgs {
    /// Apply only commits signed by a configured key (each --public-key, and the command
    /// service's own --signing-key-file); others are logged, counted
    /// (`followers_commits_refused_total`) and stepped over.
    #[arg(long, env = "FOLLOWERS_REQUIRE_SIGNATURES", requires = "keys")]
    pub require_signatures: bool,
    /// A public key file whose signatures --require-signatures accepts (repeatable; in the
    /// environment, comma-separated): the command service's keys, including rotated-out ones.
    #[arg(
        long = "public-key",
        env = "FOLLOWERS_PUBLIC_KEYS",
        value_delimiter = ',',
        requires = "require_signatures"
    )]
    pub public_keys: Vec<PathBuf>,
}

impl ServiceArgs {
    pub fn startup_timeout(&self) -> Duration {
        Duration::from_secs(self.startup_timeout_secs)
    }

    /// Connects to NATS as `name`, then opens the configured store, waiting for either for at
    /// most the start-up timeout.
    pub async fn connect(
        &self,
        name: &str,
        setup: StreamSetup,
    ) -> Result<(async_nats::Client, AnyStore), StoreError> {
        let wait = self.startup_timeout();
        let client = self.store.connect_nats(name, wait).await?;
        let store = self.store.open_waiting(client.clone(), setup, wait).await?;
        Ok((client, store))
    }
}

impl SignatureArgs {
    /// With --require-signatures: a verifier of each --public-key and of `own`, the service's own
    /// signing key. Without it, none: every commit is applied.
    pub fn verifier(&self, own: Option<&Signer>) -> Result<Option<Verifier>, KeyFileError> {
        if !self.require_signatures {
            return Ok(None);
        }
        let mut verifier = Verifier::from_public_key_files(
            self.public_keys
                .iter()
                .map(|path| (path.as_path(), std::fs::read_to_string(path))),
        )?;
        if let Some(own) = own {
            verifier.trust_signer(own)?;
        }
        Ok(Some(verifier))
    }
}

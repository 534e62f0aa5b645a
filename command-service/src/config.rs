//! The command service's configuration: one typed struct, from flags with environment fallbacks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use followers_runtime::ServiceArgs;
use followers_shared::caller::CallerPolicy;
use followers_shared::signing::{KeyFileError, Signer, Verifier};

/// Serves followers commands over NATS request-reply and runs the follower sync.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "command-service", version)]
// `--require-signatures` needs one of these (see `SignatureArgs`).
#[command(group(clap::ArgGroup::new("keys").multiple(true).args(["signing_key_file", "public_keys"])))]
pub struct Config {
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Instances in the same queue group share the commands.
    #[arg(
        long,
        env = "FOLLOWERS_QUEUE_GROUP",
        default_value = "followers-command"
    )]
    pub queue_group: String,
    /// Requests larger than this many bytes are refused with `request_too_large`.
    #[arg(long, env = "FOLLOWERS_MAX_REQUEST_BYTES", default_value_t = 65_536)]
    pub max_request_bytes: usize,
    /// Commands handled at once by this instance; beyond it, `unavailable`.
    #[arg(long, env = "FOLLOWERS_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,
    /// How often a command that lost an optimistic-concurrency race is decided again.
    #[arg(long, env = "FOLLOWERS_CONFLICT_RETRIES", default_value_t = 64)]
    pub conflict_retries: u32,
    /// How long after receiving a command, in milliseconds, its append is still tried while the
    /// store is unavailable (a JetStream leader election) before it fails with
    /// `store_unavailable`: the callers' request timeout less a margin (the default fits callers
    /// that wait 15 s).
    #[arg(long, env = "FOLLOWERS_APPEND_PATIENCE_MS", default_value_t = 13_000)]
    pub append_patience_ms: u64,
    /// Replies to commands that appended nothing, remembered for retries (R24).
    #[arg(long, env = "FOLLOWERS_REPLY_CACHE", default_value_t = 100_000)]
    pub reply_cache: usize,
    /// Run the follower sync (R7-R10) in this instance.
    #[arg(long, env = "FOLLOWERS_FOLLOWER_SYNC", default_value_t = true, action = clap::ArgAction::Set)]
    pub follower_sync: bool,
    /// Create the history stream and the checkpoint bucket if missing, and bring their settings
    /// (replicas, size, dedup window) in line with these flags: the administrative step. Without
    /// it the service only binds to what exists (and waits for it at start).
    #[arg(long, env = "FOLLOWERS_MANAGE_STREAM", default_value_t = false, action = clap::ArgAction::Set)]
    pub manage_stream: bool,
    /// Sign every commit, and the history's head, with this private key file (written by
    /// `followers-audit keygen`). Without it, commits are written unsigned.
    #[arg(long, env = "FOLLOWERS_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// Seconds between signed heads written to the checkpoint bucket (also at start and on
    /// shutdown); only with --signing-key-file, on JetStream.
    #[arg(long, env = "FOLLOWERS_SIGNED_HEAD_EVERY_SECS", default_value_t = 60)]
    pub signed_head_every_secs: u64,
    /// A JSON file of which NATS callers may act as which actor kinds, for which accounts (see
    /// docs/operations.md, "Security"). With it, a command must carry the server's
    /// `Nats-Request-Info` header (callers in their own NATS accounts, through a service import
    /// with `share: true`), and each event records its caller. Without it, every caller may
    /// claim any actor: only for a development setup.
    #[arg(long, env = "FOLLOWERS_CALLER_POLICY")]
    pub caller_policy: Option<PathBuf>,
    /// Where the model's snapshot is kept (its records, each stream's chain value and where every
    /// stored command is), so that a start replays only the commits after it; none: replay the
    /// whole history at every start.
    #[arg(
        long,
        env = "FOLLOWERS_COMMAND_SNAPSHOT_PATH",
        conflicts_with = "snapshot_in_jetstream"
    )]
    pub snapshot_path: Option<PathBuf>,
    /// Keep the snapshot in the JetStream object store (the bucket `<stream>_snapshots`, made by
    /// the administrative step) instead of a file, as the objects `command.all` or
    /// `command.p<partition>`: an instance started for the same partitions, on any machine,
    /// starts from them.
    #[arg(long, env = "FOLLOWERS_COMMAND_SNAPSHOT_IN_JETSTREAM")]
    pub snapshot_in_jetstream: bool,
    /// Seconds between snapshots (only when the model has moved on); one is also written on
    /// shutdown.
    #[arg(
        long,
        env = "FOLLOWERS_COMMAND_SNAPSHOT_EVERY_SECS",
        default_value_t = 60
    )]
    pub snapshot_every_secs: u64,
    /// Serve `/health`, `/ready` and `/metrics` (plain HTTP, no token) on this address, e.g.
    /// `127.0.0.1:9091` (port 0: any free port). Without it the service listens on no port.
    #[arg(long, env = "FOLLOWERS_COMMAND_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
}

/// Why the caller policy file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("--caller-policy {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--caller-policy {path}: {source}")]
    Invalid {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl Config {
    pub fn append_patience(&self) -> Duration {
        Duration::from_millis(self.append_patience_ms)
    }

    /// The caller policy of --caller-policy, if given.
    pub fn caller_policy(&self) -> Result<Option<CallerPolicy>, PolicyFileError> {
        let Some(path) = &self.caller_policy else {
            return Ok(None);
        };
        let text = std::fs::read(path).map_err(|source| PolicyFileError::Read {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| PolicyFileError::Invalid {
                path: path.clone(),
                source,
            })
    }

    /// The signer of --signing-key-file, if given.
    pub fn signer(&self) -> Result<Option<Signer>, KeyFileError> {
        self.signing_key_file
            .as_deref()
            .map(|path| Signer::from_private_key_file(path, std::fs::read_to_string(path)))
            .transpose()
    }

    /// With --require-signatures: a verifier of `signer`'s key and each --public-key.
    pub fn verifier(&self, signer: Option<&Signer>) -> Result<Option<Verifier>, KeyFileError> {
        if signer.is_some() && !self.service.signatures.require_signatures {
            tracing::warn!(
                "signing without --require-signatures: commits in the history that are not ours are applied, and what we sign next builds on them"
            );
        }
        self.service.signatures.verifier(signer)
    }

    pub fn snapshot_every(&self) -> Duration {
        Duration::from_secs(self.snapshot_every_secs.max(1))
    }

    pub fn signed_head_every(&self) -> Duration {
        Duration::from_secs(self.signed_head_every_secs.max(1))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::Config;

    /// (Parsing also runs clap's own consistency checks of the flags, in debug builds.)
    #[test]
    fn require_signatures_needs_a_key_of_our_own_or_a_public_one() {
        let parse =
            |extra: &[&str]| Config::try_parse_from(["command-service"].iter().chain(extra));
        assert!(parse(&["--require-signatures"]).is_err());
        assert!(parse(&["--require-signatures", "--signing-key-file", "k"]).is_ok());
        assert!(parse(&["--require-signatures", "--public-key", "p"]).is_ok());
        assert!(parse(&["--public-key", "p"]).is_err());
    }
}

//! The projection service's configuration: one typed struct, from flags with environment
//! fallbacks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use followers_store::StoreArgs;

/// Follows the followers history and serves read models over NATS and HTTP.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "projection-service", version)]
pub struct Config {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Queries are served on `{prefix}.query.{account}.{query}`.
    #[arg(long, env = "FOLLOWERS_SUBJECT_PREFIX", default_value = "followers")]
    pub subject_prefix: String,
    /// Instances in the same queue group share the queries.
    #[arg(
        long,
        env = "FOLLOWERS_QUERY_GROUP",
        default_value = "followers-projection"
    )]
    pub queue_group: String,
    /// Where the HTTP API listens.
    #[arg(long, env = "FOLLOWERS_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Where the read-model snapshot is kept; none: replay the whole history at every start.
    #[arg(long, env = "FOLLOWERS_SNAPSHOT_PATH")]
    pub snapshot_path: Option<PathBuf>,
    /// Seconds between snapshots (only when the model has moved on).
    #[arg(long, env = "FOLLOWERS_SNAPSHOT_EVERY_SECS", default_value_t = 60)]
    pub snapshot_every_secs: u64,
    /// The longest a query waits for its `min_position`, in milliseconds.
    #[arg(long, env = "FOLLOWERS_MAX_WAIT_MS", default_value_t = 5_000)]
    pub max_wait_ms: u64,
    /// Requests larger than this many bytes are refused with `request_too_large`.
    #[arg(long, env = "FOLLOWERS_MAX_REQUEST_BYTES", default_value_t = 1_048_576)]
    pub max_request_bytes: usize,
    /// How long start-up may take to load the history.
    #[arg(long, env = "FOLLOWERS_STARTUP_TIMEOUT_SECS", default_value_t = 300)]
    pub startup_timeout_secs: u64,
}

impl Config {
    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }
}

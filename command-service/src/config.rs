//! The command service's configuration: one typed struct, from flags with environment fallbacks.

use std::time::Duration;

use followers_store::StoreArgs;

/// Serves followers commands over NATS request-reply and runs the follower sync.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "command-service", version)]
pub struct Config {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Commands are served on `{prefix}.cmd.{account}.{command}`.
    #[arg(long, env = "FOLLOWERS_SUBJECT_PREFIX", default_value = "followers")]
    pub subject_prefix: String,
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
    /// Replies to commands that appended nothing, remembered for retries (R24).
    #[arg(long, env = "FOLLOWERS_REPLY_CACHE", default_value_t = 100_000)]
    pub reply_cache: usize,
    /// Run the follower sync (R7-R10) in this instance.
    #[arg(long, env = "FOLLOWERS_FOLLOWER_SYNC", default_value_t = true, action = clap::ArgAction::Set)]
    pub follower_sync: bool,
    /// How long start-up may take to load the history.
    #[arg(long, env = "FOLLOWERS_STARTUP_TIMEOUT_SECS", default_value_t = 300)]
    pub startup_timeout_secs: u64,
}

impl Config {
    pub fn startup_timeout(&self) -> Duration {
        Duration::from_secs(self.startup_timeout_secs)
    }
}

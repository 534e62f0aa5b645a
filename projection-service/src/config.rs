//! The projection service's configuration: one typed struct, from flags with environment
//! fallbacks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use followers_store::StoreArgs;

use crate::http::HttpLimits;
use crate::queries::QueryLimits;

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
    /// Queries handled at once, over NATS and HTTP together; beyond it, `unavailable`.
    #[arg(
        long,
        env = "FOLLOWERS_MAX_QUERIES_IN_FLIGHT",
        default_value_t = 1024,
        value_parser = RangedU64ValueParser::<usize>::new().range(2..)
    )]
    pub max_queries_in_flight: usize,
    /// Of those, how many may wait for their `min_position` [default: a quarter of
    /// --max-queries-in-flight]; kept below --max-queries-in-flight.
    #[arg(
        long,
        env = "FOLLOWERS_MAX_WAITING_QUERIES",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub max_waiting_queries: Option<usize>,
    /// Request bytes the queries in flight may hold together (at least --max-request-bytes);
    /// beyond it, `unavailable`.
    #[arg(long, env = "FOLLOWERS_MAX_QUERY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_query_bytes: usize,
    /// How long an HTTP client has to send a request's line and headers, in milliseconds; also
    /// how long an idle keep-alive connection stays open. Then the connection is closed.
    #[arg(
        long,
        env = "FOLLOWERS_HTTP_HEADER_TIMEOUT_MS",
        default_value_t = 10_000,
        value_parser = RangedU64ValueParser::<u64>::new().range(1..)
    )]
    pub http_header_timeout_ms: u64,
    /// How long an HTTP request's body may take to arrive, in milliseconds; then `408`.
    #[arg(
        long,
        env = "FOLLOWERS_HTTP_BODY_TIMEOUT_MS",
        default_value_t = 10_000,
        value_parser = RangedU64ValueParser::<u64>::new().range(1..)
    )]
    pub http_body_timeout_ms: u64,
    /// How long an HTTP response may wait for the client to read it, in milliseconds; then the
    /// connection is closed.
    #[arg(
        long,
        env = "FOLLOWERS_HTTP_WRITE_TIMEOUT_MS",
        default_value_t = 10_000,
        value_parser = RangedU64ValueParser::<u64>::new().range(1..)
    )]
    pub http_write_timeout_ms: u64,
    /// Open HTTP connections; beyond it, new connections wait to be accepted.
    #[arg(
        long,
        env = "FOLLOWERS_HTTP_MAX_CONNECTIONS",
        default_value_t = 1024,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub http_max_connections: usize,
    /// Apply only commits signed by one of the --public-key keys; others are logged, counted
    /// (`followers_commits_refused`) and stepped over.
    #[arg(long, env = "FOLLOWERS_REQUIRE_SIGNATURES", requires = "public_keys")]
    pub require_signatures: bool,
    /// A public key file of the command service (repeatable; in the environment,
    /// comma-separated), for --require-signatures.
    #[arg(
        long = "public-key",
        env = "FOLLOWERS_PUBLIC_KEYS",
        value_delimiter = ',',
        requires = "require_signatures"
    )]
    pub public_keys: Vec<PathBuf>,
}

impl Config {
    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }

    /// The query budget: the waiting share defaults to a quarter of the places and always
    /// leaves one for immediate queries; the byte budget admits at least one largest request.
    pub fn query_limits(&self) -> QueryLimits {
        let in_flight = self.max_queries_in_flight.max(2);
        QueryLimits {
            in_flight,
            waiting: self
                .max_waiting_queries
                .unwrap_or(in_flight / 4)
                .clamp(1, in_flight - 1),
            bytes: self.max_query_bytes.max(self.max_request_bytes),
        }
    }

    pub fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_millis(self.http_header_timeout_ms),
            body_timeout: Duration::from_millis(self.http_body_timeout_ms),
            write_timeout: Duration::from_millis(self.http_write_timeout_ms),
            max_connections: self.http_max_connections,
            max_request_bytes: self.max_request_bytes,
        }
    }

    /// With --require-signatures: a verifier of the --public-key files.
    pub fn verifier(
        &self,
    ) -> Result<Option<followers_shared::signing::Verifier>, followers_shared::signing::KeyFileError>
    {
        if !self.require_signatures {
            return Ok(None);
        }
        followers_shared::signing::Verifier::from_public_key_files(
            self.public_keys
                .iter()
                .map(|path| (path.as_path(), std::fs::read_to_string(path))),
        )
        .map(Some)
    }
}

//! The projection service's configuration: one typed struct, from flags with environment
//! fallbacks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::HeaderValue;
use clap::builder::RangedU64ValueParser;
use followers_runtime::ServiceArgs;

use crate::auth::AuthSettings;
use crate::http::HttpLimits;
use crate::past::PastLimits;
use crate::queries::QueryLimits;

/// Follows the followers history and serves read models over NATS and HTTP.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "projection-service", version)]
#[command(group(clap::ArgGroup::new("http_auth_key").multiple(true)))]
// `--require-signatures` needs one of these (see `SignatureArgs`).
#[command(group(clap::ArgGroup::new("keys").multiple(true).args(["public_keys"])))]
pub struct Config {
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Where the HTTP API listens.
    #[arg(long, env = "FOLLOWERS_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Instances in the same NATS queue group share the queries.
    #[arg(
        long,
        env = "FOLLOWERS_QUERY_GROUP",
        default_value = "followers-projection"
    )]
    pub queue_group: String,
    /// Where the read-model snapshot is kept; none: replay the whole history at every start.
    #[arg(
        long,
        env = "FOLLOWERS_SNAPSHOT_PATH",
        conflicts_with = "snapshot_in_jetstream"
    )]
    pub snapshot_path: Option<PathBuf>,
    /// Keep the snapshot in the JetStream object store (the bucket `<stream>_snapshots`, made
    /// by the administrative step) instead of a file, as an object named after the partitions
    /// served: an instance started for the same partitions, on any machine, starts from it.
    #[arg(long, env = "FOLLOWERS_SNAPSHOT_IN_JETSTREAM")]
    pub snapshot_in_jetstream: bool,
    /// Seconds between snapshots (only when the model has moved on).
    #[arg(long, env = "FOLLOWERS_SNAPSHOT_EVERY_SECS", default_value_t = 60)]
    pub snapshot_every_secs: u64,
    /// The longest a query waits for its `min_position`, in milliseconds.
    #[arg(long, env = "FOLLOWERS_MAX_WAIT_MS", default_value_t = 5_000)]
    pub max_wait_ms: u64,
    /// The most commits of one account a query `at_position` may read and replay; a moment
    /// that needs more is refused `too_much_history` (docs/protocol.md, "Past moments").
    #[arg(
        long,
        env = "FOLLOWERS_MAX_PAST_COMMITS",
        default_value_t = crate::past::MAX_PAST_COMMITS,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub max_past_commits: usize,
    /// Requests larger than this many bytes are refused with `request_too_large`.
    #[arg(long, env = "FOLLOWERS_MAX_REQUEST_BYTES", default_value_t = 1_048_576)]
    pub max_request_bytes: usize,
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
    /// Serve the access explorer page at `/ui/` (a page and script that read the `/v1` API
    /// with the user's token). Off by default.
    #[arg(long, env = "FOLLOWERS_UI")]
    pub ui: bool,
    /// Change streams (`GET .../changes`, Server-Sent Events) open at once; beyond it, a new
    /// one is refused `unavailable`.
    #[arg(
        long,
        env = "FOLLOWERS_FEED_MAX_STREAMS",
        default_value_t = 256,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub feed_max_streams: usize,
    /// Commits' changes buffered for one change stream's client.
    #[arg(
        long,
        env = "FOLLOWERS_FEED_BUFFER",
        default_value_t = 256,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..)
    )]
    pub feed_buffer: usize,
    /// How long a change stream's buffer may stay full, in milliseconds, before the stream is
    /// cut off (`slow_consumer`).
    #[arg(
        long,
        env = "FOLLOWERS_FEED_SLOW_MS",
        default_value_t = 5_000,
        value_parser = RangedU64ValueParser::<u64>::new().range(1..)
    )]
    pub feed_slow_ms: u64,
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
    /// A file holding an HMAC secret (HS256/384/512, at least 32 bytes) that bearer tokens of
    /// the `/v1` API may be signed with (repeatable; in the environment, comma-separated). With
    /// no secret and no --http-auth-public-key-file, the API needs no token.
    #[arg(
        long = "http-auth-secret-file",
        env = "FOLLOWERS_HTTP_AUTH_SECRET_FILES",
        value_delimiter = ',',
        group = "http_auth_key"
    )]
    pub http_auth_secret_files: Vec<PathBuf>,
    /// A PEM public key file (Ed25519, RSA, or EC P-256/P-384) that verifies bearer tokens of the
    /// `/v1` API (repeatable; in the environment, comma-separated).
    #[arg(
        long = "http-auth-public-key-file",
        env = "FOLLOWERS_HTTP_AUTH_PUBLIC_KEY_FILES",
        value_delimiter = ',',
        group = "http_auth_key"
    )]
    pub http_auth_public_key_files: Vec<PathBuf>,
    /// Bearer tokens must carry this `iss`.
    #[arg(long, env = "FOLLOWERS_HTTP_AUTH_ISSUER", requires = "http_auth_key")]
    pub http_auth_issuer: Option<String>,
    /// Bearer tokens must carry this `aud` (or a list holding it).
    #[arg(long, env = "FOLLOWERS_HTTP_AUTH_AUDIENCE", requires = "http_auth_key")]
    pub http_auth_audience: Option<String>,
    /// Serve the HTTP API over TLS with this PEM certificate chain (leaf first).
    #[arg(
        long,
        env = "FOLLOWERS_HTTP_TLS_CERT_FILE",
        requires = "http_tls_key_file"
    )]
    pub http_tls_cert_file: Option<PathBuf>,
    /// The PEM private key of --http-tls-cert-file.
    #[arg(
        long,
        env = "FOLLOWERS_HTTP_TLS_KEY_FILE",
        requires = "http_tls_cert_file"
    )]
    pub http_tls_key_file: Option<PathBuf>,
    /// An origin whose browser pages may call the HTTP API (CORS), e.g.
    /// `https://dashboard.example.com` (repeatable; in the environment, comma-separated).
    #[arg(
        long = "http-cors-origin",
        env = "FOLLOWERS_HTTP_CORS_ORIGINS",
        value_delimiter = ',',
        value_parser = parse_origin
    )]
    pub http_cors_origins: Vec<HeaderValue>,
    /// Serve `/metrics` on this address instead of --http-addr (plain HTTP; port 0: any free
    /// port).
    #[arg(long, env = "FOLLOWERS_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

/// A CORS origin as browsers send it: `http` or `https`, a host, an optional port, and
/// nothing else (no path, not even a trailing `/`), so that it can match.
fn parse_origin(value: &str) -> Result<HeaderValue, String> {
    let host = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(|| {
            format!("`{value}` is not an origin: it must start with https:// or http://")
        })?;
    let well_formed = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !well_formed {
        return Err(format!(
            "`{value}` is not an origin: after the scheme only a host and a port may follow (no path, no trailing /)"
        ));
    }
    // Browsers send the scheme and host in lower case.
    HeaderValue::from_str(&value.to_ascii_lowercase()).map_err(|e| format!("`{value}`: {e}"))
}

impl Config {
    /// The bounds of the change streams.
    pub fn feed_limits(&self) -> crate::feed::FeedLimits {
        crate::feed::FeedLimits {
            streams: self.feed_max_streams,
            buffer: self.feed_buffer,
            slow_after: Duration::from_millis(self.feed_slow_ms),
        }
    }

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

    /// The bounds of past answers (`at_position`).
    pub fn past_limits(&self) -> PastLimits {
        PastLimits {
            max_commits: self.max_past_commits,
            ..PastLimits::default()
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

    /// Where the bearer-token keys are and what the tokens must name.
    pub fn auth_settings(&self) -> AuthSettings {
        AuthSettings {
            secret_files: self.http_auth_secret_files.clone(),
            public_key_files: self.http_auth_public_key_files.clone(),
            issuer: self.http_auth_issuer.clone(),
            audience: self.http_auth_audience.clone(),
        }
    }

    /// The TLS certificate chain and key files, when the API is served over TLS.
    pub fn tls_files(&self) -> Option<(&Path, &Path)> {
        Some((
            self.http_tls_cert_file.as_deref()?,
            self.http_tls_key_file.as_deref()?,
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::{Config, parse_origin};

    /// (Parsing also runs clap's own consistency checks of the flags, in debug builds.)
    #[test]
    fn require_signatures_needs_a_public_key() {
        for (flags, accepted) in [
            (&["--require-signatures"][..], false),
            (&["--require-signatures", "--public-key", "p"][..], true),
        ] {
            let argv = std::iter::once(&"projection-service").chain(flags);
            assert_eq!(Config::try_parse_from(argv).is_ok(), accepted, "{flags:?}");
        }
    }

    #[test]
    fn an_origin_is_a_scheme_a_host_and_perhaps_a_port() {
        for (given, kept) in [
            ("https://dash.example.com", "https://dash.example.com"),
            ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
            ("https://Dash.Example.COM", "https://dash.example.com"),
        ] {
            assert_eq!(parse_origin(given).unwrap(), kept);
        }
        for refused in [
            "dash.example.com",
            "https://dash.example.com/",
            "https://dash.example.com/app",
            "https://",
            "*",
            "null",
        ] {
            assert!(parse_origin(refused).is_err(), "{refused}");
        }
    }
}

//! Connecting to NATS: one typed set of options, shared by every binary.
//!
//! Every way nats-server authenticates a client is here: a `.creds` file (JWT and nkey), an nkey
//! seed file, a user and password (also from `nats://user:password@host` URLs), a token, and
//! TLS (a CA file, a client certificate and key, TLS required). Secrets are read from files,
//! never taken from command-line values that `ps` would show; a password in a URL is accepted
//! for development and removed from the addresses before they are logged. `--nats-url` takes a
//! comma-separated seed list, so a client reaches a cluster through any node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::{ConnectOptions, ServerAddr};
use followers_shared::store::{Failed, StoreError};

/// A user name and password found in a URL.
pub type UserPassword = (String, String);

/// How to reach and authenticate to NATS.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URLs, comma-separated: a seed list for a cluster (`nats://a:4222,nats://b:4222`).
    /// `user:password@` in a URL is used as the user and password.
    #[arg(
        long,
        env = "FOLLOWERS_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// NATS credentials file (.creds: a user JWT and its nkey seed).
    #[arg(long, env = "FOLLOWERS_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// A file holding the user's nkey seed (`SU...`).
    #[arg(long, env = "FOLLOWERS_NATS_NKEY_FILE")]
    pub nats_nkey_file: Option<PathBuf>,
    /// The NATS user name; its password comes from `--nats-password-file`.
    #[arg(long, env = "FOLLOWERS_NATS_USER")]
    pub nats_user: Option<String>,
    /// A file holding the password of `--nats-user`.
    #[arg(long, env = "FOLLOWERS_NATS_PASSWORD_FILE")]
    pub nats_password_file: Option<PathBuf>,
    /// A file holding an authentication token.
    #[arg(long, env = "FOLLOWERS_NATS_TOKEN_FILE")]
    pub nats_token_file: Option<PathBuf>,
    /// A PEM file of CA certificates to trust for the server's TLS certificate.
    #[arg(long, env = "FOLLOWERS_NATS_CA_FILE")]
    pub nats_ca_file: Option<PathBuf>,
    /// The client's TLS certificate (PEM), with `--nats-key-file`.
    #[arg(long, env = "FOLLOWERS_NATS_CERT_FILE", requires = "nats_key_file")]
    pub nats_cert_file: Option<PathBuf>,
    /// The client's TLS private key (PEM), with `--nats-cert-file`.
    #[arg(long, env = "FOLLOWERS_NATS_KEY_FILE", requires = "nats_cert_file")]
    pub nats_key_file: Option<PathBuf>,
    /// Refuse to talk to the server without TLS.
    #[arg(long, env = "FOLLOWERS_NATS_REQUIRE_TLS", default_value_t = false, action = clap::ArgAction::Set)]
    pub nats_require_tls: bool,
    /// The prefix of this client's reply subjects (default `_INBOX`). Give each caller its own
    /// (`_INBOX_<name>`), and allow it only that, so no one receives another's replies.
    #[arg(long, env = "FOLLOWERS_NATS_INBOX_PREFIX")]
    pub nats_inbox_prefix: Option<String>,
}

impl NatsArgs {
    /// The server addresses of the seed list, with any `user:password@` removed, and the user
    /// and password found in them.
    pub fn servers(&self) -> Result<(Vec<ServerAddr>, Option<UserPassword>), StoreError> {
        let mut servers = Vec::new();
        let mut user_pass = None;
        for url in self
            .nats_url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            let addr: ServerAddr = url.parse().map_err(|e| {
                StoreError::Incompatible(Failed::doing(format!("--nats-url `{}`", redact(url)), e))
            })?;
            if addr.has_user_pass() {
                let user = addr.username().unwrap_or_default().to_owned();
                let pass = addr.password().unwrap_or_default().to_owned();
                user_pass.get_or_insert((user, pass));
            }
            let mut bare = addr.into_inner();
            // Cannot fail for the nats/tls/ws URLs a ServerAddr holds.
            let _ = bare.set_username("");
            let _ = bare.set_password(None);
            servers.push(ServerAddr::from_url(bare).map_err(|e| {
                StoreError::Incompatible(Failed::doing(format!("--nats-url `{}`", redact(url)), e))
            })?);
        }
        if servers.is_empty() {
            return Err(StoreError::Incompatible(
                "--nats-url names no server".into(),
            ));
        }
        Ok((servers, user_pass))
    }

    /// The seed list as it may be logged: without passwords.
    pub fn display_url(&self) -> String {
        redact(&self.nats_url)
    }

    /// Connect options with every configured way to authenticate.
    pub async fn options(&self, name: &str) -> Result<ConnectOptions, StoreError> {
        let (_, url_user) = self.servers()?;
        let mut options = ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(5))
            .reconnect_delay_callback(reconnect_delay)
            .require_tls(self.nats_require_tls);
        if let Some(creds) = &self.nats_creds {
            options = options
                .credentials_file(creds)
                .await
                .map_err(|e| secret_error("--nats-creds", creds, e))?;
        }
        if let Some(path) = &self.nats_nkey_file {
            options = options.nkey(read_secret("--nats-nkey-file", path)?);
        }
        match (&self.nats_user, &self.nats_password_file, url_user) {
            (Some(user), Some(path), _) => {
                let password = read_secret("--nats-password-file", path)?;
                options = options.user_and_password(user.clone(), password);
            }
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(StoreError::Incompatible(
                    "--nats-user and --nats-password-file go together".into(),
                ));
            }
            (None, None, Some((user, password))) => {
                options = options.user_and_password(user, password);
            }
            (None, None, None) => {}
        }
        if let Some(path) = &self.nats_token_file {
            options = options.token(read_secret("--nats-token-file", path)?);
        }
        if let Some(ca) = &self.nats_ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.nats_cert_file, &self.nats_key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if let Some(prefix) = &self.nats_inbox_prefix {
            options = options.custom_inbox_prefix(prefix);
        }
        Ok(options)
    }

    /// Connects once, failing fast: for tools (the audit tool).
    pub async fn connect_once(&self, name: &str) -> Result<async_nats::Client, StoreError> {
        let (servers, _) = self.servers()?;
        self.options(name)
            .await?
            .connect(servers)
            .await
            .map_err(|e| self.unreachable(e))
    }

    /// Connects for a service: keeps trying the seed list until a server answers, for at most
    /// `wait`, then reconnects on its own for as long as the process runs.
    pub async fn connect_service(
        &self,
        name: &str,
        wait: Duration,
    ) -> Result<async_nats::Client, StoreError> {
        let (servers, _) = self.servers()?;
        let options = self.options(name).await?.retry_on_initial_connect();
        let client = options
            .connect(servers)
            .await
            .map_err(|e| self.unreachable(e))?;
        // `retry_on_initial_connect` returns before the handshake; wait for the server's info.
        let deadline = tokio::time::Instant::now() + wait;
        let mut warned = false;
        while client.server_info().version.is_empty() {
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Unavailable(
                    format!(
                        "no NATS server answered at {} within {wait:?}",
                        self.display_url()
                    )
                    .into(),
                ));
            }
            if !warned {
                tracing::warn!(url = %self.display_url(), "waiting for a NATS server to answer");
                warned = true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(client)
    }

    /// The seed list could not be reached: `NATS at {url}: {why}`.
    pub fn unreachable(&self, e: async_nats::ConnectError) -> StoreError {
        StoreError::Unavailable(Failed::doing(format!("NATS at {}", self.display_url()), e))
    }
}

/// The longest pause between two tries to reconnect.
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(1);

/// The pause before the `attempts`-th try to reconnect: none for the first (another server of
/// the seed list usually answers at once), then from 50 ms doubling up to 1 s, each with a random
/// part so that many clients do not come back in step. The client's own default doubles up to
/// 4 s, so a service would find a cluster that came back (a restart of every node) up to 4 s late.
pub fn reconnect_delay(attempts: usize) -> Duration {
    use std::hash::BuildHasher;
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let doublings = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(10);
    let full = (Duration::from_millis(50) * 2_u32.pow(doublings)).min(RECONNECT_DELAY_MAX);
    // Between half the pause and all of it.
    let random = std::collections::hash_map::RandomState::new().hash_one(attempts);
    let half = full / 2;
    half + half.mul_f64((random % 1024) as f64 / 1024.0)
}

/// A secret from a file, without a trailing line break.
fn read_secret(flag: &str, path: &Path) -> Result<String, StoreError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
        .map_err(|e| secret_error(flag, path, e))
}

fn secret_error(flag: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Incompatible(Failed::doing(format!("{flag} {}", path.display()), e))
}

/// `url` with any password replaced by `***`.
fn redact(urls: &str) -> String {
    urls.split(',')
        .map(|u| match (u.find("://"), u.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let creds = &u[scheme + 3..at];
                let user = creds.split(':').next().unwrap_or_default();
                format!("{}{user}:***{}", &u[..scheme + 3], &u[at..])
            }
            _ => u.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn args(url: &str) -> NatsArgs {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            nats: NatsArgs,
        }
        Cli::parse_from(["x", "--nats-url", url]).nats
    }

    #[test]
    fn a_comma_separated_seed_list_gives_every_server() {
        let (servers, creds) = args("nats://127.0.0.1:4222, nats://127.0.0.1:4223")
            .servers()
            .unwrap();
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[1].port(), 4223);
        assert!(creds.is_none());
    }

    #[test]
    fn reconnecting_starts_at_once_and_never_pauses_more_than_a_second() {
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        let second = reconnect_delay(2);
        assert!(second >= Duration::from_millis(25) && second <= Duration::from_millis(50));
        for attempts in [8, 20, 1_000, usize::MAX] {
            let pause = reconnect_delay(attempts);
            assert!(pause >= RECONNECT_DELAY_MAX / 2 && pause <= RECONNECT_DELAY_MAX);
        }
    }

    #[test]
    fn a_password_in_the_url_is_used_and_never_shown() {
        let a = args("nats://svc:s3cret@127.0.0.1:4222");
        let (servers, creds) = a.servers().unwrap();
        assert_eq!(creds, Some(("svc".to_owned(), "s3cret".to_owned())));
        assert!(!servers[0].has_user_pass());
        assert!(!a.display_url().contains("s3cret"), "{}", a.display_url());
    }
}

//! `followers-admin`: the administrative steps. See `--help` and docs/operations.md.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use followers_admin::request::Outcome;
use followers_store::{NatsArgs, StoreArgs};

/// Administrative steps of a followers installation.
#[derive(Debug, clap::Parser)]
#[command(name = "followers-admin", version)]
enum Cli {
    /// Create the history stream and the checkpoint bucket, or bring their replicas, size and
    /// dedup window in line with these flags. Needs NATS credentials allowed to manage streams.
    Init {
        #[command(flatten)]
        store: Box<StoreArgs>,
        /// How long to wait, in seconds, for a NATS server to answer and for JetStream to be
        /// available (a fresh cluster electing its leader) before giving up.
        #[arg(long, default_value_t = 60)]
        wait_secs: u64,
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
    /// Send one request (a command or a query) as a NATS caller and print the reply on stdout.
    /// Exits 0 when the reply says `"ok": true`, 2 when it says `"ok": false`, 1 when no reply
    /// came.
    Request {
        #[command(flatten)]
        nats: Box<NatsArgs>,
        /// How long to wait for the reply, in seconds.
        #[arg(long, default_value_t = 15)]
        timeout_secs: u64,
        /// The subject, e.g. `followers.cmd.acme.open_account` or `followers.query.acme.account`.
        subject: String,
        /// The request's JSON body; `-` reads it from stdin.
        body: String,
    },
    /// Check that an HTTP endpoint answers 2xx (a container health check): exits 0 if it does,
    /// 1 otherwise. Plain HTTP only.
    Probe {
        /// What to GET: by default the projection's `/health`; a command service answers on its
        /// --http-addr, e.g. `http://127.0.0.1:9091/ready`.
        #[arg(
            long,
            env = "FOLLOWERS_PROBE_URL",
            default_value = "http://127.0.0.1:8080/health"
        )]
        url: String,
        /// How long to wait for the connection and the answer, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // `request` and `probe` print only their result (their connection's events are noise to a
    // script), unless FOLLOWERS_LOG asks for logs.
    let quiet = matches!(cli, Cli::Request { .. } | Cli::Probe { .. });
    if !quiet || std::env::var_os("FOLLOWERS_LOG").is_some() {
        followers_runtime::init_logging();
    }
    match cli {
        Cli::Init { store, wait_secs } => {
            followers_admin::init_waiting(&store, Duration::from_secs(wait_secs)).await?;
            tracing::info!(stream = %store.stream, replicas = store.replicas, "the history stream and the checkpoint bucket are in place");
        }
        Cli::Nkeys { accounts, out } => {
            for key in followers_admin::nkeys::provision(&accounts, &out)? {
                println!("{} {}", key.seed_file.display(), key.public_key);
            }
        }
        Cli::Request {
            nats,
            timeout_secs,
            subject,
            body,
        } => {
            let body = if body == "-" {
                let mut read = Vec::new();
                std::io::stdin().read_to_end(&mut read)?;
                read
            } else {
                body.into_bytes()
            };
            let reply = match followers_admin::request::request(
                &nats,
                &subject,
                body,
                Duration::from_secs(timeout_secs),
            )
            .await
            {
                Ok(reply) => reply,
                Err(e) => {
                    // One line for a script: no reply is an answer here, not a crash.
                    eprintln!("followers-admin request: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let mut out = std::io::stdout().lock();
            out.write_all(&reply)?;
            out.write_all(b"\n")?;
            if Outcome::of(&reply) == Outcome::Refused {
                return Ok(ExitCode::from(2));
            }
        }
        Cli::Probe { url, timeout_ms } => {
            if let Err(e) = followers_admin::probe::probe(&url, Duration::from_millis(timeout_ms)) {
                eprintln!("followers-admin probe: {e}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

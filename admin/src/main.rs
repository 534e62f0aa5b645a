//! `followers-admin`: the administrative steps. See `--help` and docs/operations.md.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use followers_admin::cli::{self, AdminCommand};
use followers_admin::request::Outcome;
use followers_store::NatsArgs;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = <cli::Cli as followers_runtime::ShownCli>::parse_shown();
    // `request`, `probe` and `completions` print only their result (their connection's events
    // are noise to a script), unless FOLLOWERS_LOG asks for logs.
    let quiet = matches!(
        cli.command,
        AdminCommand::Request { .. }
            | AdminCommand::Probe { .. }
            | AdminCommand::Completions { .. }
    );
    if !quiet || std::env::var_os("FOLLOWERS_LOG").is_some() {
        followers_runtime::init_logging();
    }
    let store = cli.store;
    match cli.command {
        AdminCommand::Init { wait_secs } => {
            followers_admin::init_waiting(&store, Duration::from_secs(wait_secs)).await?;
            tracing::info!(stream = %store.stream, replicas = store.replicas, "the history stream and the checkpoint bucket are in place");
        }
        AdminCommand::Nkeys { accounts, out } => {
            for key in followers_admin::nkeys::provision(&accounts, &out)? {
                println!("{} {}", key.seed_file.display(), key.public_key);
            }
        }
        AdminCommand::Request {
            timeout_secs,
            subject,
            body,
        } => return request(&store.nats, &subject, body, timeout_secs).await,
        AdminCommand::Probe { url, timeout_ms } => {
            if let Err(e) = followers_admin::probe::probe(&url, Duration::from_millis(timeout_ms)) {
                eprintln!("followers-admin probe: {e}");
                return Ok(ExitCode::FAILURE);
            }
        }
        AdminCommand::Completions { shell } => {
            std::io::stdout().lock().write_all(
                &<cli::Cli as followers_runtime::ShownCli>::completions(shell),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `request`: sends `body` (`-`: stdin) to `subject` and prints the reply.
async fn request(
    nats: &NatsArgs,
    subject: &str,
    body: String,
    timeout_secs: u64,
) -> anyhow::Result<ExitCode> {
    let body = if body == "-" {
        let mut read = Vec::new();
        std::io::stdin().read_to_end(&mut read)?;
        read
    } else {
        body.into_bytes()
    };
    let timeout = Duration::from_secs(timeout_secs);
    let reply = match followers_admin::request::request(nats, subject, body, timeout).await {
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
    Ok(ExitCode::SUCCESS)
}

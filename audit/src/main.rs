//! `followers-audit`: see the library's documentation and docs/audit.md.
//!
//! Exit codes: 0 done; 1 an error (one sentence on stderr); 2 bad usage (from clap);
//! 3 `verify` found problems (listed on stdout, the first one on stderr).

use std::io::Write;
use std::process::ExitCode;

use followers_audit::{Outcome, cli};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = <cli::Cli as followers_runtime::ShownCli>::parse_shown();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = followers_audit::run(cli, &mut out).await;
    let flushed = out.flush();
    match (result, flushed) {
        (Ok(Outcome::Done), Ok(())) => ExitCode::SUCCESS,
        (Ok(Outcome::VerifyFailed { problems, first }), _) => {
            eprintln!(
                "followers-audit: verification failed with {problems} problem(s); the first: {first}"
            );
            ExitCode::from(3)
        }
        (Err(e), _) => {
            eprintln!("followers-audit: {}", anyhow::Error::new(e));
            ExitCode::FAILURE
        }
        (Ok(Outcome::Done), Err(e)) => {
            eprintln!("followers-audit: cannot write the output: {e}");
            ExitCode::FAILURE
        }
    }
}

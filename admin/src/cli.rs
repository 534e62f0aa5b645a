//! The command line of `followers-admin`.
//!
//! The store and NATS flags are global: they may come before or after the subcommand
//! (`followers-admin --replicas 3 init` and `followers-admin init --replicas 3`). Each
//! subcommand's help shows only those it uses: `init` all of them, `request` the NATS ones,
//! `nkeys`, `probe` and `completions` none (they accept them and ignore them).

use std::path::PathBuf;

use clap::{Arg, Args, Command, CommandFactory, Parser, Subcommand};
use clap_complete::Shell;
use followers_runtime::ShownCli;
use followers_store::{NatsArgs, StoreArgs};

/// Administrative steps of a followers installation.
#[derive(Debug, Parser)]
#[command(name = "followers-admin", version, mut_args(global_flag))]
pub struct Cli {
    #[command(flatten, next_help_heading = STORE_HEADING)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create the history stream and the checkpoint bucket, or bring their replicas, size and
    /// dedup window in line with the store flags. Needs NATS credentials allowed to manage
    /// streams.
    Init {
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
    /// Print a shell completion script for this tool on stdout, e.g.
    /// `followers-admin completions bash > ~/.local/share/bash-completion/completions/followers-admin`.
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// The heading of the store and NATS flags in the help.
const STORE_HEADING: &str = "Store and NATS options";

/// Every top-level flag (the store's) is global, so it may come after the subcommand too.
fn global_flag(arg: Arg) -> Arg {
    arg.global(true)
}

/// The command line as parsed and shown: [`Cli`]'s, with each subcommand's help narrowed to the
/// store flags it uses.
pub fn command() -> Command {
    let nats: Vec<_> = NatsArgs::augment_args(Command::new("nats"))
        .get_arguments()
        .map(|arg| arg.get_id().clone())
        .collect();
    let mut command = Cli::command();
    // Global flags are copied into each subcommand when the command is built; only then can a
    // subcommand's copy be hidden. Parsing is the same either way.
    command.build();
    command.mut_subcommands(|sub| {
        let shown = |arg: &Arg| match sub.get_name() {
            "init" => true,
            "request" => nats.contains(arg.get_id()),
            _ => false,
        };
        let hidden: Vec<_> = sub
            .get_arguments()
            .filter(|arg| arg.is_global_set() && !shown(arg))
            .map(|arg| arg.get_id().clone())
            .collect();
        sub.mut_args(|arg| {
            let hide = hidden.contains(arg.get_id());
            if hide { arg.hide(true) } else { arg }
        })
    })
}

impl ShownCli for Cli {
    const NAME: &'static str = "followers-admin";

    fn shown() -> Command {
        command()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let argv = std::iter::once("followers-admin").chain(args.iter().copied());
        Cli::try_parse_shown_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn help(subcommand: &str) -> String {
        let mut command = command();
        let sub = command.find_subcommand_mut(subcommand).unwrap();
        sub.render_long_help().to_string()
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
        command().debug_assert();
    }

    #[test]
    fn store_flags_come_before_or_after_the_subcommand() {
        let flags = [
            "--replicas",
            "3",
            "--stream",
            "X",
            "--nats-url",
            "nats://h:1",
        ];
        let before = parse(&[&flags[..], &["init", "--wait-secs", "5"]].concat());
        let after = parse(&[&["init", "--wait-secs", "5"], &flags[..]].concat());
        for cli in [before, after] {
            assert_eq!(cli.store.replicas, 3);
            assert_eq!(cli.store.stream, "X");
            assert_eq!(cli.store.nats.nats_url, "nats://h:1");
            assert!(matches!(cli.command, AdminCommand::Init { wait_secs: 5 }));
        }
        let creds = ["--nats-creds", "a.creds"];
        for args in [
            [&creds[..], &["request", "s", "{}"]].concat(),
            [&["request", "s", "{}"], &creds[..]].concat(),
        ] {
            let cli = parse(&args);
            assert_eq!(cli.store.nats.nats_creds, Some(PathBuf::from("a.creds")));
            assert!(matches!(cli.command, AdminCommand::Request { .. }));
        }
        assert_eq!(parse(&["init"]).store.replicas, 1);
    }

    #[test]
    fn each_help_shows_the_store_flags_its_subcommand_uses() {
        let init = help("init");
        for flag in [
            "--replicas",
            "--max-bytes",
            "--stream",
            "--nats-url",
            "--nats-creds",
        ] {
            assert!(init.contains(flag), "init: {flag}");
        }
        let request = help("request");
        assert!(request.contains("--nats-url") && request.contains("--nats-inbox-prefix"));
        assert!(!request.contains("--stream") && !request.contains("--replicas"));
        for bare in ["nkeys", "probe", "completions"] {
            assert!(!help(bare).contains("--nats-url"), "{bare}");
            assert!(!help(bare).contains("--stream"), "{bare}");
        }
    }

    #[test]
    fn completions_name_the_subcommands() {
        let bash = String::from_utf8(Cli::completions(Shell::Bash)).unwrap();
        assert!(bash.contains("-o default followers-admin"), "{bash}");
        for subcommand in ["init", "request", "completions"] {
            assert!(bash.contains(subcommand), "{subcommand}");
        }
        let cli = parse(&["completions", "fish"]);
        assert!(matches!(
            cli.command,
            AdminCommand::Completions { shell: Shell::Fish }
        ));
    }
}

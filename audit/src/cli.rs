//! The command line.
//!
//! The store and NATS flags are global: they may come before or after the subcommand
//! (`followers-audit --stream X verify` and `followers-audit verify --stream X`). The help shows
//! an auditor only what they use: the flags that matter only when a stream is created
//! (`--replicas`, `--storage`, `--max-bytes`, `--duplicate-window-secs`) appear only in
//! `import`'s help, the one subcommand that may create the stream, and `keygen` and
//! `completions`, which need no store, show none of the global flags. Hidden flags still work.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Arg, ArgGroup, Args, Command, CommandFactory, Parser, Subcommand};
use clap_complete::Shell;
use followers_runtime::ShownCli;
use followers_shared::ids::{AccountId, ContactId, OpportunityId, UserId};
use followers_shared::model::RecordRef;
use followers_shared::signing::KeyId;
use followers_store::StoreArgs;

/// Answers from the history alone: what happened to a record, who did it, why, and who could do
/// what to it at a given moment.
#[derive(Debug, Parser)]
#[command(name = "followers-audit", version, mut_args(global_flag))]
pub struct Cli {
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten, next_help_heading = STORE_HEADING)]
    pub store: StoreArgs,
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The timeline of one record, of an account's own stream, or of one user.
    History(HistoryArgs),
    /// A record's owner, followers and access at a time or position.
    At(AtArgs),
    /// The history (or a range of positions) as JSON lines, one stored commit per line.
    Export(ExportArgs),
    /// Appends exported JSON lines to the (empty) configured store.
    Import(ImportArgs),
    /// Checks that the history is whole and untampered, and that replaying it is consistent.
    Verify(VerifyArgs),
    /// Writes a new signing key pair: `<id>.key` (private, for the command service) and
    /// `<id>.pub` (public, for verify and the services' --public-key). Needs no store.
    Keygen(KeygenArgs),
    /// Prints a shell completion script for this tool on stdout, e.g.
    /// `followers-audit completions bash > ~/.local/share/bash-completion/completions/followers-audit`.
    Completions(CompletionsArgs),
}

/// Which record.
#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    /// A contact of the account.
    #[arg(long, conflicts_with = "opportunity")]
    pub contact: Option<ContactId>,
    /// An opportunity of the account.
    #[arg(long)]
    pub opportunity: Option<OpportunityId>,
}

impl RecordArgs {
    pub fn record(&self) -> Option<RecordRef> {
        match (&self.contact, &self.opportunity) {
            (Some(c), _) => Some(RecordRef::Contact(c.clone())),
            (None, Some(o)) => Some(RecordRef::Opportunity(o.clone())),
            (None, None) => None,
        }
    }
}

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("subject").required(true).args(["contact", "opportunity", "account_stream", "user"])))]
pub struct HistoryArgs {
    /// The account (required except with --user, where it narrows to one account). Only this
    /// account's history is read, with the grants of its auditor (see docs/audit.md).
    #[arg(long, required_unless_present = "user")]
    pub account: Option<AccountId>,
    #[command(flatten)]
    pub record: RecordArgs,
    /// The account's own stream: settings and memberships.
    #[arg(long)]
    pub account_stream: bool,
    /// Everything this user did or was given.
    #[arg(long, conflicts_with_all = ["contact", "opportunity", "account_stream"])]
    pub user: Option<UserId>,
    /// JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("record").required(true).args(["contact", "opportunity"])))]
#[command(group(ArgGroup::new("moment").required(true).args(["time", "position"])))]
pub struct AtArgs {
    /// The record's account. Only this account's history is read, with the grants of its
    /// auditor (see docs/audit.md).
    #[arg(long)]
    pub account: AccountId,
    #[command(flatten)]
    pub record: RecordArgs,
    /// The moment as an RFC 3339 time, e.g. 2026-11-24T10:00:00Z.
    #[arg(long)]
    pub time: Option<DateTime<Utc>>,
    /// The moment as a position of the history (after the commit at it).
    #[arg(long)]
    pub position: Option<u64>,
    /// Only this user's access (every member's otherwise).
    #[arg(long)]
    pub user: Option<UserId>,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Only this account's commits, read with the grants of its auditor (see docs/audit.md).
    #[arg(long)]
    pub account: Option<AccountId>,
    /// The first position to export (default: the first).
    #[arg(long)]
    pub from: Option<u64>,
    /// The last position to export (default: the last).
    #[arg(long)]
    pub to: Option<u64>,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// Read from this file instead of stdin.
    #[arg(long, short)]
    pub input: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Only this account's commits, read with the grants of its auditor. The checks that need
    /// the whole history (the signed head) are skipped and the output says so (docs/audit.md).
    #[arg(long)]
    pub account: Option<AccountId>,
    /// Also compare with the projection service's snapshot file.
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    /// Accept commits without a chain value (written before chains existed).
    #[arg(long)]
    pub allow_unsealed: bool,
    /// Check every commit's signature, and the signed head, against this public key file
    /// (repeatable, one per key id; in the environment, comma-separated). Without any, signatures
    /// are not checked.
    #[arg(
        long = "public-key",
        env = "FOLLOWERS_PUBLIC_KEYS",
        value_delimiter = ','
    )]
    pub public_keys: Vec<PathBuf>,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct KeygenArgs {
    /// The new key's id, stored with every signature it makes: 1 to 64 ASCII letters, digits,
    /// `_`, `-` or `.`, e.g. `2026-01`. Give each key its own.
    #[arg(long)]
    pub key_id: KeyId,
    /// The directory to write `<id>.key` and `<id>.pub` into (created if missing). Existing
    /// files are never overwritten.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The heading of the store and NATS flags in the help.
const STORE_HEADING: &str = "Store and NATS options";

/// The store flags only creating the history stream uses: `import` may create it (an empty
/// store); every other subcommand only binds to an existing stream and never reads them.
const CREATION_FLAGS: [&str; 4] = ["replicas", "storage", "max_bytes", "duplicate_window_secs"];

/// Every top-level flag is global, so it may come after the subcommand too. The stream-creation
/// flags are hidden here and in every subcommand's help but `import`'s (see [`command`]).
fn global_flag(arg: Arg) -> Arg {
    let creation = CREATION_FLAGS.contains(&arg.get_id().as_str());
    arg.global(true).hide(creation)
}

/// The command line as parsed and shown: [`Cli`]'s, with each subcommand's help narrowed to the
/// store flags it uses.
pub fn command() -> Command {
    let mut command = Cli::command();
    // Global flags are copied into each subcommand when the command is built; only then can a
    // subcommand's copy be shown or hidden. Parsing is the same either way.
    command.build();
    command.mut_subcommands(|sub| match sub.get_name() {
        "import" => sub.mut_args(|arg| {
            let creation = CREATION_FLAGS.contains(&arg.get_id().as_str());
            if creation { arg.hide(false) } else { arg }
        }),
        "keygen" | "completions" => sub.mut_args(|arg| {
            let global = arg.is_global_set();
            if global { arg.hide(true) } else { arg }
        }),
        _ => sub,
    })
}

impl ShownCli for Cli {
    const NAME: &'static str = "followers-audit";

    fn shown() -> Command {
        command()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let argv = std::iter::once("followers-audit").chain(args.iter().copied());
        Cli::try_parse_shown_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn help(subcommand: Option<&str>) -> String {
        let mut command = command();
        match subcommand {
            Some(name) => command
                .find_subcommand_mut(name)
                .unwrap()
                .render_long_help(),
            None => command.render_long_help(),
        }
        .to_string()
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
        command().debug_assert();
    }

    #[test]
    fn store_flags_come_before_or_after_the_subcommand() {
        let flags = ["--stream", "X", "--nats-url", "nats://h:1", "--quiet"];
        let before = parse(&[&flags[..], &["verify"]].concat());
        let after = parse(&[&["verify"], &flags[..]].concat());
        for cli in [before, after] {
            assert_eq!(cli.store.stream, "X");
            assert_eq!(cli.store.nats.nats_url, "nats://h:1");
            assert!(cli.quiet);
            assert!(matches!(cli.command, AuditCommand::Verify(_)));
        }
        let split = parse(&[
            "--stream",
            "X",
            "history",
            "--user",
            "ann",
            "--nats-url",
            "n://h",
        ]);
        assert_eq!(
            (
                split.store.stream.as_str(),
                split.store.nats.nats_url.as_str()
            ),
            ("X", "n://h")
        );
        let defaults = parse(&["verify"]);
        assert_eq!(defaults.store.stream, "FOLLOWERS");
        assert_eq!(defaults.store.replicas, 1);
    }

    #[test]
    fn hidden_flags_still_work_in_either_place() {
        for args in [
            &["import", "--replicas", "3"],
            &["--replicas", "3", "import"],
        ] {
            assert_eq!(parse(args).store.replicas, 3);
        }
        let verify = parse(&["verify", "--max-bytes", "-1", "--storage", "memory"]);
        assert_eq!(verify.store.storage, followers_store::any::Storage::Memory);
    }

    #[test]
    fn the_help_shows_the_stream_creation_flags_only_for_import() {
        for name in [
            "--replicas",
            "--storage",
            "--max-bytes",
            "--duplicate-window-secs",
        ] {
            assert!(help(Some("import")).contains(name), "{name}");
            for other in [None, Some("verify"), Some("history"), Some("export")] {
                assert!(!help(other).contains(name), "{other:?} shows {name}");
            }
        }
        for shown in [None, Some("verify"), Some("import"), Some("at")] {
            assert!(help(shown).contains("--stream"), "{shown:?}");
            assert!(help(shown).contains("--nats-creds"), "{shown:?}");
        }
        for bare in ["keygen", "completions"] {
            assert!(!help(Some(bare)).contains("--stream"), "{bare}");
            assert!(!help(Some(bare)).contains("--nats-url"), "{bare}");
        }
    }

    #[test]
    fn completions_name_the_subcommands() {
        let bash = String::from_utf8(Cli::completions(Shell::Bash)).unwrap();
        assert!(bash.contains("-o default followers-audit"), "{bash}");
        for subcommand in ["verify", "import", "completions"] {
            assert!(bash.contains(subcommand), "{subcommand}");
        }
        let cli = parse(&["completions", "zsh"]);
        assert!(matches!(
            cli.command,
            AuditCommand::Completions(CompletionsArgs { shell: Shell::Zsh })
        ));
    }
}

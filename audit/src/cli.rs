//! The command line.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{ArgGroup, Args, Parser, Subcommand};
use followers_shared::ids::{AccountId, ContactId, OpportunityId, UserId};
use followers_shared::model::RecordRef;
use followers_shared::signing::KeyId;
use followers_store::StoreArgs;

/// Answers from the history alone: what happened to a record, who did it, why, and who could do
/// what to it at a given moment.
#[derive(Debug, Parser)]
#[command(name = "followers-audit", version)]
pub struct Cli {
    #[command(flatten)]
    pub store: StoreArgs,
    /// No progress bar, even on a terminal.
    #[arg(long, global = true)]
    pub quiet: bool,
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

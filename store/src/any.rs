//! Choosing a backend at start-up: one typed set of options, and one store type that delegates
//! to whichever backend was chosen, so the services are written once.

use std::time::Duration;

use followers_shared::ids::AccountId;
use followers_shared::partition::{PartitionCount, PartitionSet, Partitions};
use followers_shared::store::{
    Appended, Commit, CommitStream, EncodedCommit, EventStore, Expected, HistoryId, Position,
    StoreError, StoredCommit, StreamId,
};

use crate::MemoryStore;
use crate::connect::NatsArgs;
#[cfg(feature = "eventstoredb")]
use crate::eventstoredb::EventStoreDb;
#[cfg(feature = "jetstream")]
use crate::jetstream::{JetStreamConfig, JetStreamStore, StorageKind};

/// Whether opening the store may create or change the history stream and the checkpoint bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamSetup {
    /// Create them if missing and bring their adjustable settings (replicas, size, dedup window)
    /// in line with the configuration: the administrative step (`followers-admin init`,
    /// `command-service --manage-stream`, the tests).
    Manage,
    /// Create them with the configured settings if missing; use existing ones as they are (only
    /// checked, like [`StreamSetup::Bind`]). For `followers-audit import`, which may fill an
    /// empty store but must not change a history it appends to: its default `--replicas 1`
    /// would otherwise shrink a 3-replica stream.
    CreateIfMissing,
    /// Use what exists and only check that it is compatible; never create or change anything.
    /// Every other process: a projection, an auditor, a command service without
    /// `--manage-stream`. Needs only read access to the stream's configuration.
    Bind,
}

/// Which event store holds the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Jetstream,
    Eventstoredb,
}

/// Where the history is kept and how to reach it. Shared by both services and the audit tool.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// How to reach NATS (also used for commands and queries).
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Which event store holds the history.
    #[arg(
        long = "store",
        env = "FOLLOWERS_STORE",
        value_enum,
        default_value = "jetstream"
    )]
    pub backend: Backend,
    /// JetStream: the history stream's name.
    #[arg(long, env = "FOLLOWERS_STREAM", default_value = "FOLLOWERS")]
    pub stream: String,
    /// JetStream: subjects of the history start with this prefix.
    #[arg(
        long,
        env = "FOLLOWERS_HISTORY_PREFIX",
        default_value = "followers.history"
    )]
    pub history_prefix: String,
    /// JetStream: replicas of the history stream (1 on a single server, 3 on a cluster).
    #[arg(long, env = "FOLLOWERS_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// JetStream: keep the history in files (durable) or in memory (tests only).
    #[arg(long, env = "FOLLOWERS_STORAGE", value_enum, default_value = "file")]
    pub storage: Storage,
    /// JetStream: the most bytes the history may hold (-1: unlimited).
    #[arg(long, env = "FOLLOWERS_MAX_BYTES", default_value_t = -1, allow_hyphen_values = true)]
    pub max_bytes: i64,
    /// JetStream: seconds the server remembers command ids for deduplication.
    #[arg(long, env = "FOLLOWERS_DUPLICATE_WINDOW_SECS", default_value_t = 120)]
    pub duplicate_window_secs: u64,
    /// JetStream: the number of partitions of a history created now (fixed for the stream's
    /// life; docs/scaling.md). Without it a new history has no partitions. An existing stream
    /// keeps its own, and a different number here is refused.
    #[arg(long, env = "FOLLOWERS_PARTITION_COUNT")]
    pub partition_count: Option<PartitionCount>,
    /// JetStream: the partitions this instance serves, e.g. `0-31` or `2,5,8-9` (default: all).
    /// It subscribes to their requests and reads only their history.
    #[arg(long, env = "FOLLOWERS_PARTITIONS", default_value = "all")]
    pub partitions: PartitionSet,
    /// JetStream: group commit. When at least this many commits wait, publish them as one
    /// atomic batch (one fsync for all with `sync_interval: always`); fewer are published one
    /// by one. Needs nats-server 2.12+; the administrative step allows atomic batches on the
    /// stream. Off by default: it pays only when fsync bounds the rate (docs/performance.md).
    #[arg(long, env = "FOLLOWERS_GROUP_COMMIT", value_name = "MIN_BATCH",
          value_parser = clap::value_parser!(u16).range(2..=256))]
    pub group_commit: Option<u16>,
    /// EventStoreDB: connection string, e.g. `esdb://127.0.0.1:2113?tls=false`.
    #[arg(long, env = "EVENTSTOREDB_URL")]
    pub eventstoredb_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Storage {
    File,
    Memory,
}

impl StoreArgs {
    /// Connects to NATS for a service (see [`NatsArgs::connect_service`]).
    pub async fn connect_nats(
        &self,
        name: &str,
        wait: Duration,
    ) -> Result<async_nats::Client, StoreError> {
        self.nats.connect_service(name, wait).await
    }

    #[cfg(feature = "jetstream")]
    pub fn jetstream_config(&self) -> JetStreamConfig {
        JetStreamConfig {
            stream: self.stream.clone(),
            subject_prefix: self.history_prefix.clone(),
            replicas: self.replicas,
            storage: match self.storage {
                Storage::File => StorageKind::File,
                Storage::Memory => StorageKind::Memory,
            },
            max_bytes: self.max_bytes,
            duplicate_window: Duration::from_secs(self.duplicate_window_secs),
            partition_count: self.partition_count,
            owned: self.partitions.clone(),
            group_commit: self
                .group_commit
                .map(|min| crate::jetstream::GroupCommit::new(usize::from(min))),
        }
    }

    /// Opens the configured backend once; `client` is used by the JetStream backend.
    pub async fn open(
        &self,
        client: async_nats::Client,
        setup: StreamSetup,
    ) -> Result<AnyStore, StoreError> {
        match self.backend {
            #[cfg(feature = "jetstream")]
            Backend::Jetstream => Ok(AnyStore::JetStream(Box::new(
                JetStreamStore::open(client, self.jetstream_config(), setup).await?,
            ))),
            #[cfg(feature = "eventstoredb")]
            Backend::Eventstoredb => {
                let _ = (client, setup);
                if self.partition_count.is_some() || self.partitions != PartitionSet::All {
                    return Err(StoreError::Incompatible(
                        "partitions (--partition-count, --partitions) need the JetStream \
                         backend: NATS routes them (docs/scaling.md)"
                            .into(),
                    ));
                }
                let url = self.eventstoredb_url.as_deref().ok_or_else(|| {
                    StoreError::Incompatible(
                        "--store eventstoredb needs --eventstoredb-url (or EVENTSTOREDB_URL)"
                            .into(),
                    )
                })?;
                Ok(AnyStore::EventStoreDb(EventStoreDb::connect(url)?))
            }
            #[allow(unreachable_patterns)]
            other => Err(StoreError::Incompatible(
                format!("backend {other:?} is not compiled into this build").into(),
            )),
        }
    }

    /// Opens the configured backend for a service: while the store cannot be reached or the
    /// history does not exist yet (JetStream electing a leader, a fresh cluster, the stream not
    /// yet created), waits and says why, for at most `wait`.
    pub async fn open_waiting(
        &self,
        client: async_nats::Client,
        setup: StreamSetup,
        wait: Duration,
    ) -> Result<AnyStore, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(100);
        loop {
            match self.open(client.clone(), setup).await {
                Ok(store) => return Ok(store),
                Err(e @ (StoreError::Unavailable(_) | StoreError::Missing(_)))
                    if tokio::time::Instant::now() + pause < deadline =>
                {
                    tracing::warn!(error = %e, "the event store is not ready; waiting (not ready meanwhile)");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whichever backend was chosen.
#[derive(Debug, Clone)]
pub enum AnyStore {
    Memory(MemoryStore),
    #[cfg(feature = "jetstream")]
    JetStream(Box<JetStreamStore>),
    #[cfg(feature = "eventstoredb")]
    EventStoreDb(EventStoreDb),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStore::Memory($s) => $call,
            #[cfg(feature = "jetstream")]
            AnyStore::JetStream($s) => $call,
            #[cfg(feature = "eventstoredb")]
            AnyStore::EventStoreDb($s) => $call,
        }
    };
}

impl EventStore for AnyStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: Expected,
        commit: &Commit,
    ) -> Result<Appended, StoreError> {
        delegate!(self, s => s.append(stream, expected, commit).await)
    }

    async fn append_encoded(
        &self,
        stream: &StreamId,
        expected: Expected,
        commit: &EncodedCommit,
    ) -> Result<Appended, StoreError> {
        delegate!(self, s => s.append_encoded(stream, expected, commit).await)
    }

    async fn read_stream(&self, stream: &StreamId) -> Result<Vec<StoredCommit>, StoreError> {
        delegate!(self, s => s.read_stream(stream).await)
    }

    async fn read_at(&self, position: Position) -> Result<Option<StoredCommit>, StoreError> {
        delegate!(self, s => s.read_at(position).await)
    }

    async fn head(&self) -> Result<Position, StoreError> {
        delegate!(self, s => s.head().await)
    }

    async fn follow(&self, after: Position) -> Result<CommitStream, StoreError> {
        delegate!(self, s => s.follow(after).await)
    }

    fn partitions(&self) -> Partitions {
        delegate!(self, s => s.partitions())
    }

    fn serving(&self, owned: PartitionSet) -> Option<Self> {
        match self {
            #[cfg(feature = "jetstream")]
            AnyStore::JetStream(s) => s.serving(owned).map(|s| AnyStore::JetStream(Box::new(s))),
            _ => None,
        }
    }

    async fn identity(&self) -> Result<HistoryId, StoreError> {
        delegate!(self, s => s.identity().await)
    }

    async fn read_account(
        &self,
        account: &AccountId,
        after: Position,
    ) -> Result<CommitStream, StoreError> {
        delegate!(self, s => s.read_account(account, after).await)
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>, StoreError> {
        delegate!(self, s => s.load_checkpoint(name).await)
    }

    async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), StoreError> {
        delegate!(self, s => s.save_checkpoint(name, position).await)
    }
}

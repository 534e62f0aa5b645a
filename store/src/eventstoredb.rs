//! EventStoreDB / KurrentDB as the event store, through its gRPC client (`eventstore` 4).
//!
//! - **Streams.** One EventStoreDB stream per aggregate, named `{namespace}:{account}:{kind}:{id}`
//!   from [`StreamId::tokens`], e.g. `followers:acme:contact:c-1` (the namespace is `followers`
//!   unless [`EventStoreDb::with_namespace`] sets another). Tokens may contain `-` but never `:`,
//!   so the name is unambiguous; readers still never parse it: every event also carries its
//!   [`StreamId`] as JSON in its custom metadata (`{"stream":{...}}`), checked against the name
//!   it was read from. The system `$by_category` projection splits names at the first `-`, so its
//!   `$ce-` streams mean nothing for these names; nothing here uses projections.
//! - **Commits.** One commit is one event of type `commit` whose JSON data is the commit as
//!   [`Commit::encode`] writes it, and whose event id is the commit's command id.
//! - **Versions.** A commit's [`Version`] is its event's stream revision (0 for a stream's first
//!   commit). `Expected::NoStream` is sent as `ExpectedRevision::NoStream` and
//!   `Expected::At(Version(v))` as `ExpectedRevision::Exact(v)`.
//! - **Positions.** A commit's [`Position`] is its event's commit position in the `$all` log, as
//!   is (no offset), so it matches what the EventStoreDB UI shows. Every commit is appended alone,
//!   so it is a self-committed record whose prepare position equals its commit position, and
//!   `Position(p)` maps back to the `$all` position `C:p/P:p`. The log starts with an epoch
//!   record at 0, so no event has commit position 0 and `Position(0)` stays "before the first
//!   commit". Stream reads only carry `$all` positions since EventStoreDB 22.10; older servers are
//!   refused as incompatible.
//! - **Idempotency.** EventStoreDB itself drops a retried append whose event id is already at the
//!   expected revision and answers as if it had appended it. When that answer has no position
//!   (older servers), the stored event is looked up and reported with `already_stored: true`;
//!   newer servers report the stored event's position, which cannot be told apart from a fresh
//!   append, so `already_stored` is then `false` (nothing is stored twice either way). After a
//!   wrong-expected-version refusal the stream's last event is read: if its id is the command id,
//!   the append already happened (`already_stored: true`), otherwise it is a
//!   [`StoreError::Conflict`]. Retries further back are recognised by the command service, which
//!   remembers every command id.
//! - **Reading everything.** [`EventStore::follow`] is a catch-up subscription to `$all` with a
//!   server-side stream-name prefix filter on `{namespace}:`. It resubscribes by itself after a
//!   dropped connection, from the exact `$all` position of the last commit it yielded, and skips
//!   anything at or before that position, so there are no gaps and no duplicates. It gives up
//!   with [`StoreError::Unavailable`] after 20 failed resubscriptions in a row (waiting 0.1 s,
//!   doubling up to 5 s, in between: well over a minute). The 4.x client cannot filter `$all`
//!   reads on the server, so [`EventStore::head`] reads `$all` backwards until it meets one of
//!   our events (cheap while the newest events are ours or a few checkpoints; an empty namespace
//!   in a busy database costs a scan of the log) and [`EventStore::read_at`] reads the one event
//!   at the position. Reading and subscribing to `$all` need a user allowed to read `$all` (by
//!   default: admins).
//! - **Checkpoints.** A checkpoint is the last event (type `checkpoint`, data
//!   `{"position":n}`) of the stream `{namespace}-checkpoint-{name}`, whose `$maxCount` is set to 1
//!   when it is created. Checkpoint names never match the `{namespace}:` prefix.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use eventstore as es;
use eventstore::{
    AppendToStreamOptions, Client, ClientSettings, EventData, ExpectedRevision, ReadAllOptions,
    ReadStreamOptions, RecordedEvent, StreamMetadataBuilder, StreamPosition, SubscribeToAllOptions,
    Subscription, SubscriptionEvent, SubscriptionFilter,
};
use followers_shared::event::DecodeError;
use followers_shared::store::{
    Appended, Commit, CommitStream, EventStore, Expected, Failed, HistoryId, Position, StoreError,
    StoredCommit, StreamId, Version,
};
use serde::{Deserialize, Serialize};

/// The event type of a commit.
pub const COMMIT_EVENT_TYPE: &str = "commit";
/// The event type of a checkpoint.
pub const CHECKPOINT_EVENT_TYPE: &str = "checkpoint";
/// The namespace of [`EventStoreDb::connect`].
pub const DEFAULT_NAMESPACE: &str = "followers";

/// How often [`EventStore::follow`] tries to resubscribe, one after the other without getting a
/// working subscription, before it ends with an error.
const MAX_RESUBSCRIBE_ATTEMPTS: u32 = 20;
const FIRST_RESUBSCRIBE_DELAY: Duration = Duration::from_millis(100);
const MAX_RESUBSCRIBE_DELAY: Duration = Duration::from_secs(5);

/// gRPC status codes, as `tonic::Code` converts to `i32`.
mod grpc_code {
    pub const CANCELLED: i32 = 1;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const ABORTED: i32 = 10;
}

/// The custom metadata of a commit event, as written.
#[derive(Serialize)]
struct CommitMetaRef<'a> {
    stream: &'a StreamId,
}

/// The custom metadata of a commit event, as read.
#[derive(Deserialize)]
struct CommitMeta {
    stream: StreamId,
}

/// The data of a checkpoint event.
#[derive(Serialize, Deserialize)]
struct CheckpointData {
    position: u64,
}

/// The history in EventStoreDB / KurrentDB. Cheap to clone (and small: the client, a few hundred
/// bytes, is behind an `Arc`): clones share one connection.
#[derive(Clone)]
pub struct EventStoreDb {
    client: Arc<Client>,
    namespace: Arc<str>,
}

impl fmt::Debug for EventStoreDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client settings may hold credentials: leave them out.
        f.debug_struct("EventStoreDb")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl EventStoreDb {
    /// A client for the connection string `url`, e.g. `esdb://localhost:2113?tls=false` or
    /// `esdb://admin:changeit@host:2113`. The client connects lazily (see
    /// [`EventStoreDb::check_connection`]). Must be called inside a tokio runtime.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let settings: ClientSettings = url.parse().map_err(|e: es::ClientSettingsParseError| {
            // The message may quote the connection string, and with it a password.
            StoreError::Incompatible(
                format!(
                    "invalid EventStoreDB connection string: {}",
                    e.message().replace(url, "<connection string>")
                )
                .into(),
            )
        })?;
        let handle = tokio::runtime::Handle::try_current().map_err(|e| {
            StoreError::Other(Failed::doing(
                "EventStoreDb::connect needs a tokio runtime",
                e,
            ))
        })?;
        let client = Client::with_runtime_handle(handle, settings).map_err(store_error)?;
        Ok(Self {
            client: Arc::new(client),
            namespace: Arc::from(DEFAULT_NAMESPACE),
        })
    }

    /// The same store under another namespace (ASCII letters, digits and `_`): stream names
    /// start with it, so stores with different namespaces share a database without seeing each
    /// other's history or checkpoints.
    pub fn with_namespace(self, namespace: &str) -> Result<Self, StoreError> {
        let valid = !namespace.is_empty()
            && namespace.len() <= 64
            && namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(StoreError::Incompatible(
                format!(
                    "EventStoreDB namespace `{namespace}` must be 1 to 64 ASCII letters, digits \
                     or `_`"
                )
                .into(),
            ));
        }
        Ok(Self {
            namespace: Arc::from(namespace),
            ..self
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Waits until a node is selected (or node discovery gives up).
    pub async fn check_connection(&self) -> Result<(), StoreError> {
        self.client
            .server_info()
            .await
            .map(|_| ())
            .map_err(store_error)
    }

    /// The EventStoreDB stream that holds `stream`: `{namespace}:{account}:{kind}:{id}`.
    pub fn stream_name(&self, stream: &StreamId) -> String {
        let [account, kind, id] = stream.tokens();
        format!("{}:{account}:{kind}:{id}", self.namespace)
    }

    /// The EventStoreDB stream that holds the checkpoint `name`.
    pub fn checkpoint_stream_name(&self, name: &str) -> String {
        format!("{}-checkpoint-{name}", self.namespace)
    }

    /// What every commit stream's name starts with, and nothing else's.
    fn prefix(&self) -> String {
        format!("{}:", self.namespace)
    }

    fn is_ours(&self, stream_name: &str) -> bool {
        stream_name
            .strip_prefix(&*self.namespace)
            .is_some_and(|rest| rest.starts_with(':'))
    }

    /// A stored commit from its event.
    fn decode(&self, event: &RecordedEvent) -> Result<StoredCommit, StoreError> {
        let position = event_position(event)?;
        let corrupt = |message: String| StoreError::Corrupt {
            position,
            source: DecodeError::Misplaced(message),
        };
        if event.event_type != COMMIT_EVENT_TYPE {
            return Err(corrupt(format!(
                "event {} of {} has type `{}`, not `{COMMIT_EVENT_TYPE}`",
                event.id, event.stream_id, event.event_type
            )));
        }
        let meta: CommitMeta =
            serde_json::from_slice(&event.custom_metadata).map_err(|e| StoreError::Corrupt {
                position,
                source: DecodeError::Json(e),
            })?;
        let expected_name = self.stream_name(&meta.stream);
        if expected_name != event.stream_id {
            return Err(corrupt(format!(
                "event {} of {} says it belongs to {expected_name}",
                event.id, event.stream_id
            )));
        }
        let commit = Commit::decode(&event.data)
            .map_err(|source| StoreError::Corrupt { position, source })?;
        Ok(StoredCommit {
            stream: meta.stream,
            version: Version(event.revision),
            position,
            commit,
            trace: None,
        })
    }

    /// The first event `options` reads from the stream `name`; `None` if the stream has none.
    async fn read_one(
        &self,
        name: &str,
        options: &ReadStreamOptions,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        let mut read = match self.client.read_stream(name, options).await {
            Ok(read) => read,
            Err(es::Error::ResourceNotFound) => return Ok(None),
            Err(e) => return Err(store_error(e)),
        };
        match read.next().await {
            Ok(Some(resolved)) => Ok(resolved.event),
            Ok(None) | Err(es::Error::ResourceNotFound) => Ok(None),
            Err(e) => Err(store_error(e)),
        }
    }

    /// A successful append: a new event, or a retry EventStoreDB recognised by its event id.
    async fn written(
        &self,
        name: &str,
        expected: Expected,
        commit: &Commit,
        write: &es::WriteResult,
    ) -> Result<Appended, StoreError> {
        let fresh_revision = match expected {
            Expected::NoStream => Some(0),
            Expected::At(Version(v)) => v.checked_add(1),
        };
        if Some(write.next_expected_version) == fresh_revision
            && let Some(position) = known_position(&write.position)
        {
            return Ok(Appended {
                version: Version(write.next_expected_version),
                position,
                already_stored: false,
                // Commit positions are log offsets: the one before is not known from this one.
                previous: None,
            });
        }
        // An idempotent write answered without the stored event's position: look it up.
        let at_revision = ReadStreamOptions::default()
            .position(StreamPosition::Position(write.next_expected_version))
            .max_count(1);
        match self.read_one(name, &at_revision).await? {
            Some(event) if event.id == commit.command_id.0 => Ok(Appended {
                version: Version(event.revision),
                position: event_position(&event)?,
                already_stored: true,
                previous: None,
            }),
            _ => Err(StoreError::Other(
                format!(
                    "EventStoreDB acknowledged commit {} on {name} at revision {}, but that event \
                     is not the commit",
                    commit.command_id, write.next_expected_version
                )
                .into(),
            )),
        }
    }

    /// After a wrong-expected-version refusal: is the stream's last event our commit?
    async fn resolve_conflict(
        &self,
        stream: &StreamId,
        name: &str,
        expected: Expected,
        commit: &Commit,
    ) -> Result<Appended, StoreError> {
        let last = ReadStreamOptions::default()
            .position(StreamPosition::End)
            .max_count(1);
        match self.read_one(name, &last).await? {
            Some(event) if event.id == commit.command_id.0 => Ok(Appended {
                version: Version(event.revision),
                position: event_position(&event)?,
                already_stored: true,
                previous: None,
            }),
            last => Err(StoreError::Conflict {
                stream: stream.clone(),
                expected,
                actual: last.map(|event| Version(event.revision)),
            }),
        }
    }
}

impl EventStore for EventStoreDb {
    async fn append(
        &self,
        stream: &StreamId,
        expected: Expected,
        commit: &Commit,
    ) -> Result<Appended, StoreError> {
        let name = self.stream_name(stream);
        // `EventData::json` serializes the commit with serde_json, exactly as `Commit::encode`.
        let event = EventData::json(COMMIT_EVENT_TYPE, commit)
            .and_then(|event| event.metadata_as_json(&CommitMetaRef { stream }))
            .map_err(|e| StoreError::Other(Failed::doing("cannot encode commit", e)))?
            .id(commit.command_id.0);
        let revision = match expected {
            Expected::NoStream => ExpectedRevision::NoStream,
            Expected::At(Version(v)) => ExpectedRevision::Exact(v),
        };
        let options = AppendToStreamOptions::default().expected_revision(revision);
        match self
            .client
            .append_to_stream(name.as_str(), &options, event)
            .await
        {
            Ok(write) => self.written(&name, expected, commit, &write).await,
            Err(es::Error::WrongExpectedVersion { .. }) => {
                self.resolve_conflict(stream, &name, expected, commit).await
            }
            Err(e) => Err(store_error(e)),
        }
    }

    async fn read_stream(&self, stream: &StreamId) -> Result<Vec<StoredCommit>, StoreError> {
        let name = self.stream_name(stream);
        let mut read = match self
            .client
            .read_stream(name.as_str(), &ReadStreamOptions::default())
            .await
        {
            Ok(read) => read,
            Err(es::Error::ResourceNotFound) => return Ok(Vec::new()),
            Err(e) => return Err(store_error(e)),
        };
        let mut commits = Vec::new();
        loop {
            match read.next().await {
                Ok(Some(resolved)) => {
                    if let Some(event) = resolved.event {
                        commits.push(self.decode(&event)?);
                    }
                }
                Ok(None) => return Ok(commits),
                Err(es::Error::ResourceNotFound) if commits.is_empty() => return Ok(commits),
                Err(e) => return Err(store_error(e)),
            }
        }
    }

    async fn read_at(&self, position: Position) -> Result<Option<StoredCommit>, StoreError> {
        let Some(from) = all_position(position) else {
            return Ok(None);
        };
        let options = ReadAllOptions::default()
            .position(StreamPosition::Position(from))
            .forwards()
            .max_count(1);
        // A position that is not the start of a record is refused as an invalid argument: there
        // is no commit there.
        let mut read = match self.client.read_all(&options).await {
            Ok(read) => read,
            Err(e) if is_invalid_argument(&e) => return Ok(None),
            Err(e) => return Err(store_error(e)),
        };
        let event = match read.next().await {
            Ok(resolved) => resolved.and_then(|r| r.event),
            Err(e) if is_invalid_argument(&e) => None,
            Err(e) => return Err(store_error(e)),
        };
        match event {
            Some(event)
                if event.position.commit == position.0 && self.is_ours(&event.stream_id) =>
            {
                self.decode(&event).map(Some)
            }
            _ => Ok(None),
        }
    }

    async fn head(&self) -> Result<Position, StoreError> {
        // Backwards from the end of `$all` (the 4.x client has no server-side filter for reads).
        let options = ReadAllOptions::default().position(StreamPosition::End);
        let mut read = self.client.read_all(&options).await.map_err(store_error)?;
        while let Some(resolved) = read.next().await.map_err(store_error)? {
            if let Some(event) = resolved.event
                && self.is_ours(&event.stream_id)
            {
                return event_position(&event);
            }
        }
        Ok(Position(0))
    }

    /// EventStoreDB names no creation of `$all`: the history is named by its first commit's
    /// event id (empty while there is none), so a namespace emptied and written anew differs.
    async fn identity(&self) -> Result<HistoryId, StoreError> {
        let options = ReadAllOptions::default().position(StreamPosition::Start);
        let mut read = self.client.read_all(&options).await.map_err(store_error)?;
        while let Some(resolved) = read.next().await.map_err(store_error)? {
            if let Some(event) = resolved.event
                && self.is_ours(&event.stream_id)
            {
                return Ok(HistoryId(format!("eventstoredb:{}", event.id)));
            }
        }
        Ok(HistoryId::default())
    }

    async fn follow(&self, after: Position) -> Result<CommitStream, StoreError> {
        let mut follow = Follow {
            store: self.clone(),
            resume: all_position(after).map_or(StreamPosition::Start, StreamPosition::Position),
            last: after,
            subscription: None,
            pending: None,
            failures: 0,
            done: false,
        };
        // Subscribe now, so that an unreachable server is reported by `follow` itself.
        let mut subscription = self.client.subscribe_to_all(&follow.options()).await;
        let first = subscription
            .next_subscription_event()
            .await
            .map_err(store_error)?;
        follow.subscription = Some(subscription);
        follow.pending = Some(first);
        Ok(Box::pin(futures::stream::unfold(follow, Follow::next)))
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>, StoreError> {
        let stream = self.checkpoint_stream_name(name);
        let last = ReadStreamOptions::default()
            .position(StreamPosition::End)
            .max_count(1);
        let Some(event) = self.read_one(&stream, &last).await? else {
            return Ok(None);
        };
        serde_json::from_slice::<CheckpointData>(&event.data)
            .map(|data| Some(Position(data.position)))
            .map_err(|e| StoreError::Corrupt {
                position: known_position(&event.position).unwrap_or_default(),
                source: DecodeError::Json(e),
            })
    }

    async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), StoreError> {
        let stream = self.checkpoint_stream_name(name);
        let event = EventData::json(
            CHECKPOINT_EVENT_TYPE,
            &CheckpointData {
                position: position.0,
            },
        )
        .map_err(|e| StoreError::Other(Failed::doing("cannot encode checkpoint", e)))?;
        let write = self
            .client
            .append_to_stream(stream.as_str(), &AppendToStreamOptions::default(), event)
            .await
            .map_err(store_error)?;
        if write.next_expected_version == 0 {
            // A new checkpoint stream: only its last event matters.
            let metadata = StreamMetadataBuilder::new().max_count(1).build();
            if let Err(e) = self
                .client
                .set_stream_metadata(
                    stream.as_str(),
                    &AppendToStreamOptions::default(),
                    &metadata,
                )
                .await
            {
                tracing::warn!(
                    stream = %stream,
                    error = %e,
                    "could not set $maxCount on a new checkpoint stream; it keeps every checkpoint"
                );
            }
        }
        Ok(())
    }
}

/// The state of one [`EventStore::follow`] stream.
struct Follow {
    store: EventStoreDb,
    /// Where a new subscription starts: after this `$all` position (exclusive).
    resume: StreamPosition<es::Position>,
    /// The last position yielded (or the `after` of `follow`): anything at or before it is a
    /// duplicate.
    last: Position,
    subscription: Option<Subscription>,
    /// A subscription event received but not handled yet.
    pending: Option<SubscriptionEvent>,
    /// Resubscriptions in a row without getting a working subscription.
    failures: u32,
    /// An error was yielded: the stream ends.
    done: bool,
}

impl Follow {
    fn options(&self) -> SubscribeToAllOptions {
        SubscribeToAllOptions::default()
            .position(self.resume)
            .filter(SubscriptionFilter::on_stream_name().add_prefix(self.store.prefix()))
    }

    /// The next commit of the feed, resubscribing while the store is unavailable; after an
    /// error, nothing more.
    async fn next(mut self) -> Option<(Result<StoredCommit, StoreError>, Self)> {
        if self.done {
            return None;
        }
        loop {
            match self.receive().await {
                Ok(SubscriptionEvent::EventAppeared(resolved)) => {
                    self.failures = 0;
                    if let Some(item) = resolved.event.and_then(|e| self.commit_of(&e)) {
                        return Some((item, self));
                    }
                }
                Ok(SubscriptionEvent::Confirmed(_) | SubscriptionEvent::CaughtUp) => {
                    self.failures = 0;
                }
                Ok(_) => {}
                Err(e) => {
                    if let Err(error) = self.recover(e).await {
                        return Some((Err(error), self));
                    }
                }
            }
        }
    }

    /// The next subscription event: the one `follow` received, or one from the subscription,
    /// which is made anew after it failed.
    async fn receive(&mut self) -> Result<SubscriptionEvent, es::Error> {
        if let Some(event) = self.pending.take() {
            return Ok(event);
        }
        let subscription = match self.subscription.take() {
            Some(subscription) => subscription,
            None => self.store.client.subscribe_to_all(&self.options()).await,
        };
        self.subscription
            .insert(subscription)
            .next_subscription_event()
            .await
    }

    /// The commit an appeared event holds; `None` for another namespace's event and for one
    /// already yielded (a resubscription starts at the last commit). A commit that cannot be
    /// read ends the feed.
    fn commit_of(&mut self, event: &RecordedEvent) -> Option<Result<StoredCommit, StoreError>> {
        if !self.store.is_ours(&event.stream_id)
            || known_position(&event.position).is_some_and(|p| p <= self.last)
        {
            return None;
        }
        let decoded = self.store.decode(event);
        match &decoded {
            Ok(commit) => {
                self.resume = StreamPosition::Position(event.position);
                self.last = commit.position;
            }
            Err(_) => self.done = true,
        }
        Some(decoded)
    }

    /// After the subscription failed: while the store is unavailable, waits before the next
    /// subscription, up to [`MAX_RESUBSCRIBE_ATTEMPTS`] times in a row; any other failure, or
    /// one more, is the feed's error, and its end.
    async fn recover(&mut self, e: es::Error) -> Result<(), StoreError> {
        self.subscription = None;
        let error = store_error(e);
        if !matches!(error, StoreError::Unavailable(_)) || self.failures >= MAX_RESUBSCRIBE_ATTEMPTS
        {
            self.done = true;
            return Err(error);
        }
        self.failures += 1;
        let delay = resubscribe_delay(self.failures);
        tracing::warn!(
            error = %error,
            after = self.last.0,
            attempt = self.failures,
            "EventStoreDB subscription dropped; resubscribing in {delay:?}"
        );
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

fn resubscribe_delay(attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    FIRST_RESUBSCRIBE_DELAY
        .saturating_mul(factor)
        .min(MAX_RESUBSCRIBE_DELAY)
}

/// Our position of an `$all` position, if the server reported one (a missing one arrives as 0
/// or as -1 read unsigned).
fn known_position(position: &es::Position) -> Option<Position> {
    (1..=i64::MAX as u64)
        .contains(&position.commit)
        .then_some(Position(position.commit))
}

/// The `$all` position of a commit at `position`; `None` for `Position(0)` (and for values no
/// server writes).
fn all_position(position: Position) -> Option<es::Position> {
    (1..=i64::MAX as u64)
        .contains(&position.0)
        .then_some(es::Position {
            commit: position.0,
            prepare: position.0,
        })
}

fn event_position(event: &RecordedEvent) -> Result<Position, StoreError> {
    known_position(&event.position).ok_or_else(|| {
        StoreError::Incompatible(
            format!(
                "EventStoreDB did not report the $all position of event {} of {}; stream reads \
                 carry it since EventStoreDB 22.10, so use that or a later version (or KurrentDB)",
                event.id, event.stream_id
            )
            .into(),
        )
    })
}

fn grpc_code(error: &es::Error) -> Option<i32> {
    match error {
        es::Error::Grpc { code, .. } => Some((*code).into()),
        _ => None,
    }
}

fn is_invalid_argument(error: &es::Error) -> bool {
    grpc_code(error) == Some(grpc_code::INVALID_ARGUMENT)
}

fn store_error(error: es::Error) -> StoreError {
    match &error {
        es::Error::ServerError(_)
        | es::Error::ConnectionClosed
        | es::Error::GrpcConnectionError(_)
        | es::Error::DeadlineExceeded
        | es::Error::NotLeaderException(_) => StoreError::Unavailable(error.into()),
        es::Error::Grpc { .. }
            if matches!(
                grpc_code(&error),
                Some(grpc_code::CANCELLED | grpc_code::RESOURCE_EXHAUSTED | grpc_code::ABORTED)
            ) =>
        {
            StoreError::Unavailable(error.into())
        }
        es::Error::AccessDenied => StoreError::Incompatible(Failed::doing(
            "the EventStoreDB user must be allowed to write our streams and read $all",
            error,
        )),
        es::Error::UnsupportedFeature => StoreError::Incompatible(error.into()),
        es::Error::ResourceDeleted => {
            StoreError::Other(Failed::doing("a history stream was deleted", error))
        }
        _ => StoreError::Other(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use followers_shared::ids::{AccountId, CommandId, ContactId};
    use followers_shared::model::RecordRef;

    use super::*;

    fn contact_stream() -> StreamId {
        let account = AccountId::new("acme-1").expect("valid id");
        let contact = ContactId::new("c-1_x").expect("valid id");
        StreamId::record(account, RecordRef::Contact(contact))
    }

    fn recorded(store: &EventStoreDb, stream: &StreamId, commit: &Commit) -> RecordedEvent {
        RecordedEvent {
            stream_id: store.stream_name(stream),
            id: commit.command_id.0,
            revision: 3,
            event_type: COMMIT_EVENT_TYPE.to_owned(),
            data: commit.encode().into(),
            metadata: HashMap::new(),
            custom_metadata: serde_json::to_vec(&CommitMetaRef { stream })
                .expect("serializable")
                .into(),
            is_json: true,
            position: es::Position {
                commit: 777,
                prepare: 777,
            },
            created: Default::default(),
        }
    }

    #[tokio::test]
    async fn names_are_unambiguous_and_namespaced() {
        let store = EventStoreDb::connect("esdb://localhost:2113?tls=false").expect("valid url");
        let stream = contact_stream();
        assert_eq!(store.stream_name(&stream), "followers:acme-1:contact:c-1_x");
        assert_eq!(
            store.stream_name(&StreamId::account(AccountId::new("a").expect("valid id"))),
            "followers:a:account:_"
        );
        assert_eq!(store.checkpoint_stream_name("p"), "followers-checkpoint-p");
        assert!(store.is_ours("followers:acme-1:contact:c-1_x"));
        assert!(!store.is_ours("followers-checkpoint-p"));
        assert!(!store.is_ours("followers_2:a:account:_"));
        assert!(!store.is_ours("$$followers:a:account:_"));
        let other = store
            .clone()
            .with_namespace("t_42")
            .expect("valid namespace");
        assert_eq!(other.stream_name(&stream), "t_42:acme-1:contact:c-1_x");
        assert!(!other.is_ours("followers:acme-1:contact:c-1_x"));
        for bad in ["", "a-b", "a:b", "a b"] {
            assert!(
                store.clone().with_namespace(bad).is_err(),
                "{bad:?} accepted"
            );
        }
        assert!(format!("{store:?}").contains("followers"));
    }

    #[tokio::test]
    async fn a_bad_connection_string_does_not_echo_it() {
        let err = EventStoreDb::connect("nope://user:secret@host").expect_err("refused");
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[tokio::test]
    async fn commits_decode_and_bad_data_is_corrupt() {
        let store = EventStoreDb::connect("esdb://localhost:2113?tls=false").expect("valid url");
        let stream = contact_stream();
        let commit = Commit::new(CommandId::new(), Vec::new());
        let event = recorded(&store, &stream, &commit);
        let stored = store.decode(&event).expect("decodes");
        assert_eq!(stored.stream, stream);
        assert_eq!(stored.version, Version(3));
        assert_eq!(stored.position, Position(777));
        assert_eq!(stored.commit, commit);

        let mut garbage = recorded(&store, &stream, &commit);
        garbage.data = bytes::Bytes::from_static(b"{not json");
        assert!(matches!(
            store.decode(&garbage),
            Err(StoreError::Corrupt {
                position: Position(777),
                ..
            })
        ));

        let mut no_meta = recorded(&store, &stream, &commit);
        no_meta.custom_metadata = bytes::Bytes::new();
        assert!(matches!(
            store.decode(&no_meta),
            Err(StoreError::Corrupt { .. })
        ));

        let mut moved = recorded(&store, &stream, &commit);
        moved.stream_id = "followers:acme-1:contact:c-2".to_owned();
        assert!(matches!(
            store.decode(&moved),
            Err(StoreError::Corrupt { .. })
        ));

        let mut other_type = recorded(&store, &stream, &commit);
        other_type.event_type = "$streamDeleted".to_owned();
        assert!(matches!(
            store.decode(&other_type),
            Err(StoreError::Corrupt { .. })
        ));

        let mut no_position = recorded(&store, &stream, &commit);
        no_position.position = es::Position::end();
        assert!(matches!(
            store.decode(&no_position),
            Err(StoreError::Incompatible(_))
        ));
    }

    #[test]
    fn positions_round_trip_and_zero_is_before_everything() {
        assert_eq!(all_position(Position(0)), None);
        let p = all_position(Position(4242)).expect("a real position");
        assert_eq!((p.commit, p.prepare), (4242, 4242));
        assert_eq!(known_position(&p), Some(Position(4242)));
        assert_eq!(known_position(&es::Position::start()), None);
        assert_eq!(known_position(&es::Position::end()), None);
    }

    #[test]
    fn resubscribe_delays_grow_to_a_cap() {
        assert_eq!(resubscribe_delay(1), FIRST_RESUBSCRIBE_DELAY);
        assert_eq!(resubscribe_delay(2), FIRST_RESUBSCRIBE_DELAY * 2);
        assert_eq!(resubscribe_delay(40), MAX_RESUBSCRIBE_DELAY);
    }
}

//! The event-store interface: what the services need from a history, whatever holds it.
//!
//! A *stream* is one aggregate's history (an account, a contact, an opportunity). A *commit* is
//! everything one command appended to one stream, stored and read as a unit, so a command's events
//! are atomic without multi-message transactions. Each stored commit has the stream's *version*
//! after it (what the next append must expect) and a global *position* that orders all commits.
//! Both are opaque numbers whose meaning belongs to the backend (JetStream: stream sequences;
//! EventStoreDB: revisions and commit positions); only their order matters here.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use futures::Stream;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::{DecodeError, Event};
use crate::ids::{AccountId, CommandId, ContactId, IdError, OpportunityId};
use crate::model::RecordRef;

/// Which aggregate of an account a stream holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Aggregate {
    Account,
    Contact(ContactId),
    Opportunity(OpportunityId),
}

impl Aggregate {
    pub fn record(&self) -> Option<RecordRef> {
        match self {
            Aggregate::Account => None,
            Aggregate::Contact(c) => Some(RecordRef::Contact(c.clone())),
            Aggregate::Opportunity(o) => Some(RecordRef::Opportunity(o.clone())),
        }
    }
}

impl From<RecordRef> for Aggregate {
    fn from(r: RecordRef) -> Self {
        match r {
            RecordRef::Contact(c) => Aggregate::Contact(c),
            RecordRef::Opportunity(o) => Aggregate::Opportunity(o),
        }
    }
}

/// One stream: an aggregate of an account.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StreamId {
    pub account: AccountId,
    pub aggregate: Aggregate,
}

/// The token that stands for the account aggregate's id in names.
const ACCOUNT_TOKEN: &str = "_";

impl StreamId {
    pub fn account(account: AccountId) -> Self {
        Self {
            account,
            aggregate: Aggregate::Account,
        }
    }

    pub fn record(account: AccountId, record: RecordRef) -> Self {
        Self {
            account,
            aggregate: record.into(),
        }
    }

    /// `account.kind.id`: three tokens, each safe in a NATS subject and a stream name.
    pub fn tokens(&self) -> [&str; 3] {
        let (kind, id) = match &self.aggregate {
            Aggregate::Account => ("account", ACCOUNT_TOKEN),
            Aggregate::Contact(c) => ("contact", c.as_str()),
            Aggregate::Opportunity(o) => ("opportunity", o.as_str()),
        };
        [self.account.as_str(), kind, id]
    }

    /// Parses the three tokens written by [`StreamId::tokens`].
    pub fn from_tokens(account: &str, kind: &str, id: &str) -> Result<Self, IdError> {
        let account = AccountId::new(account)?;
        let aggregate = match kind {
            "account" => Aggregate::Account,
            "contact" => Aggregate::Contact(ContactId::new(id)?),
            "opportunity" => Aggregate::Opportunity(OpportunityId::new(id)?),
            _ => {
                return Err(IdError::BadCharacter {
                    what: "stream kind",
                    value: kind.to_owned(),
                });
            }
        };
        Ok(Self { account, aggregate })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, k, i] = self.tokens();
        write!(f, "{a}.{k}.{i}")
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A stream's version after a commit: what the next append must expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub u64);

/// What an append expects the stream to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// The stream has no commit yet.
    NoStream,
    /// The stream's last commit left it at this version.
    At(Version),
}

impl Expected {
    pub fn from_version(v: Option<Version>) -> Self {
        v.map_or(Expected::NoStream, Expected::At)
    }
}

/// A global position in the history; `Position(0)` is before the first commit. Queries may wait
/// for a position (the consistency token of a command reply).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(transparent)]
pub struct Position(pub u64);

/// What identifies one history: a history deleted and created again under the same name gets a
/// new identity, so a snapshot or a live model built from the old one is never taken for the new
/// one. Empty for an empty history whose backend has nothing better to name it by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HistoryId(pub String);

impl std::fmt::Display for HistoryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything one command appended to one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Commit {
    pub command_id: CommandId,
    pub events: Vec<Event>,
    /// The stream's hash chain after this commit ([`chain_hash`]), written by the command
    /// service so that an altered or removed commit is detected by the audit tool's `verify`.
    /// `None` for commits written without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
    /// The command service's Ed25519 signature over the commit's stream, command id and chain
    /// value ([`crate::signing`]). `None` for commits written without a signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::signing::CommitSignature>,
}

/// Hex SHA-256 of the previous commit's chain value of the same stream (empty for the first
/// commit, or after a commit without one) followed by the canonical JSON of `events` (as this
/// code serializes them). Changing, removing or inserting a commit breaks every later link.
pub fn chain_hash(previous: Option<&str>, events: &[Event]) -> String {
    chain_hash_of_json(previous, &crate::json::to_vec(events))
}

/// [`chain_hash`] of events already serialized (`json::to_vec(events)`): for a writer that
/// stores the very bytes it hashed.
fn chain_hash_of_json(previous: Option<&str>, events_json: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(previous.unwrap_or_default().as_bytes());
    hasher.update(events_json);
    hex::encode(hasher.finalize())
}

/// A stream's chain value as a model keeps it: the 32 bytes of SHA-256 that a commit's 64 hex
/// characters spell, rather than the characters themselves (a model of a million records keeps a
/// million of them). A value that does not spell 32 bytes in lower-case hex was not written by
/// [`chain_hash`]; it is kept as it is, so that the next commit links to exactly what is stored
/// and the audit tool reports only the commit that carries it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainValue(ChainRepr);

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
enum ChainRepr {
    Sha256([u8; 32]),
    Other(Box<str>),
}

impl ChainValue {
    /// The value a commit's `chain` field holds.
    pub fn of(value: &str) -> Self {
        let mut bytes = [0u8; 32];
        let is_lower_hex = value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        match hex::decode_to_slice(value, &mut bytes) {
            Ok(()) if is_lower_hex => Self(ChainRepr::Sha256(bytes)),
            _ => Self(ChainRepr::Other(value.into())),
        }
    }

    /// The value as a commit's `chain` field holds it.
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        match &self.0 {
            ChainRepr::Sha256(bytes) => hex::encode(bytes).into(),
            ChainRepr::Other(value) => std::borrow::Cow::Borrowed(value),
        }
    }
}

impl fmt::Display for ChainValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl fmt::Debug for ChainValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// As the hex characters in a human-readable form (JSON), as the bytes in a binary one (the
/// snapshot's postcard).
impl Serialize for ChainValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.as_str())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for ChainValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let value = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
            return Ok(Self::of(&value));
        }
        Ok(match ChainRepr::deserialize(deserializer)? {
            ChainRepr::Other(value) => Self::of(&value),
            sha256 => Self(sha256),
        })
    }
}

/// A sealed commit with its stored form ([`Commit::encode`]), made together so that the events
/// are serialized once: the chain value hashes the very bytes the body carries. Read-only, so
/// the body can never disagree with the commit.
#[derive(Debug, Clone)]
pub struct EncodedCommit {
    commit: Commit,
    body: std::sync::Arc<[u8]>,
}

impl EncodedCommit {
    /// The commit of `events` to `stream`, linked to `previous` (the stream's chain value before
    /// it) and signed by `signer` if there is one; see [`Commit::sealed`] and
    /// [`crate::signing::Signer::seal`].
    pub fn seal(
        stream: &StreamId,
        command_id: CommandId,
        events: Vec<Event>,
        previous: Option<&str>,
        signer: Option<&crate::signing::Signer>,
    ) -> Self {
        let events_json = crate::json::to_vec(&events);
        let chain = chain_hash_of_json(previous, &events_json);
        let signature = signer.map(|s| s.sign(stream, command_id, &chain));
        let commit = Commit {
            command_id,
            events,
            chain: Some(chain),
            signature,
        };
        // The layout `Commit`'s derived `Serialize` writes, with the events' bytes spliced in.
        let mut body = Vec::with_capacity(events_json.len() + 320);
        body.extend_from_slice(b"{\"command_id\":");
        push_json(&mut body, &commit.command_id);
        body.extend_from_slice(b",\"events\":");
        body.extend_from_slice(&events_json);
        if let Some(chain) = &commit.chain {
            body.extend_from_slice(b",\"chain\":");
            push_json(&mut body, chain);
        }
        if let Some(signature) = &commit.signature {
            body.extend_from_slice(b",\"signature\":");
            push_json(&mut body, signature);
        }
        body.push(b'}');
        Self {
            commit,
            body: body.into(),
        }
    }

    pub fn commit(&self) -> &Commit {
        &self.commit
    }

    pub fn into_commit(self) -> Commit {
        self.commit
    }

    /// The commit as stored: the bytes [`Commit::encode`] would write.
    pub fn body(&self) -> &std::sync::Arc<[u8]> {
        &self.body
    }
}

fn push_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("the project's own types always serialize to JSON");
}

impl Commit {
    /// A commit of the system, now, under a fresh command id, holding `bodies`: for tools and
    /// tests that write a history directly rather than through the command service.
    pub fn of_system(bodies: Vec<crate::event::EventBody>) -> Self {
        let meta = crate::command::CommandMeta {
            command_id: CommandId::new(),
            actor: crate::model::Actor::System,
            caller: None,
            correlation: uuid::Uuid::now_v7(),
            causation: None,
            at: chrono::Utc::now(),
        };
        Self::new(meta.command_id, meta.events(bodies))
    }

    /// A commit without a chain value.
    pub fn new(command_id: CommandId, events: Vec<Event>) -> Self {
        Self {
            command_id,
            events,
            chain: None,
            signature: None,
        }
    }

    /// A commit whose chain value links it to `previous`, the stream's chain value before it,
    /// unsigned ([`crate::signing::Signer::seal`] signs as well).
    pub fn sealed(command_id: CommandId, events: Vec<Event>, previous: Option<&str>) -> Self {
        let chain = Some(chain_hash(previous, &events));
        Self {
            command_id,
            events,
            chain,
            signature: None,
        }
    }

    /// Whether this commit's chain value is the one `previous` and its events give. A commit
    /// without a chain value is not sealed: `false`.
    pub fn seals(&self, previous: Option<&str>) -> bool {
        self.chain.as_deref() == Some(chain_hash(previous, &self.events).as_str())
    }

    pub fn encode(&self) -> Vec<u8> {
        crate::json::to_vec(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let commit: Commit = serde_json::from_slice(bytes)?;
        for e in &commit.events {
            e.check_schema()?;
        }
        Ok(commit)
    }
}

/// A commit as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCommit {
    pub stream: StreamId,
    pub version: Version,
    pub position: Position,
    pub commit: Commit,
    /// The trace the commit was written in, when its backend keeps one (JetStream does, in the
    /// message's headers). Operational, not history: never hashed, signed or snapshotted.
    #[serde(skip)]
    pub trace: Option<TraceContext>,
}

impl StoredCommit {
    /// When the commit was stored: the time of its events (its first event's `meta.at`).
    pub fn time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.commit.events.first().map(|e| e.meta.at)
    }
}

/// The position of the last of `commits` (in position order) before the first one stored after
/// `time`: the moment `time` names in them. `Position(0)` when the first is already later.
pub fn position_at_time<'a>(
    commits: impl IntoIterator<Item = &'a StoredCommit>,
    time: chrono::DateTime<chrono::Utc>,
) -> Position {
    commits
        .into_iter()
        .take_while(|c| c.time().is_none_or(|at| at <= time))
        .last()
        .map_or(Position(0), |c| c.position)
}

/// Where a commit was written in a distributed trace: the W3C Trace Context headers its history
/// message carried (<https://www.w3.org/TR/trace-context/>), kept as written so that whoever
/// applies or reacts to the commit can continue that trace. Parsed only by whoever continues it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// `traceparent`: version, trace id, parent span id and flags.
    pub traceparent: String,
    /// `tracestate`: vendors' entries, if any.
    pub tracestate: Option<String>,
}

/// A successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub version: Version,
    pub position: Position,
    /// The commit was already stored by an earlier try of the same command; nothing new was
    /// appended.
    pub already_stored: bool,
    /// The position of the commit stored right before this one in the whole history, when the
    /// backend knows it from the append (JetStream and memory: positions are consecutive);
    /// `None` when it does not (EventStoreDB's positions leave gaps) or for `already_stored`.
    /// A writer whose model is at this position may apply its own commit at once
    /// (`LiveModel::apply_next`) instead of waiting for the feed to bring it.
    pub previous: Option<Position>,
}

/// A backend's own error, kept as the source of a [`StoreError`]: this crate does no I/O, so it
/// cannot name the NATS or EventStoreDB error types. A plain message (`"...".into()`) stands in
/// where the backend gave no error, only a fact.
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A backend's error and what was being done when it happened, e.g. "NATS at nats://h:4222:
/// connection refused".
#[derive(Debug, thiserror::Error)]
#[error("{doing}: {source}")]
pub struct Failed {
    pub doing: String,
    #[source]
    pub source: BackendError,
}

impl Failed {
    /// Wraps `source` in what was being done.
    pub fn doing(doing: impl Into<String>, source: impl Into<BackendError>) -> BackendError {
        Box::new(Self {
            doing: doing.into(),
            source: source.into(),
        })
    }
}

/// Why the store could not do what was asked. Each variant keeps the error it comes from.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Optimistic concurrency: another commit came first. Decide again on the newer state.
    #[error("stream {stream} is at {actual:?}, not at {expected:?}")]
    Conflict {
        stream: StreamId,
        expected: Expected,
        actual: Option<Version>,
    },
    /// The store did not answer, or not in time (no responders while a leader is elected, a
    /// lost connection, a timeout). Worth trying again, the same request.
    #[error("the event store cannot be reached: {0}")]
    Unavailable(#[source] BackendError),
    /// A stored commit cannot be read: skip it or stop, never guess.
    #[error("stored data at position {position:?} cannot be read: {source}")]
    Corrupt {
        position: Position,
        #[source]
        source: DecodeError,
    },
    /// What this program needs does not exist (yet): the history stream before the
    /// administrative step created it. Worth waiting for at start.
    #[error("the event store is not there yet: {0}")]
    Missing(String),
    /// The store exists but is set up in a way this program cannot use safely (or the settings
    /// to reach it are wrong). Trying again does not help; an operator must act.
    #[error("the event store is not set up as expected: {0}")]
    Incompatible(#[source] BackendError),
    /// Anything else the backend reported.
    #[error("event store error: {0}")]
    Other(#[source] BackendError),
}

/// The live feed of commits after a position.
pub type CommitStream = Pin<Box<dyn Stream<Item = Result<StoredCommit, StoreError>> + Send>>;

/// A history of commits: append with optimistic concurrency, read a stream, read everything from a
/// position and follow live.
pub trait EventStore: Send + Sync + 'static {
    /// Appends `commit` to `stream` if the stream is at `expected`. Appending a commit whose
    /// command id is already stored on the stream returns the stored one with
    /// `already_stored: true` instead of appending it twice.
    fn append(
        &self,
        stream: &StreamId,
        expected: Expected,
        commit: &Commit,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send;

    /// [`EventStore::append`] of a commit already encoded: a backend that stores the commit's
    /// JSON uses its body instead of serializing the commit again.
    fn append_encoded(
        &self,
        stream: &StreamId,
        expected: Expected,
        commit: &EncodedCommit,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send {
        self.append(stream, expected, commit.commit())
    }

    /// Every commit of one stream, in order.
    fn read_stream(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Vec<StoredCommit>, StoreError>> + Send;

    /// The commit at `position`, if there is one.
    fn read_at(
        &self,
        position: Position,
    ) -> impl Future<Output = Result<Option<StoredCommit>, StoreError>> + Send;

    /// The position of the last commit (`Position(0)` when empty): of the commits this store
    /// serves, when it serves only some partitions ([`EventStore::partitions`]).
    fn head(&self) -> impl Future<Output = Result<Position, StoreError>> + Send;

    /// How the history is partitioned, and which partitions this store reads and writes
    /// (issue 15). `follow`, `head` and the checkpoints are of those partitions only. The
    /// default: a history without partitions, served whole.
    fn partitions(&self) -> crate::partition::Partitions {
        crate::partition::Partitions::whole()
    }

    /// The same history, serving the partitions `owned` instead of this store's (issue 15): for
    /// reading one partition's commits on its own, or the whole history's head, as snapshots
    /// kept per partition need. `None` for a history without partitions.
    fn serving(&self, owned: crate::partition::PartitionSet) -> Option<Self>
    where
        Self: Sized,
    {
        let _ = owned;
        None
    }

    /// The identity of this history ([`HistoryId`]).
    fn identity(&self) -> impl Future<Output = Result<HistoryId, StoreError>> + Send;

    /// Every commit after `after`, in order, then live ones as they are stored, without gaps or
    /// duplicates (also across reconnects). Ends only with an error.
    fn follow(
        &self,
        after: Position,
    ) -> impl Future<Output = Result<CommitStream, StoreError>> + Send;

    /// Every commit of one account after `after`, in order, up to the head as of the call; then
    /// the stream ends. For whoever needs one account's story (a past moment, a feed catching
    /// up) without reading every account's. The default reads the whole history after `after`
    /// and keeps the account's commits; a backend that can filter on the server overrides it.
    fn read_account(
        &self,
        account: &AccountId,
        after: Position,
    ) -> impl Future<Output = Result<CommitStream, StoreError>> + Send {
        async move {
            let head = self.head().await?;
            let account = account.clone();
            let feed: CommitStream = if head <= after {
                Box::pin(futures::stream::empty())
            } else {
                self.follow(after).await?
            };
            Ok(only_account(feed, account, head))
        }
    }

    /// A named checkpoint (how far a process has got), if one was saved.
    fn load_checkpoint(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Position>, StoreError>> + Send;

    /// Saves a named checkpoint.
    fn save_checkpoint(
        &self,
        name: &str,
        position: Position,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The commits of `feed` up to `head` that belong to `account`. The stream ends with the commit
/// at `head` (without asking `feed` for a later one) or after the first error.
fn only_account(feed: CommitStream, account: AccountId, head: Position) -> CommitStream {
    use futures::StreamExt;
    Box::pin(futures::stream::unfold(Some(feed), move |feed| {
        let account = account.clone();
        async move {
            let mut feed = feed?;
            loop {
                match feed.next().await? {
                    Ok(c) if c.position > head => return None,
                    Ok(c) => {
                        let more = (c.position < head).then_some(feed);
                        if c.stream.account == account {
                            return Some((Ok(c), more));
                        }
                        feed = more?;
                    }
                    Err(e) => return Some((Err(e), None)),
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventBody;
    use crate::ids::UserId;
    use crate::model::Actor;

    fn events(user: &str) -> Vec<Event> {
        let meta = crate::command::CommandMeta {
            command_id: CommandId::new(),
            actor: Actor::System,
            caller: None,
            correlation: uuid::Uuid::now_v7(),
            causation: None,
            at: chrono::Utc::now(),
        };
        meta.events(vec![EventBody::MemberDeactivated {
            user: UserId::new(user).expect("valid id"),
        }])
    }

    #[test]
    fn a_chain_links_each_commit_to_the_one_before() {
        let first = Commit::sealed(CommandId::new(), events("a"), None);
        let second = Commit::sealed(CommandId::new(), events("b"), first.chain.as_deref());
        assert!(first.seals(None));
        assert!(second.seals(first.chain.as_deref()));
        // Without the first commit, or after another one, the second does not fit.
        assert!(!second.seals(None));
        assert!(!second.seals(second.chain.as_deref()));
        // An altered event breaks the seal.
        let mut altered = second.clone();
        altered.events = events("c");
        assert!(!altered.seals(first.chain.as_deref()));
        // Unsealed commits seal nothing, and encode as before (no `chain` field).
        let plain = Commit::new(CommandId::new(), events("a"));
        assert!(!plain.seals(None));
        assert!(!String::from_utf8_lossy(&plain.encode()).contains("chain"));
        assert_eq!(Commit::decode(&second.encode()).expect("decodes"), second);
        assert_eq!(first.chain.as_deref().map(str::len), Some(64));
    }

    #[test]
    fn a_chain_value_is_kept_as_its_bytes_and_given_back_as_written() {
        let sealed = chain_hash(None, &events("a"));
        let kept = ChainValue::of(&sealed);
        assert!(matches!(kept.0, ChainRepr::Sha256(_)));
        assert_eq!(kept.as_str(), sealed);
        // Anything else (upper case, short, not hex) is kept as written, never altered.
        for other in [
            sealed.to_uppercase(),
            "ab".to_owned(),
            "zz".repeat(32),
            String::new(),
        ] {
            let kept = ChainValue::of(&other);
            assert!(matches!(kept.0, ChainRepr::Other(_)), "{other}");
            assert_eq!(kept.as_str(), other);
        }
    }

    #[test]
    fn an_encoded_commit_is_the_sealed_commit_and_its_encoding() {
        let stream = StreamId::account(crate::ids::AccountId::new("acme").expect("valid id"));
        let signer = crate::signing::Signer::new(
            crate::signing::KeyId::new("k1").expect("valid key id"),
            ed25519_dalek::SigningKey::from_bytes(&[7; 32]),
        );
        let id = CommandId::new();
        for previous in [None, Some("ab".repeat(32))] {
            let evs = events("a");
            let plain = EncodedCommit::seal(&stream, id, evs.clone(), previous.as_deref(), None);
            let sealed = Commit::sealed(id, evs.clone(), previous.as_deref());
            assert_eq!(plain.commit(), &sealed);
            assert_eq!(&**plain.body(), sealed.encode().as_slice());
            let signed =
                EncodedCommit::seal(&stream, id, evs.clone(), previous.as_deref(), Some(&signer));
            let expected = signer.seal(&stream, id, evs, previous.as_deref());
            assert_eq!(signed.commit(), &expected);
            assert_eq!(&**signed.body(), expected.encode().as_slice());
            assert_eq!(Commit::decode(signed.body()).expect("decodes"), expected);
        }
    }
}

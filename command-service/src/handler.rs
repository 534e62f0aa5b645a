//! Handling one command: decide against the live model, append with optimistic concurrency,
//! retry lost races, and recognise retries of earlier commands. A dry run is decided the same
//! way, after the same recognition of retries, and then neither appended nor remembered.
//!
//! The result is typed: [`Applied`] or a [`CommandError`] saying why not and what the caller
//! should do. The wire reply is built from it in one place, [`crate::server::reply`].

use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use followers_shared::command::{Command, Target};
use followers_shared::decision::{self, Decision};
use followers_shared::error::DomainError;
use followers_shared::event::Event;
use followers_shared::partition::PartitionSet;
use followers_shared::preview::{self, AccessPreview};
use followers_shared::signing::chain_of;
use followers_shared::store::{
    Appended, Commit, EncodedCommit, EventStore, Expected, Failed, Position, StoreError,
    StoredCommit, StreamId,
};
use followers_store::LiveModel;
use tracing::Instrument;

use crate::reply_cache::ReplyCache;

/// Commands for the same stream are serialized inside one instance by one of these locks, so an
/// instance never races itself; races between instances are settled by the store.
const LOCK_STRIPES: usize = 1024;

/// How long after receiving a command its append is still tried while the store is unavailable,
/// by default: a JetStream leader election takes 4 to 10 s, and callers typically wait 15 s. The
/// rest of the 15 s is margin for the request's way in, the reply's way out and the model showing
/// the commit.
pub const DEFAULT_APPEND_PATIENCE: Duration = Duration::from_secs(13);

/// The longest pause between two tries of an append while the store is unavailable: a new stream
/// leader is used within this much of its election.
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(200);

/// How long the live feed gets to show a command its own commit before it is read directly.
const FEED_GRACE: Duration = Duration::from_millis(250);

/// How long a command waits for the model to show its own commit before replying.
const OWN_COMMIT_WAIT: Duration = Duration::from_secs(10);

/// How one decision on a command went.
enum Attempt {
    /// Replied: applied, refused or unchanged (confirmed), or failed.
    Done(Result<Applied, CommandError>),
    /// Another commit came first on the stream: the decision was stale. Decide again.
    Conflict,
    /// Nothing to append, decided on a model not yet seen to be current: confirm, decide again.
    Unconfirmed,
}

/// What a command did, or for a retry of it, what its first try did (R24).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The events appended; none when the command changed nothing (R12, R14) or had no record
    /// to act on (R17).
    pub events: Vec<Event>,
    /// The position of the commit in the history; when nothing was appended, the position the
    /// decision was made at. Queries may wait for it.
    pub position: Position,
    /// This repeats the result of an earlier try of the same command.
    pub replayed: bool,
    /// A dry run's access changes ([`followers_shared::preview`]); `None` for other commands
    /// and for every real send.
    pub access_changes: Option<AccessPreview>,
}

/// Why a command was not applied. Each variant says what its sender should do.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A rule refused the command; nothing was appended. Do not retry it as it is: a retry with
    /// the same command id gets this refusal again (R24), even after the state has changed.
    /// `replayed`: this repeats the refusal of an earlier try.
    #[error("{rule}")]
    Refused {
        #[source]
        rule: DomainError,
        replayed: bool,
    },
    /// Other commands changed the stream each of the `tries` times this one was decided;
    /// nothing was appended. Retry with the same command id.
    #[error(
        "the record changed {tries} times while this command was being decided; retry with the same command id"
    )]
    Conflict { tries: u32 },
    /// The history was replaced and the model is being rebuilt from it; nothing was decided.
    /// Retry shortly with the same command id.
    #[error(
        "the history was replaced and the model is being rebuilt from it; retry shortly with the same command id"
    )]
    Rebuilding,
    /// The event store failed, or did not acknowledge the commit before the command's deadline:
    /// the command may or may not be stored. Retry with the same command id, which never
    /// applies it twice (R24).
    #[error(
        "the event store failed ({0}); retry with the same command id, which never applies a command twice"
    )]
    Store(#[source] StoreError),
}

/// What a command's first try ended with, as remembered for its retries when it appended
/// nothing (a retry of a command that appended is recognised from the history).
pub type Remembered = Result<Applied, DomainError>;

#[derive(Debug)]
pub struct Handler<S> {
    store: S,
    model: LiveModel,
    locks: Vec<tokio::sync::Mutex<()>>,
    hasher: RandomState,
    replies: Mutex<ReplyCache>,
    conflict_retries: u32,
    /// How long after a command was received its append is still tried while the store is
    /// unavailable.
    append_patience: Duration,
    /// Signs every commit when the service has a signing key (`--signing-key-file`).
    signer: Option<followers_shared::signing::Signer>,
}

impl<S: EventStore> Handler<S> {
    pub fn new(store: S, model: LiveModel, conflict_retries: u32, reply_cache: usize) -> Self {
        Self {
            store,
            model,
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            hasher: RandomState::new(),
            replies: Mutex::new(ReplyCache::new(reply_cache)),
            conflict_retries,
            append_patience: DEFAULT_APPEND_PATIENCE,
            signer: None,
        }
    }

    /// Tries an append again while the store is unavailable (a JetStream leader election takes
    /// seconds) until `patience` after the command was received, instead of failing it at once.
    pub fn with_append_patience(mut self, patience: Duration) -> Self {
        self.append_patience = patience;
        self
    }

    /// Signs every commit with `signer` (none: commits are sealed, unsigned).
    pub fn with_signer(mut self, signer: Option<followers_shared::signing::Signer>) -> Self {
        self.signer = signer;
        self
    }

    /// Handles one command. Never panics on any command.
    pub async fn handle(&self, cmd: &Command) -> Result<Applied, CommandError> {
        // The caller's deadline as far as the service knows it: appends are tried until then.
        let deadline = tokio::time::Instant::now() + self.append_patience;
        async move {
            let handled = self.handle_inner(cmd, deadline).await;
            match &handled {
                Ok(applied) => tracing::debug!(
                    events = applied.events.len(),
                    position = applied.position.0,
                    replayed = applied.replayed,
                    "done"
                ),
                Err(CommandError::Store(e)) => tracing::warn!(error = %e, "event store error"),
                Err(e) => tracing::info!("rejected: {e}"),
            }
            handled
        }
        .instrument(command_span(cmd))
        .await
    }

    /// R24 first (a retry gets its first result), then decide and append, deciding again after
    /// each lost race, at most `conflict_retries` times.
    async fn handle_inner(
        &self,
        cmd: &Command,
        deadline: tokio::time::Instant,
    ) -> Result<Applied, CommandError> {
        if !self.model.is_current() {
            return Err(CommandError::Rebuilding);
        }
        if let Some(first) = self.first_result(cmd).await {
            return first;
        }
        if cmd.dry_run {
            self.see_account_head(cmd).await;
            return self.try_out(cmd);
        }
        let _guard = self.lock_target(cmd).await;
        // A retry may have finished while we waited for the lock.
        if let Some(first) = self.first_result(cmd).await {
            return first;
        }
        let (mut confirmed, mut conflicts) = (false, 0);
        loop {
            match self.decide_and_append(cmd, deadline, confirmed).await {
                Attempt::Done(handled) => return handled,
                Attempt::Unconfirmed => {
                    self.see_account_head(cmd).await;
                    confirmed = true;
                }
                Attempt::Conflict if conflicts == self.conflict_retries => {
                    return Err(CommandError::Conflict {
                        tries: self.conflict_retries + 1,
                    });
                }
                Attempt::Conflict => {
                    conflicts += 1;
                    tracing::debug!("lost a race for the stream; deciding again");
                    if let Err(e) = self.model.catch_up(&self.store, OWN_COMMIT_WAIT).await {
                        tracing::warn!(error = %e, "cannot catch up after a conflict");
                    }
                }
            }
            // The commit that won, or that another instance stored, may be an earlier try of
            // this very command.
            if let Some(first) = self.first_result(cmd).await {
                return first;
            }
        }
    }

    /// Decides `cmd` against the model and appends its events. A decision that appends nothing
    /// (a refusal, `unchanged`) is final only when `confirmed`: when the model was seen to have
    /// every commit of the account's partition stored before. Until then it may have been made
    /// on a model behind the history, as when another instance serving the same partition
    /// stored the account's last commit (the caller has its reply and rightly expects this
    /// command to be decided after it).
    async fn decide_and_append(
        &self,
        cmd: &Command,
        deadline: tokio::time::Instant,
        confirmed: bool,
    ) -> Attempt {
        let decided = self.decide(cmd);
        let appends = matches!(&decided, Ok((d, ..)) if d.stream.is_some() && !d.events.is_empty());
        if !appends && !confirmed {
            return Attempt::Unconfirmed;
        }
        let (decision, chain, position) = match decided {
            Ok(decided) => decided,
            Err(rule) => return Attempt::Done(self.remember(cmd, Err(rule))),
        };
        let Some(stream) = decision.stream.filter(|_| !decision.events.is_empty()) else {
            let unchanged = Applied {
                events: Vec::new(),
                position,
                replayed: false,
                access_changes: None,
            };
            return Attempt::Done(self.remember(cmd, Ok(unchanged)));
        };
        let commit = EncodedCommit::seal(
            &stream,
            cmd.meta.command_id,
            decision.events,
            chain.as_deref(),
            self.signer.as_ref(),
        );
        match self
            .append_patiently(&stream, decision.expected, &commit, deadline)
            .await
        {
            Ok(appended) => {
                Attempt::Done(self.appended(stream, commit.into_commit(), appended).await)
            }
            Err(StoreError::Conflict { .. }) => Attempt::Conflict,
            Err(e) => Attempt::Done(Err(CommandError::Store(e))),
        }
    }

    /// Waits until the model has every commit of `cmd`'s account's partition (of the whole
    /// history, when it has no partitions) stored so far: one request for the partition's last
    /// position, then the feed (or the store directly, when the feed is slow).
    async fn see_account_head(&self, cmd: &Command) {
        let partitions = self.store.partitions();
        let one = partitions
            .of(&cmd.account)
            .and_then(|p| self.store.serving(PartitionSet::Only([p.0].into())));
        let head = match &one {
            Some(partition) => partition.head().await,
            None => self.store.head().await,
        };
        match head {
            Ok(head) => self.see_own_commit(head).await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the history's head to confirm a decision")
            }
        }
    }

    /// A dry run: decided as a real send would be decided now, appended nowhere and remembered
    /// nowhere, so that the same command id sent for real afterwards is decided afresh.
    /// The access changes it would cause are previewed against the same model.
    fn try_out(&self, cmd: &Command) -> Result<Applied, CommandError> {
        self.model
            .read(|m| {
                let decision = decision::decide_command(m, cmd)?;
                let access_changes = m
                    .account(&cmd.account)
                    .and_then(|entry| preview::access_changes(entry, cmd, &decision.events));
                Ok(Applied {
                    events: decision.events,
                    position: m.position(),
                    replayed: false,
                    access_changes,
                })
            })
            .map_err(|rule| CommandError::Refused {
                rule,
                replayed: false,
            })
    }

    /// The decision on `cmd`, with its stream's chain value and the model's position, read
    /// together so that both belong to the version the decision expects.
    fn decide(&self, cmd: &Command) -> Result<(Decision, Option<String>, Position), DomainError> {
        self.model.read(|m| {
            decision::decide_command(m, cmd).map(|d| {
                let chain = d.stream.as_ref().and_then(|s| chain_of(m, s));
                let chain = chain.map(|c| c.as_str().into_owned());
                (d, chain, m.position())
            })
        })
    }

    /// The result of a stored commit, once our own model shows it, so that the next command
    /// (on any instance that has caught up to this position) sees it. When the commit is the
    /// next one for the model, it is applied at once from what was appended; otherwise the
    /// commits before it must come first, through the feed. A commit an earlier try stored is
    /// replayed from the history.
    async fn appended(
        &self,
        stream: StreamId,
        commit: Commit,
        appended: Appended,
    ) -> Result<Applied, CommandError> {
        if appended.already_stored {
            self.see_own_commit(appended.position).await;
            return self
                .replay(appended.position)
                .await
                .map_err(CommandError::Store);
        }
        let stored = StoredCommit {
            stream,
            version: appended.version,
            position: appended.position,
            commit,
            trace: None,
        };
        let applied = self
            .model
            .apply_after(&stored, appended.previous, FEED_GRACE)
            .await;
        if !applied {
            self.see_own_commit(appended.position).await;
        }
        Ok(Applied {
            events: stored.commit.events,
            position: appended.position,
            replayed: false,
            access_changes: None,
        })
    }

    /// Waits until the model shows the commit at `position`. The live feed normally brings it
    /// within a millisecond; when it does not (its consumer is being recreated after a leader
    /// change), the commits up to it are read from the store directly.
    async fn see_own_commit(&self, position: Position) {
        if self.model.wait_for(position, FEED_GRACE).await.is_ok() {
            return;
        }
        let deadline = tokio::time::Instant::now() + OWN_COMMIT_WAIT;
        while self.model.position() < position && tokio::time::Instant::now() < deadline {
            if let Err(e) = self.model.read_up_to(&self.store, position).await {
                tracing::debug!(error = %e, "cannot read our own commit yet");
            }
            if self.model.wait_for(position, FEED_GRACE).await.is_ok() {
                return;
            }
        }
        if self.model.position() < position {
            tracing::warn!(
                position = position.0,
                "appended, but the model is slow to show it"
            );
        }
    }

    /// Appends, trying the same commit again while the store is unavailable ("no responders"
    /// while a stream leader is elected, an ack that did not come), until `deadline`; no try
    /// outlasts it. The same commit keeps its message id, so a try whose ack was lost is
    /// recognised as stored (a duplicate, or our own commit found after a conflict), never
    /// stored twice.
    async fn append_patiently(
        &self,
        stream: &StreamId,
        expected: Expected,
        commit: &EncodedCommit,
        deadline: tokio::time::Instant,
    ) -> Result<Appended, StoreError> {
        let mut pause = Duration::from_millis(25);
        let mut tries = 0_u32;
        loop {
            tries += 1;
            let tried = tokio::time::timeout_at(
                deadline,
                self.store.append_encoded(stream, expected, commit),
            )
            .await
            .unwrap_or_else(|elapsed| {
                Err(StoreError::Unavailable(Failed::doing(
                    "no acknowledgement before the command's deadline",
                    elapsed,
                )))
            });
            match tried {
                Err(StoreError::Unavailable(why))
                    if tokio::time::Instant::now() + pause < deadline =>
                {
                    tracing::debug!(error = %why, tries, "the store is unavailable; appending again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_PAUSE_MAX);
                }
                Err(StoreError::Unavailable(why)) => {
                    return Err(StoreError::Unavailable(Failed::doing(
                        format!("tried {tries} times until the command's deadline"),
                        why,
                    )));
                }
                other => return other,
            }
        }
    }

    /// The lock of the stream `cmd` decides on: commands for one stream take turns in this
    /// instance. None for a command without a stream.
    async fn lock_target(&self, cmd: &Command) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        let stream = match cmd.body.target() {
            Target::Record(r) => StreamId::record(cmd.account.clone(), r),
            Target::Account => StreamId::account(cmd.account.clone()),
            Target::Nothing => return None,
        };
        let stripe = (self.hasher.hash_one(&stream) as usize) % LOCK_STRIPES;
        Some(self.locks[stripe].lock().await)
    }

    /// The result of an earlier try of this command (R24), if there was one: a stored commit
    /// is replayed from the history, anything else from the remembered results.
    async fn first_result(&self, cmd: &Command) -> Option<Result<Applied, CommandError>> {
        let id = cmd.meta.command_id;
        for position in self.model.read(|m| m.command_candidates(&cmd.account, &id)) {
            match self.replay_of(cmd, position).await {
                Ok(None) => continue,
                Ok(Some(first)) => return Some(Ok(first)),
                Err(e) => return Some(Err(CommandError::Store(e))),
            }
        }
        let remembered = self
            .replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(cmd.account.clone(), id))
            .cloned()?;
        Some(match remembered {
            Ok(applied) => Ok(Applied {
                replayed: true,
                ..applied
            }),
            Err(rule) => Err(CommandError::Refused {
                rule,
                replayed: true,
            }),
        })
    }

    /// The result of the stored commit at `position`, replayed, if it is `cmd`'s: the model
    /// knows a command id only by its fingerprint, which another id may share (R24, R1).
    async fn replay_of(
        &self,
        cmd: &Command,
        position: Position,
    ) -> Result<Option<Applied>, StoreError> {
        let stored = self
            .store
            .read_at(position)
            .await?
            .ok_or_else(|| missing(position))?;
        if stored.commit.command_id != cmd.meta.command_id || stored.stream.account != cmd.account {
            return Ok(None);
        }
        Ok(Some(Applied {
            events: stored.commit.events,
            position,
            replayed: true,
            access_changes: None,
        }))
    }

    /// The result of the stored commit at `position`, replayed.
    async fn replay(&self, position: Position) -> Result<Applied, StoreError> {
        let stored = self
            .store
            .read_at(position)
            .await?
            .ok_or_else(|| missing(position))?;
        Ok(Applied {
            events: stored.commit.events,
            position,
            replayed: true,
            access_changes: None,
        })
    }

    /// Remembers the result of a command that appended nothing, for its retries.
    fn remember(&self, cmd: &Command, first: Remembered) -> Result<Applied, CommandError> {
        self.replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((cmd.account.clone(), cmd.meta.command_id), first.clone());
        first.map_err(|rule| CommandError::Refused {
            rule,
            replayed: false,
        })
    }
}

fn missing(position: Position) -> StoreError {
    StoreError::Other(format!("commit at position {} is missing", position.0).into())
}

/// The span every log line about `cmd` is in. Its fields are formatted only when the span is
/// enabled: nothing is written per command otherwise.
fn command_span(cmd: &Command) -> tracing::Span {
    tracing::info_span!("command",
        command_id = %cmd.meta.command_id,
        account = %cmd.account,
        command = cmd.body.name(),
        record = %TargetName(cmd),
        actor = %cmd.meta.actor,
        dry_run = cmd.dry_run,
    )
}

/// What a command acts on, as the span shows it.
struct TargetName<'a>(&'a Command);

impl std::fmt::Display for TargetName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.body.target() {
            Target::Record(r) => write!(f, "{r}"),
            Target::Account => f.write_str("account"),
            Target::Nothing => f.write_str("none"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    use followers_shared::store::{CommitStream, HistoryId, StoredCommit, Version};
    use followers_shared::stored_commands::sharing_fingerprint;
    use followers_store::MemoryStore;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use followers_shared::read_model::ReadModel;

    /// How the store behaves for appends: unavailable until a moment (a leader election),
    /// never answering (an ack lost with the leader), or always beaten by another commit.
    #[derive(Debug, Clone, Copy)]
    pub(crate) enum Appends {
        DownUntil(Instant),
        Hang,
        AlwaysBeaten,
    }

    /// A memory store whose appends are unavailable for a while, counting the tries.
    #[derive(Debug, Clone)]
    pub(crate) struct Electing {
        inner: MemoryStore,
        appends: Appends,
        pub(crate) tries: Arc<AtomicU32>,
        /// Commits read back one at a time (`read_at`).
        pub(crate) reads: Arc<AtomicU32>,
    }

    impl EventStore for Electing {
        async fn append(
            &self,
            stream: &StreamId,
            expected: Expected,
            commit: &Commit,
        ) -> Result<Appended, StoreError> {
            self.tries.fetch_add(1, Ordering::SeqCst);
            match self.appends {
                Appends::DownUntil(until) if Instant::now() < until => Err(
                    StoreError::Unavailable("no stream found for given subject".into()),
                ),
                Appends::DownUntil(_) => self.inner.append(stream, expected, commit).await,
                Appends::Hang => std::future::pending().await,
                Appends::AlwaysBeaten => Err(StoreError::Conflict {
                    stream: stream.clone(),
                    expected,
                    actual: Some(Version(99)),
                }),
            }
        }
        async fn read_stream(&self, stream: &StreamId) -> Result<Vec<StoredCommit>, StoreError> {
            self.inner.read_stream(stream).await
        }
        async fn read_at(&self, position: Position) -> Result<Option<StoredCommit>, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.read_at(position).await
        }
        async fn head(&self) -> Result<Position, StoreError> {
            self.inner.head().await
        }
        async fn identity(&self) -> Result<HistoryId, StoreError> {
            self.inner.identity().await
        }
        async fn follow(&self, after: Position) -> Result<CommitStream, StoreError> {
            self.inner.follow(after).await
        }
        async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>, StoreError> {
            self.inner.load_checkpoint(name).await
        }
        async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), StoreError> {
            self.inner.save_checkpoint(name, position).await
        }
    }

    /// A handler on `store` whose model follows it, and a way to stop the following.
    pub(crate) fn handler(
        store: Electing,
        patience: Duration,
    ) -> (Handler<Electing>, CancellationToken) {
        let model = LiveModel::new(ReadModel::tracking_commands());
        let stop = CancellationToken::new();
        tokio::spawn({
            let (model, store, stop) = (model.clone(), store.clone(), stop.clone());
            async move { model.follow(store, stop).await }
        });
        let handler = Handler::new(store, model, 4, 100).with_append_patience(patience);
        (handler, stop)
    }

    pub(crate) fn open_account() -> Command {
        open_account_of("acme")
    }

    fn open_account_of(account: &str) -> Command {
        let body = serde_json::json!({
            "command_id": uuid::Uuid::now_v7(),
            "actor": {"kind": "system"},
            "name": "Acme",
        });
        followers_shared::wire::parse_command(
            account,
            "open_account",
            &serde_json::to_vec(&body).unwrap(),
            chrono::Utc::now(),
        )
        .unwrap()
    }

    pub(crate) fn store(appends: Appends) -> Electing {
        Electing {
            inner: MemoryStore::new(),
            appends,
            tries: Arc::default(),
            reads: Arc::default(),
        }
    }

    #[tokio::test]
    async fn an_append_is_tried_again_through_a_leader_election_and_stored_once() {
        let store = store(Appends::DownUntil(
            Instant::now() + Duration::from_millis(600),
        ));
        let (handler, stop) = handler(store.clone(), Duration::from_secs(5));
        let applied = handler.handle(&open_account()).await.unwrap();
        assert!(
            !applied.events.is_empty() && !applied.replayed,
            "{applied:?}"
        );
        assert!(store.tries.load(Ordering::SeqCst) > 2, "tried again");
        assert_eq!(store.head().await.unwrap(), Position(1), "stored once");
        assert_eq!(applied.position, Position(1));
        stop.cancel();
    }

    /// A handler whose model follows nothing: it sees only what the handler applies itself and
    /// what it reads back from the store.
    fn unfollowed(store: Electing) -> Handler<Electing> {
        let model = LiveModel::new(ReadModel::tracking_commands());
        Handler::new(store, model, 4, 100).with_append_patience(Duration::from_secs(5))
    }

    #[tokio::test]
    async fn a_commands_own_commit_is_applied_at_once_when_it_is_the_next_one() {
        let store = store(Appends::DownUntil(Instant::now()));
        let handler = unfollowed(store.clone());
        let open = open_account();
        let applied = handler.handle(&open).await.unwrap();
        assert_eq!(applied.position, Position(1));
        assert_eq!(handler.model.position(), Position(1));
        // R24: the model knows the command, so a retry is recognised without the feed.
        let again = handler.handle(&open).await.unwrap();
        assert!(again.replayed, "{again:?}");
        assert_eq!(
            store.reads.load(Ordering::SeqCst),
            1,
            "only the replay read the store; the commit was applied from its append"
        );
        assert_eq!(store.head().await.unwrap(), Position(1));
    }

    #[tokio::test]
    async fn a_commit_after_one_the_model_has_not_seen_waits_for_the_one_before() {
        let store = store(Appends::DownUntil(Instant::now()));
        let handler = unfollowed(store.clone());
        // Another writer's commit, which this model has not seen.
        let other = open_account_of("initech");
        store
            .append(
                &StreamId::account(other.account.clone()),
                Expected::NoStream,
                &Commit::sealed(other.meta.command_id, Vec::new(), None),
            )
            .await
            .unwrap();
        assert_eq!(handler.model.position(), Position(0));
        let open = open_account_of("globex");
        let applied = handler.handle(&open).await.unwrap();
        assert_eq!(applied.position, Position(2));
        // Not applied out of order: the commit before it was read first, then it.
        assert_eq!(handler.model.position(), Position(2));
        assert!(store.reads.load(Ordering::SeqCst) >= 2, "read 1 and 2 back");
        assert!(
            handler
                .model
                .read(|m| m.command_candidates(&other.account, &other.meta.command_id))
                .contains(&Position(1)),
            "the other writer's commit is in the model"
        );
    }

    /// Two instances share a partition: the caller's account was opened by the other one, whose
    /// commit this model has not applied (its feed is late). A member registered next is decided
    /// after it, not refused as of an unknown account (R1, R24).
    #[tokio::test]
    async fn a_refusal_is_confirmed_against_the_history_before_it_is_sent() {
        let store = store(Appends::DownUntil(Instant::now()));
        let other = unfollowed(store.clone());
        other.handle(&open_account()).await.unwrap();
        let late = unfollowed(store.clone());
        assert_eq!(late.model.position(), Position(0));
        let applied = late.handle(&register("bob", false)).await.unwrap();
        assert_eq!(applied.position, Position(2), "{applied:?}");
        // A dry run is decided after the commits before it the same way.
        let tried = unfollowed(store.clone())
            .handle(&register("cid", true))
            .await;
        assert!(tried.is_ok_and(|t| !t.events.is_empty()));
    }

    fn register(user: &str, dry_run: bool) -> Command {
        let body = serde_json::json!({
            "command_id": uuid::Uuid::now_v7(),
            "actor": {"kind": "system"},
            "user": user,
            "name": user,
            "email": format!("{user}@acme.example"),
            "role": "user",
            "data_scope": "all",
            "dry_run": dry_run,
        });
        followers_shared::wire::parse_command(
            "acme",
            "register_member",
            &serde_json::to_vec(&body).unwrap(),
            chrono::Utc::now(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn no_try_outlasts_the_commands_deadline() {
        let store = store(Appends::Hang);
        let (handler, stop) = handler(store.clone(), Duration::from_millis(300));
        let started = Instant::now();
        let handled = handler.handle(&open_account()).await;
        let took = started.elapsed();
        assert!(
            matches!(
                handled,
                Err(CommandError::Store(StoreError::Unavailable(_)))
            ),
            "{handled:?}"
        );
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "replied after {took:?}"
        );
        stop.cancel();
    }

    #[tokio::test]
    async fn a_race_lost_on_every_try_is_a_conflict_after_the_retries() {
        let store = store(Appends::AlwaysBeaten);
        let (handler, stop) = handler(store.clone(), Duration::from_secs(5));
        let handled = handler.handle(&open_account()).await;
        assert!(
            matches!(handled, Err(CommandError::Conflict { tries: 5 })),
            "{handled:?}"
        );
        assert_eq!(store.tries.load(Ordering::SeqCst), 5, "decided 1 + 4 times");
        stop.cancel();
    }

    #[tokio::test]
    async fn a_dry_run_appends_nothing_and_its_id_is_decided_afresh() {
        let store = store(Appends::DownUntil(Instant::now()));
        let (handler, stop) = handler(store.clone(), Duration::from_secs(5));
        let open = open_account();
        let dry = Command {
            dry_run: true,
            ..open.clone()
        };
        let tried = handler.handle(&dry).await.unwrap();
        assert!(!tried.events.is_empty() && !tried.replayed, "{tried:?}");
        assert_eq!(store.head().await.unwrap(), Position(0), "nothing appended");
        // R24: the dry run was not remembered, so the real send appends its very events.
        let real = handler.handle(&open).await.unwrap();
        assert!(!real.replayed, "{real:?}");
        assert_eq!(real.events, tried.events);
        assert_eq!(store.head().await.unwrap(), Position(1));
        // A dry run of an id that appended gets the replay, as the real send would.
        let again = handler.handle(&dry).await.unwrap();
        assert!(again.replayed && again.events == real.events, "{again:?}");
        assert_eq!(store.head().await.unwrap(), Position(1), "still one commit");
        stop.cancel();
    }

    #[tokio::test]
    async fn a_retry_gets_the_first_result_replayed() {
        let store = store(Appends::DownUntil(Instant::now()));
        let (handler, stop) = handler(store.clone(), Duration::from_secs(5));
        let open = open_account();
        let first = handler.handle(&open).await.unwrap();
        let again = handler.handle(&open).await.unwrap();
        assert_eq!(
            again,
            Applied {
                replayed: true,
                ..first
            }
        );
        // Opening it again under another id is refused, and so is every retry of that.
        let reopen = open_account();
        let refused = handler.handle(&reopen).await;
        assert!(
            matches!(
                &refused,
                Err(CommandError::Refused {
                    rule: DomainError::AccountExists(_),
                    replayed: false
                })
            ),
            "{refused:?}"
        );
        let refused_again = handler.handle(&reopen).await;
        assert!(
            matches!(
                &refused_again,
                Err(CommandError::Refused {
                    rule: DomainError::AccountExists(_),
                    replayed: true
                })
            ),
            "{refused_again:?}"
        );
        assert_eq!(store.head().await.unwrap(), Position(1), "stored once");
        stop.cancel();
    }

    /// R24, issue 14: the model knows a stored command by a fingerprint of its id; a new
    /// command whose id shares it is decided as new (here: refused, as the account exists), not
    /// answered with the other command's commit.
    #[tokio::test]
    async fn r24_a_new_command_sharing_a_stored_ones_fingerprint_is_decided_as_new() {
        let store = store(Appends::DownUntil(Instant::now()));
        let handler = unfollowed(store.clone());
        let open = open_account();
        handler.handle(&open).await.unwrap();
        let mut lookalike = open_account();
        lookalike.meta.command_id = sharing_fingerprint(&open.meta.command_id);
        let candidates = handler
            .model
            .read(|m| m.command_candidates(&open.account, &lookalike.meta.command_id));
        assert_eq!(candidates, [Position(1)], "the fingerprints are the same");
        let decided = handler.handle(&lookalike).await;
        assert!(
            matches!(
                &decided,
                Err(CommandError::Refused {
                    rule: DomainError::AccountExists(_),
                    replayed: false
                })
            ),
            "{decided:?}"
        );
        assert_eq!(store.head().await.unwrap(), Position(1));
    }
}

//! Handling one command: decide against the live model, append with optimistic concurrency,
//! retry lost races, and recognise retries of earlier commands.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use followers_shared::command::{Command, Target};
use followers_shared::decision;
use followers_shared::error::ErrorCode;
use followers_shared::read_model::ReadModel;
use followers_shared::store::{
    Appended, Commit, EventStore, Expected, Failed, StoreError, StreamId,
};
use followers_shared::wire::{CommandReply, ErrorBody};
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

    /// Handles one command and returns its reply. Never panics on any command.
    pub async fn handle(&self, cmd: Command) -> CommandReply {
        let record = match cmd.body.target() {
            Target::Record(r) => format!("{r}"),
            Target::Account => "account".to_owned(),
            Target::Nothing => "none".to_owned(),
        };
        let span = tracing::info_span!("command",
            command_id = %cmd.meta.command_id,
            account = %cmd.account,
            command = cmd.body.name(),
            record = %record,
            actor = %cmd.meta.actor,
        );
        // The caller's deadline as far as the service knows it: appends are tried until then.
        let deadline = tokio::time::Instant::now() + self.append_patience;
        async move {
            let reply = self.handle_inner(&cmd, deadline).await;
            match &reply.error {
                None => {
                    tracing::debug!(outcome = ?reply.outcome, position = ?reply.position, "done")
                }
                Some(e) => tracing::info!(code = e.code.as_str(), "rejected: {}", e.message),
            }
            reply
        }
        .instrument(span)
        .await
    }

    async fn handle_inner(&self, cmd: &Command, deadline: tokio::time::Instant) -> CommandReply {
        if !self.model.is_current() {
            return CommandReply::failure(
                Some(cmd.meta.command_id),
                ErrorBody::new(
                    ErrorCode::Unavailable,
                    "the history was replaced and the model is being rebuilt from it; retry shortly with the same command id",
                ),
            );
        }
        if let Some(reply) = self.previous_reply(cmd).await {
            return reply;
        }
        let _guard = match cmd.body.target() {
            Target::Record(r) => Some(self.lock(&StreamId::record(cmd.account.clone(), r)).await),
            Target::Account => Some(self.lock(&StreamId::account(cmd.account.clone())).await),
            Target::Nothing => None,
        };
        // A retry may have finished while we waited for the lock.
        if let Some(reply) = self.previous_reply(cmd).await {
            return reply;
        }
        for _ in 0..=self.conflict_retries {
            // The chain value is read with the decision, so it belongs to the expected version.
            let decided = self.model.read(|m| {
                decision::decide(m, cmd).map(|d| {
                    let chain = d.stream.as_ref().and_then(|s| chain_of(m, s));
                    (d, chain, m.position())
                })
            });
            let (decision, chain, position) = match decided {
                Ok(d) => d,
                Err(e) => {
                    return self.remember(
                        cmd,
                        CommandReply::failure(Some(cmd.meta.command_id), (&e).into()),
                    );
                }
            };
            let Some(stream) = decision.stream.filter(|_| !decision.events.is_empty()) else {
                return self.remember(cmd, CommandReply::success(cmd, Vec::new(), position));
            };
            let commit = match &self.signer {
                Some(signer) => signer.seal(
                    &stream,
                    cmd.meta.command_id,
                    decision.events,
                    chain.as_deref(),
                ),
                None => Commit::sealed(cmd.meta.command_id, decision.events, chain.as_deref()),
            };
            match self
                .append_patiently(&stream, decision.expected, &commit, deadline)
                .await
            {
                Ok(appended) => {
                    // Reply only once our own model shows the commit, so that the next command
                    // (on any instance that has caught up to this position) sees it.
                    self.see_own_commit(appended.position).await;
                    if appended.already_stored {
                        return self
                            .replay(cmd, appended.position)
                            .await
                            .unwrap_or_else(|e| store_error(cmd, &e));
                    }
                    return CommandReply::success(cmd, commit.events, appended.position);
                }
                Err(StoreError::Conflict { .. }) => {
                    tracing::debug!("lost a race for the stream; deciding again");
                    if let Err(e) = self.model.catch_up(&self.store, OWN_COMMIT_WAIT).await {
                        tracing::warn!(error = %e, "cannot catch up after a conflict");
                    }
                    // The commit that won may be an earlier try of this very command.
                    if let Some(reply) = self.previous_reply(cmd).await {
                        return reply;
                    }
                }
                Err(e) => return store_error(cmd, &e),
            }
        }
        CommandReply::failure(
            Some(cmd.meta.command_id),
            ErrorBody::new(
                ErrorCode::Conflict,
                format!(
                    "the record changed {} times while this command was being decided; retry with the same command id",
                    self.conflict_retries + 1
                ),
            ),
        )
    }

    /// Waits until the model shows the commit at `position`. The live feed normally brings it
    /// within a millisecond; when it does not (its consumer is being recreated after a leader
    /// change), the commits up to it are read from the store directly.
    async fn see_own_commit(&self, position: followers_shared::store::Position) {
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
        commit: &Commit,
        deadline: tokio::time::Instant,
    ) -> Result<Appended, StoreError> {
        let mut pause = Duration::from_millis(25);
        let mut tries = 0_u32;
        loop {
            tries += 1;
            let tried =
                tokio::time::timeout_at(deadline, self.store.append(stream, expected, commit))
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

    async fn lock(&self, stream: &StreamId) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = (self.hasher.hash_one(stream) as usize) % LOCK_STRIPES;
        self.locks[stripe].lock().await
    }

    /// The first reply to an earlier try of this command, if there was one.
    async fn previous_reply(&self, cmd: &Command) -> Option<CommandReply> {
        let id = cmd.meta.command_id;
        if let Some(location) = self.model.read(|m| m.command(&cmd.account, &id)) {
            return Some(
                self.replay(cmd, location.position)
                    .await
                    .unwrap_or_else(|e| store_error(cmd, &e)),
            );
        }
        let cached = self
            .replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(cmd.account.clone(), id))
            .cloned();
        cached.map(|mut reply| {
            reply.replayed = true;
            reply
        })
    }

    /// Rebuilds the reply of a stored commit.
    async fn replay(
        &self,
        cmd: &Command,
        position: followers_shared::store::Position,
    ) -> Result<CommandReply, StoreError> {
        let stored = self.store.read_at(position).await?.ok_or_else(|| {
            StoreError::Other(format!("commit at position {} is missing", position.0).into())
        })?;
        let mut reply = CommandReply::success(cmd, stored.commit.events, position);
        reply.replayed = true;
        Ok(reply)
    }

    fn remember(&self, cmd: &Command, reply: CommandReply) -> CommandReply {
        self.replies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((cmd.account.clone(), cmd.meta.command_id), reply.clone());
        reply
    }
}

/// The stream's hash chain value after its last commit, as the model has it.
fn chain_of(model: &ReadModel, stream: &StreamId) -> Option<String> {
    let account = model.account(&stream.account)?;
    match stream.aggregate.record() {
        None => account.chain.clone(),
        Some(record) => account.records.get(&record)?.chain.clone(),
    }
}

fn store_error(cmd: &Command, e: &StoreError) -> CommandReply {
    tracing::warn!(error = %e, "event store error");
    CommandReply::failure(
        Some(cmd.meta.command_id),
        ErrorBody::new(
            ErrorCode::StoreUnavailable,
            format!(
                "the event store failed ({e}); retry with the same command id, which never applies a command twice"
            ),
        ),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    use followers_shared::error::ErrorCode;
    use followers_shared::store::{CommitStream, HistoryId, Position, StoredCommit};
    use followers_shared::wire::Outcome;
    use followers_store::MemoryStore;
    use tokio_util::sync::CancellationToken;

    use super::*;

    /// How the store behaves for appends: unavailable until a moment (a leader election), or
    /// never answering (an ack lost with the leader).
    #[derive(Debug, Clone, Copy)]
    enum Appends {
        DownUntil(Instant),
        Hang,
    }

    /// A memory store whose appends are unavailable for a while, counting the tries.
    #[derive(Debug, Clone)]
    struct Electing {
        inner: MemoryStore,
        appends: Appends,
        tries: Arc<AtomicU32>,
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
            }
        }
        async fn read_stream(&self, stream: &StreamId) -> Result<Vec<StoredCommit>, StoreError> {
            self.inner.read_stream(stream).await
        }
        async fn read_at(&self, position: Position) -> Result<Option<StoredCommit>, StoreError> {
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
    fn handler(store: Electing, patience: Duration) -> (Handler<Electing>, CancellationToken) {
        let model = LiveModel::new(ReadModel::tracking_commands());
        let stop = CancellationToken::new();
        tokio::spawn({
            let (model, store, stop) = (model.clone(), store.clone(), stop.clone());
            async move { model.follow(store, stop).await }
        });
        let handler = Handler::new(store, model, 4, 100).with_append_patience(patience);
        (handler, stop)
    }

    fn open_account() -> Command {
        let body = serde_json::json!({
            "command_id": uuid::Uuid::now_v7(),
            "actor": {"kind": "system"},
            "name": "Acme",
        });
        followers_shared::wire::parse_command(
            "acme",
            "open_account",
            &serde_json::to_vec(&body).unwrap(),
            chrono::Utc::now(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn an_append_is_tried_again_through_a_leader_election_and_stored_once() {
        let store = Electing {
            inner: MemoryStore::new(),
            appends: Appends::DownUntil(Instant::now() + Duration::from_millis(600)),
            tries: Arc::default(),
        };
        let (handler, stop) = handler(store.clone(), Duration::from_secs(5));
        let reply = handler.handle(open_account()).await;
        assert!(reply.ok, "{reply:?}");
        assert_eq!(reply.outcome, Some(Outcome::Applied));
        assert!(store.tries.load(Ordering::SeqCst) > 2, "tried again");
        assert_eq!(store.head().await.unwrap(), Position(1), "stored once");
        stop.cancel();
    }

    #[tokio::test]
    async fn no_try_outlasts_the_commands_deadline() {
        let store = Electing {
            inner: MemoryStore::new(),
            appends: Appends::Hang,
            tries: Arc::default(),
        };
        let (handler, stop) = handler(store.clone(), Duration::from_millis(300));
        let started = Instant::now();
        let reply = handler.handle(open_account()).await;
        let took = started.elapsed();
        assert_eq!(
            reply.error.map(|e| e.code),
            Some(ErrorCode::StoreUnavailable)
        );
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "replied after {took:?}"
        );
        stop.cancel();
    }
}

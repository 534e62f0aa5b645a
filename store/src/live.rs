//! A [`ReadModel`] kept current by following the history: the state both services decide and
//! answer from.
//!
//! One task follows the store and applies commits in order; readers take a short read lock.
//! Anyone can wait until the model has reached a position (a command waiting for its own commit,
//! a query carrying a consistency token).
//!
//! The model knows which history it was built from ([`HistoryId`]). While following, it checks
//! every second that the store still holds that history: a history deleted and created again
//! (a new identity, or a head behind the model) is never mixed into the old state. The model
//! then empties itself and rebuilds from the new history; until it has caught up,
//! [`LiveModel::is_current`] is false and the services answer `unavailable`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use followers_shared::read_model::ReadModel;
use followers_shared::store::{EventStore, HistoryId, Position, StoreError, StoredCommit};
use futures::{FutureExt, StreamExt};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// The model did not reach a position in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the read model did not reach position {wanted} in time (it is at {reached})")]
pub struct NotReached {
    pub wanted: u64,
    pub reached: u64,
}

#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    events: AtomicU64,
    corrupt: AtomicU64,
}

/// The most commits a following model applies under one write lock: a run of 64 takes a few
/// hundred microseconds, which queries wait for at most.
const APPLY_RUN: usize = 64;

/// How often a following model checks that the store still holds its history.
const HISTORY_CHECK_EVERY: Duration = Duration::from_secs(1);

/// A shared, live read model.
#[derive(Debug, Clone)]
pub struct LiveModel {
    model: Arc<RwLock<ReadModel>>,
    position: watch::Sender<Position>,
    counters: Arc<Counters>,
    /// The history the model is built from; learnt when following starts if not given.
    history: Arc<Mutex<Option<HistoryId>>>,
    /// After the history was replaced: the head of the new history when that was noticed.
    /// The model is current again once it has reached it.
    rebuild_until: Arc<AtomicU64>,
    /// How many times the history was found replaced.
    replaced: watch::Sender<u64>,
    /// Signature checks before applying ([`LiveModel::with_verifier`]).
    screen: Arc<Screen>,
    /// Each commit as it is applied, for readers that follow changes live (the feed of access
    /// changes). Sent only while somebody listens; a receiver that falls behind by more than
    /// [`APPLIED_BACKLOG`] is told it lagged and reads the rest from the store.
    applied: broadcast::Sender<Arc<StoredCommit>>,
}

/// How many applied commits a live listener may fall behind before it is told it lagged.
pub const APPLIED_BACKLOG: usize = 4096;

impl LiveModel {
    /// A live model starting from `model`, whose history is learnt when following starts.
    pub fn new(model: ReadModel) -> Self {
        let position = watch::Sender::new(model.position());
        Self {
            model: Arc::new(RwLock::new(model)),
            position,
            counters: Arc::default(),
            history: Arc::default(),
            rebuild_until: Arc::default(),
            replaced: watch::Sender::new(0),
            screen: Arc::default(),
            applied: broadcast::Sender::new(APPLIED_BACKLOG),
        }
    }

    /// A live model starting from `model`, built from the history `history` (a snapshot's).
    pub fn of_history(model: ReadModel, history: HistoryId) -> Self {
        let live = Self::new(model);
        *live.history.lock().unwrap_or_else(PoisonError::into_inner) = Some(history);
        live
    }

    /// False while the model rebuilds from a history that replaced the one it was built from.
    pub fn is_current(&self) -> bool {
        self.position().0 >= self.rebuild_until.load(Ordering::Acquire)
    }

    /// Changes each time the history is found replaced (see the module doc).
    pub fn replacements(&self) -> watch::Receiver<u64> {
        self.replaced.subscribe()
    }

    /// Every commit applied from now on, in order.
    pub fn applied_commits(&self) -> broadcast::Receiver<Arc<StoredCommit>> {
        self.applied.subscribe()
    }

    /// Changes whenever the model's position does.
    pub fn position_updates(&self) -> watch::Receiver<Position> {
        self.position.subscribe()
    }

    /// The history the model is built from, once known.
    pub fn history(&self) -> Option<HistoryId> {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs `f` on the current model under a read lock. Keep `f` short and never await in it.
    pub fn read<R>(&self, f: impl FnOnce(&ReadModel) -> R) -> R {
        let guard = self.model.read().unwrap_or_else(PoisonError::into_inner);
        f(&guard)
    }

    pub fn position(&self) -> Position {
        *self.position.borrow()
    }

    /// Commits and events applied since start, and commits that could not be read.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.counters.commits.load(Ordering::Relaxed),
            self.counters.events.load(Ordering::Relaxed),
            self.counters.corrupt.load(Ordering::Relaxed),
        )
    }

    /// Waits until the model has applied `wanted`, for at most `timeout`.
    pub async fn wait_for(&self, wanted: Position, timeout: Duration) -> Result<(), NotReached> {
        let mut rx = self.position.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|p| *p >= wanted)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(NotReached {
                wanted: wanted.0,
                reached: self.position().0,
            }),
        }
    }

    /// Follows `store` from the model's position until `shutdown`, applying every commit.
    /// A commit that cannot be decoded is logged, counted and stepped over, so one bad message
    /// cannot stop every reader; a lost connection is retried with backoff from where it stopped.
    pub async fn follow<S: EventStore>(&self, store: S, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(50);
        while !shutdown.is_cancelled() {
            if let Err(e) = self.check_history(&store).await {
                tracing::warn!(error = %e, "cannot check which history the store holds");
            }
            let from = self.position();
            let mut feed = match store.follow(from).await {
                Ok(feed) => feed,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot follow the history; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            let mut check = tokio::time::interval(HISTORY_CHECK_EVERY);
            check.tick().await;
            // What the feed gave after a run of commits (an error, or its end): handled next.
            let mut after_run = None;
            loop {
                let next = if let Some(next) = after_run.take() {
                    next
                } else {
                    tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = feed.next() => next,
                    _ = check.tick() => match self.check_history(&store).await {
                        Ok(true) => break,
                        Ok(false) => continue,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot check which history the store holds");
                            continue;
                        }
                    },
                    }
                };
                match next {
                    Some(Ok(commit)) => {
                        backoff = Duration::from_millis(50);
                        // With the commits already waiting behind it, applied together.
                        let mut run = vec![commit];
                        while run.len() < APPLY_RUN {
                            match feed.next().now_or_never() {
                                Some(Some(Ok(commit))) => run.push(commit),
                                Some(other) => {
                                    after_run = Some(other);
                                    break;
                                }
                                None => break,
                            }
                        }
                        self.offer_run(&run);
                    }
                    Some(Err(StoreError::Corrupt { position, source })) => {
                        self.skip(position, &source);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "the history feed failed; resuming");
                        break;
                    }
                    None => break,
                }
            }
        }
    }

    /// Applies a command's own acknowledged commit at once when it is the next one: when the
    /// model is at `previous`, the position of the commit stored right before it (as the store
    /// said in its ack). Otherwise it is left for the feed, which brings the commits in between
    /// first. Returns whether the model now has the commit's position (applied now, before, or
    /// refused by the screen, like any commit of the feed).
    pub fn apply_next(&self, commit: &StoredCommit, previous: Option<Position>) -> bool {
        match previous {
            Some(previous) => self.offer(commit, Some(previous)),
            None => self.position() >= commit.position,
        }
    }

    /// Applies a command's own acknowledged commit as soon as the model has the commit stored
    /// right before it (`previous`, from the ack): at once when it is there, else once it gets
    /// there within `grace`. The commit before is usually another command's, applied the same
    /// way by its own writer (the commits of one atomic batch, acknowledged together, are
    /// applied in order by their writers) or brought by the feed; waiting for it is never slower
    /// than waiting for the feed to bring this one, which comes after it. Returns whether the
    /// model has the commit's position; `false` leaves it to the feed.
    pub async fn apply_after(
        &self,
        commit: &StoredCommit,
        previous: Option<Position>,
        grace: Duration,
    ) -> bool {
        if self.apply_next(commit, previous) {
            return true;
        }
        let Some(previous) = previous else {
            return false;
        };
        self.wait_for(previous, grace).await.is_ok() && self.apply_next(commit, Some(previous))
    }

    /// Applies a run of followed commits in order under one write lock, with one position update
    /// for the run: a replay brings hundreds of thousands a second, and a lock and a wake-up per
    /// commit cost about as much as applying it. Commits already applied (a command's own, from
    /// its ack) are skipped. With a screen (signatures), each commit is checked and offered on
    /// its own.
    fn offer_run(&self, run: &[StoredCommit]) {
        if self.screen.verifier.is_some() || run.len() == 1 {
            for commit in run {
                let _applying = applying(commit).entered();
                self.offer(commit, None);
            }
            return;
        }
        let (mut commits, mut events) = (0u64, 0u64);
        let reached = {
            let mut model = self.model.write().unwrap_or_else(PoisonError::into_inner);
            for commit in run {
                if commit.position <= model.position() {
                    continue;
                }
                let _applying = applying(commit).entered();
                model.apply(commit);
                if self.applied.receiver_count() > 0 {
                    let _ = self.applied.send(Arc::new(commit.clone()));
                }
                commits += 1;
                events += commit.commit.events.len() as u64;
            }
            model.position()
        };
        self.counters.commits.fetch_add(commits, Ordering::Relaxed);
        self.counters.events.fetch_add(events, Ordering::Relaxed);
        self.advance(reached);
    }

    /// Offers one commit to the model: applied once (a commit at or before the position, such as
    /// a command's own commit applied before the feed brings it, is ignored), or refused when the
    /// screen refuses it. With `only_after`, only when the model is exactly there. Returns whether
    /// the model has the commit's position afterwards.
    ///
    /// The screen reads the model under the read lock (a signature check takes tens of
    /// microseconds; queries go on meanwhile); the commit is applied under the write lock only if
    /// the model has not moved since, else the check is made again.
    fn offer(&self, commit: &StoredCommit, only_after: Option<Position>) -> bool {
        loop {
            let checked = self.read(|m| {
                let at = m.position();
                let new = commit.position > at && only_after.is_none_or(|p| p == at);
                (at, new.then(|| self.admits(m, commit)))
            });
            let (at, admitted) = match checked {
                (at, None) => return at >= commit.position,
                (at, Some(admitted)) => (at, admitted),
            };
            let fresh = {
                let mut model = self.model.write().unwrap_or_else(PoisonError::into_inner);
                if model.position() != at {
                    continue;
                }
                if admitted {
                    model.apply(commit);
                    // Under the lock, so that listeners get commits in the order they were
                    // applied.
                    if self.applied.receiver_count() > 0 {
                        let _ = self.applied.send(Arc::new(commit.clone()));
                    }
                } else {
                    self.refuse(&mut model, commit.position);
                }
                admitted
            };
            if fresh {
                let events = commit.commit.events.len() as u64;
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                self.counters.events.fetch_add(events, Ordering::Relaxed);
            }
            self.advance(commit.position);
            return true;
        }
    }

    /// Steps over a commit that cannot be read, so one bad message cannot stop every reader.
    fn skip(&self, position: Position, why: &dyn std::fmt::Display) {
        tracing::error!(position = position.0, error = %why, "skipping a commit that cannot be read");
        self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
        {
            let mut model = self.model.write().unwrap_or_else(PoisonError::into_inner);
            model.skip_to(position);
        }
        self.advance(position);
    }

    /// Steps over a commit of a partition this model does not hold.
    fn step_over(&self, position: Position) {
        {
            let mut model = self.model.write().unwrap_or_else(PoisonError::into_inner);
            if position > model.position() {
                model.skip_to(position);
            }
        }
        self.advance(position);
    }

    fn advance(&self, position: Position) {
        self.position.send_if_modified(|p| {
            let advanced = position > *p;
            if advanced {
                *p = position;
            }
            advanced
        });
    }

    /// Reads the commits up to `upto` straight from the store and applies those of the
    /// partitions it serves, in order: for a
    /// writer that must see its own acknowledged commit while the live feed is slow to deliver
    /// it (its consumer is being recreated after a leader change). The feed delivers the same
    /// commits later; they are applied once.
    pub async fn read_up_to<S: EventStore>(
        &self,
        store: &S,
        upto: Position,
    ) -> Result<(), StoreError> {
        // A model of some partitions steps over the others' commits: its feed would never have
        // brought them.
        let partitions = store.partitions();
        while self.position() < upto {
            let next = Position(self.position().0 + 1);
            match store.read_at(next).await {
                Ok(Some(commit)) if !partitions.owns(&commit.stream.account) => {
                    self.step_over(commit.position);
                }
                Ok(Some(commit)) => {
                    self.offer(&commit, None);
                }
                Ok(None) => return Ok(()),
                Err(StoreError::Corrupt { position, source }) => self.skip(position, &source),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Applies the store's commits after the model's position up to `upto`, read through its
    /// feed (for a store serving one partition, only that partition's commits are sent), then
    /// stops: to bring a partition's snapshot to the position of the others' before they are
    /// put together. Afterwards the model has every commit of the store up to `upto` (or up to
    /// the store's head, when that is before).
    pub async fn replay_to<S: EventStore>(
        &self,
        store: &S,
        upto: Position,
    ) -> Result<(), StoreError> {
        // The head is a commit of the store's own: the feed reaches it exactly, or passes `upto`.
        let last = store.head().await?.min(upto);
        if self.position() >= last {
            return Ok(());
        }
        let mut feed = store.follow(self.position()).await?;
        while self.position() < last {
            match feed.next().await {
                Some(Ok(commit)) if commit.position > upto => break,
                Some(Ok(commit)) => {
                    self.offer(&commit, None);
                }
                Some(Err(StoreError::Corrupt { position, source })) => self.skip(position, &source),
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(StoreError::Unavailable(
                        "the history feed ended before the position it was read to".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether the store still holds the history this model is built from; if not, empties the
    /// model to rebuild it from the new history and returns true.
    async fn check_history<S: EventStore>(&self, store: &S) -> Result<bool, StoreError> {
        // The position is read before the head, so a head behind it means the history shrank.
        let position = self.position();
        let identity = store.identity().await?;
        let head = store.head().await?;
        let mut known = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        let replaced = match known.as_ref() {
            None => false,
            // An empty history had nothing to name it by: any history may follow it.
            Some(k) if k.0.is_empty() => head < position,
            Some(k) => *k != identity || head < position,
        };
        if replaced {
            tracing::error!(
                was = %known.as_ref().map(ToString::to_string).unwrap_or_default(),
                now = %identity,
                head = head.0,
                position = position.0,
                "the history was replaced (deleted and created again?); rebuilding the model from it"
            );
            {
                let mut model = self.model.write().unwrap_or_else(PoisonError::into_inner);
                *model = model.emptied();
            }
            self.rebuild_until.store(head.0, Ordering::Release);
            self.position.send_replace(Position(0));
            self.replaced.send_modify(|n| *n += 1);
        }
        *known = Some(identity);
        Ok(replaced)
    }

    /// Waits until the model has applied everything the store held when this was called.
    pub async fn catch_up<S: EventStore>(
        &self,
        store: &S,
        timeout: Duration,
    ) -> Result<Position, CatchUpError> {
        let head = store.head().await?;
        self.wait_for(head, timeout).await?;
        Ok(head)
    }
}

/// Refusing commits that are not signed by a configured key (`--require-signatures`).
#[derive(Debug, Default)]
struct Screen {
    verifier: Option<followers_shared::signing::Verifier>,
    refused: AtomicU64,
    /// Positions of refused commits, for the follower sync ([`LiveModel::refused_at`]).
    positions: std::sync::Mutex<std::collections::BTreeSet<Position>>,
}

impl LiveModel {
    /// Applies only commits that `verifier` admits (a signature of a configured key, a chain
    /// value that follows from the stream's last applied commit); others are logged, counted and
    /// stepped over like unreadable ones. Call before following.
    pub fn with_verifier(mut self, verifier: Option<followers_shared::signing::Verifier>) -> Self {
        self.screen = Arc::new(Screen {
            verifier,
            ..Screen::default()
        });
        self
    }

    /// Commits refused since start for their signature or chain value.
    pub fn refused(&self) -> u64 {
        self.screen.refused.load(Ordering::Relaxed)
    }

    /// Whether the commit at `position` was refused (and so not applied).
    pub fn refused_at(&self, position: Position) -> bool {
        let positions = self
            .screen
            .positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        positions.contains(&position)
    }

    /// Whether the screen lets `commit` into `model` (always, without a verifier).
    fn admits(&self, model: &ReadModel, commit: &StoredCommit) -> bool {
        let Some(verifier) = &self.screen.verifier else {
            return true;
        };
        let Err(e) = verifier.admit_into(model, commit) else {
            return true;
        };
        tracing::error!(position = commit.position.0, stream = %commit.stream,
            command_id = %commit.commit.command_id, reason = e.code(), error = %e,
            "refusing a commit that is not signed by a configured key");
        false
    }

    /// Steps `model` over a refused commit at `position`, remembering that it was refused.
    fn refuse(&self, model: &mut ReadModel, position: Position) {
        self.screen.refused.fetch_add(1, Ordering::Relaxed);
        self.screen
            .positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(position);
        model.skip_to(position);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    NotReached(#[from] NotReached),
}

/// The span of applying a followed commit, in the trace that wrote it (none for a commit written
/// outside one, and none while loading: a replay is not part of any request's trace).
fn applying(commit: &followers_shared::store::StoredCommit) -> tracing::Span {
    if commit.trace.is_none() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!("apply", position = commit.position.0, stream = %commit.stream);
    crate::trace::continue_commit(&span, commit.trace.as_ref());
    span
}

#[cfg(test)]
mod tests {
    use super::*;
    use followers_shared::ids::{AccountId, CommandId};
    use followers_shared::store::{Commit, StreamId, Version};

    fn commit_at(account: &str, position: u64) -> StoredCommit {
        StoredCommit {
            stream: StreamId::account(AccountId::new(account).unwrap()),
            version: Version(1),
            position: Position(position),
            commit: Commit::sealed(CommandId::new(), Vec::new(), None),
            trace: None,
        }
    }

    /// Group commit acknowledges a batch's commits together; each writer applies its own once
    /// the one before it is there, so none waits for the feed (the model here follows nothing).
    #[tokio::test]
    async fn an_own_commit_is_applied_once_the_one_before_it_is() {
        let model = LiveModel::new(ReadModel::new());
        let (first, second) = (commit_at("acme", 1), commit_at("globex", 2));
        let waiting = {
            let model = model.clone();
            let second = second.clone();
            tokio::spawn(async move {
                model
                    .apply_after(&second, Some(Position(1)), Duration::from_secs(30))
                    .await
            })
        };
        assert!(
            model
                .apply_after(&first, Some(Position(0)), Duration::from_secs(30))
                .await
        );
        assert!(waiting.await.unwrap(), "applied after the one before it");
        assert_eq!(model.position(), Position(2));
        assert_eq!(model.counts().0, 2, "each applied once");
    }

    /// Following applies the commits waiting in the feed in runs: every commit once, in order,
    /// a command's own commit applied from its ack before the feed brings it included.
    #[tokio::test]
    async fn a_followed_history_is_applied_once_and_in_order() {
        use followers_shared::store::{EventStore, Expected};
        let store = crate::MemoryStore::new();
        for n in 0..300u64 {
            let stream = StreamId::account(AccountId::new(format!("a{n}")).unwrap());
            let commit = Commit::sealed(CommandId::new(), Vec::new(), None);
            store
                .append(&stream, Expected::NoStream, &commit)
                .await
                .unwrap();
        }
        let model = LiveModel::new(ReadModel::new());
        // The commit at 10 was applied from its ack while the model was at 9.
        let early = store.read_at(Position(10)).await.unwrap().unwrap();
        let stop = CancellationToken::new();
        let following = tokio::spawn({
            let (model, store, stop) = (model.clone(), store.clone(), stop.clone());
            async move { model.follow(store, stop).await }
        });
        model
            .wait_for(Position(9), Duration::from_secs(30))
            .await
            .unwrap();
        model.apply_next(&early, Some(Position(9)));
        model
            .wait_for(Position(300), Duration::from_secs(30))
            .await
            .unwrap();
        stop.cancel();
        following.await.unwrap();
        assert_eq!(model.counts().0, 300, "each commit applied once");
        let mut replayed = ReadModel::new();
        for n in 1..=300 {
            replayed.apply(&store.read_at(Position(n)).await.unwrap().unwrap());
        }
        assert!(
            model.read(|m| *m == replayed),
            "the same model as applying one by one"
        );
    }

    /// A commit whose predecessor never comes is left to the feed, not applied out of order.
    #[tokio::test]
    async fn an_own_commit_is_not_applied_before_the_one_before_it() {
        let model = LiveModel::new(ReadModel::new());
        let applied = model
            .apply_after(
                &commit_at("acme", 2),
                Some(Position(1)),
                Duration::from_millis(20),
            )
            .await;
        assert!(!applied);
        assert_eq!(model.position(), Position(0));
    }
}

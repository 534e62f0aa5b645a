//! A [`ReadModel`] kept current by following the history: the state both services decide and
//! answer from.
//!
//! One task follows the store and applies commits in order; readers take a short read lock.
//! Anyone can wait until the model has reached a position (a command waiting for its own commit,
//! a query carrying a consistency token).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use followers_shared::read_model::ReadModel;
use followers_shared::store::{EventStore, Position, StoreError};
use futures::StreamExt;
use tokio::sync::watch;
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

/// A shared, live read model.
#[derive(Debug, Clone)]
pub struct LiveModel {
    model: Arc<RwLock<ReadModel>>,
    position: watch::Sender<Position>,
    counters: Arc<Counters>,
    /// Signature checks before applying ([`LiveModel::with_verifier`]).
    screen: Arc<Screen>,
}

impl LiveModel {
    pub fn new(model: ReadModel) -> Self {
        let position = watch::Sender::new(model.position());
        Self {
            model: Arc::new(RwLock::new(model)),
            position,
            counters: Arc::default(),
            screen: Arc::default(),
        }
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
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = feed.next() => next,
                };
                match next {
                    Some(Ok(commit)) if !self.admits(&commit) => self.refuse(&commit),
                    Some(Ok(commit)) => {
                        backoff = Duration::from_millis(50);
                        let events = commit.commit.events.len() as u64;
                        let position = commit.position;
                        {
                            let mut model =
                                self.model.write().unwrap_or_else(PoisonError::into_inner);
                            model.apply(&commit);
                        }
                        self.counters.commits.fetch_add(1, Ordering::Relaxed);
                        self.counters.events.fetch_add(events, Ordering::Relaxed);
                        self.position.send_if_modified(|p| {
                            let advanced = position > *p;
                            if advanced {
                                *p = position;
                            }
                            advanced
                        });
                    }
                    Some(Err(StoreError::Corrupt { position, source })) => {
                        tracing::error!(position = position.0, error = %source,
                            "skipping a commit that cannot be read");
                        self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
                        {
                            let mut model =
                                self.model.write().unwrap_or_else(PoisonError::into_inner);
                            model.skip_to(position);
                        }
                        self.position.send_if_modified(|p| {
                            let advanced = position > *p;
                            if advanced {
                                *p = position;
                            }
                            advanced
                        });
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

    fn admits(&self, commit: &followers_shared::store::StoredCommit) -> bool {
        let Some(verifier) = &self.screen.verifier else {
            return true;
        };
        let Err(e) = self.read(|m| verifier.admit_into(m, commit)) else {
            return true;
        };
        tracing::error!(position = commit.position.0, stream = %commit.stream,
            command_id = %commit.commit.command_id, reason = e.code(), error = %e,
            "refusing a commit that is not signed by a configured key");
        false
    }

    fn refuse(&self, commit: &followers_shared::store::StoredCommit) {
        let position = commit.position;
        self.screen.refused.fetch_add(1, Ordering::Relaxed);
        self.screen
            .positions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(position);
        {
            let mut model = self.model.write().unwrap_or_else(PoisonError::into_inner);
            model.skip_to(position);
        }
        self.position.send_if_modified(|p| {
            let advanced = position > *p;
            if advanced {
                *p = position;
            }
            advanced
        });
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    NotReached(#[from] NotReached),
}

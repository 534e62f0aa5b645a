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
}

impl LiveModel {
    pub fn new(model: ReadModel) -> Self {
        let position = watch::Sender::new(model.position());
        Self {
            model: Arc::new(RwLock::new(model)),
            position,
            counters: Arc::default(),
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

#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    NotReached(#[from] NotReached),
}

//! The feed of access changes (docs/protocol.md 5.11): every change that may affect access in an
//! account, with its position, as pages over NATS (`changes`) and as a Server-Sent Events
//! stream over HTTP.
//!
//! **Where changes come from.** The history itself, narrowed by [`followers_shared::change`]:
//! a reader first reads the account's commits after its position straight from the store
//! ([`EventStore::read_account`], one account's subjects only) up to the live model's position,
//! then takes the commits the live model applies ([`LiveModel::applied_commits`]). Commits the
//! model refused (`--require-signatures`) are never given: the feed is the history the queries
//! answer from. It listens before it reads, and skips every
//! commit at or before the last position it passed, so the switch from the store to the live
//! commits loses nothing and repeats nothing. A reader that falls behind the live commits (it
//! is told it lagged) reads the rest from the store again. So resuming after any position
//! gives exactly the changes after it, whether they are a second or a year old.
//!
//! **Slow clients.** A stream's client has a buffer of [`FeedLimits::buffer`] commits' changes. When it
//! stays full for [`FeedLimits::slow_after`], the stream is cut off: the client gets what is
//! buffered, then an `end` event saying why and the position to resume after, and the
//! connection ends. The service never waits for a client: the live commits are broadcast
//! without blocking, and a reader that lags catches up from the store. How many streams are
//! open at once is bounded too ([`FeedLimits::streams`]).
//!
//! Streams end at shutdown with a `closing` event (resume after its position elsewhere).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use followers_shared::change::ChangeFilter;
use followers_shared::error::ErrorCode;
use followers_shared::ids::AccountId;
use followers_shared::model::RecordRef;
use followers_shared::store::{CommitStream, EventStore, Position, StoreError, StoredCommit};
use followers_shared::wire::{Change, Changes, ChangesAnswer, ErrorBody};
use followers_store::LiveModel;
use futures::StreamExt;
use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// One account's history, read through a trait object ([`EventStore`] is not object safe).
pub trait AccountHistory: Send + Sync + 'static {
    fn read_account<'a>(
        &'a self,
        account: &'a AccountId,
        after: Position,
    ) -> BoxFuture<'a, Result<CommitStream, StoreError>>;
}

impl<S: EventStore> AccountHistory for S {
    fn read_account<'a>(
        &'a self,
        account: &'a AccountId,
        after: Position,
    ) -> BoxFuture<'a, Result<CommitStream, StoreError>> {
        Box::pin(EventStore::read_account(self, account, after))
    }
}

/// The bounds of the streams over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedLimits {
    /// Streams open at once; beyond it, a new one is refused `unavailable`.
    pub streams: usize,
    /// Commits' changes buffered for one client.
    pub buffer: usize,
    /// How long a client's buffer may stay full before its stream is cut off.
    pub slow_after: Duration,
}

/// The feed of one service: the live model, the store, and the bounds of its streams.
#[derive(Clone)]
pub struct Feed {
    model: LiveModel,
    history: Arc<dyn AccountHistory>,
    limits: FeedLimits,
    streams: Arc<Semaphore>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("limits", &self.limits)
            .finish()
    }
}

/// What a stream sends besides changes, as its last event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ending {
    /// `slow_consumer`, `closing` (the service is stopping) or `unavailable` (the history could
    /// not be read).
    pub code: &'static str,
    pub message: String,
    /// Resume after this position: every change up to it was sent.
    pub resume_after: Position,
}

/// One event of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    Change(Box<Change>),
    End(Ending),
}

/// See [`Feed::screen`].
enum Read {
    Give,
    Skip,
    Stop,
}

/// A reader's place: the account, what it asks about, and the last position it passed.
struct Cursor {
    account: AccountId,
    filter: ChangeFilter,
    after: Position,
}

impl Cursor {
    /// The changes of `commit` the reader wants, if the commit is its account's and new to it.
    fn read(&mut self, commit: &StoredCommit) -> Option<Vec<Change>> {
        if commit.position <= self.after || commit.stream.account != self.account {
            return None;
        }
        self.after = commit.position;
        let changes = commit
            .commit
            .events
            .iter()
            .filter(|e| self.filter.keeps(&e.body));
        Some(
            changes
                .map(|event| Change {
                    position: commit.position,
                    event: event.clone(),
                })
                .collect(),
        )
    }
}

fn unavailable(e: &StoreError) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::Unavailable,
        format!("the account's history cannot be read now ({e}); retry"),
    )
}

impl Feed {
    pub fn new(
        model: LiveModel,
        history: Arc<dyn AccountHistory>,
        limits: FeedLimits,
        shutdown: CancellationToken,
    ) -> Self {
        let streams = Arc::new(Semaphore::new(
            limits.streams.clamp(1, Semaphore::MAX_PERMITS),
        ));
        Self {
            model,
            history,
            limits,
            streams,
            shutdown,
        }
    }

    /// A reader of `q` in `account`: for an opportunity, its contact is looked up in the model
    /// (the filter learns it from the history when the opportunity is newer).
    fn cursor(&self, account: &AccountId, q: &Changes) -> Cursor {
        let contact = match &q.record {
            Some(record @ RecordRef::Opportunity(_)) => self.model.read(|m| {
                m.record(account, record)
                    .and_then(|r| r.state.contact.clone())
            }),
            _ => None,
        };
        Cursor {
            account: account.clone(),
            filter: ChangeFilter::new(q.record.clone(), contact, q.user.clone()),
            after: q.after,
        }
    }

    /// One page of changes after `q.after`: at most `limit` changes, except that a commit is
    /// never split (a page ends after the commit that reached the limit). With `wait_ms` and
    /// nothing to give yet, waits up to that long (at most `max_wait`) for the next change.
    pub async fn page(
        &self,
        account: &AccountId,
        q: &Changes,
        limit: usize,
        max_wait: Duration,
    ) -> Result<ChangesAnswer, ErrorBody> {
        let mut live = self.model.applied_commits();
        let mut cursor = self.cursor(account, q);
        let mut changes = Vec::new();
        self.catch_up(&mut cursor, &mut changes, limit).await?;
        let wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(max_wait);
        if changes.is_empty() && !wait.is_zero() {
            let deadline = tokio::time::Instant::now() + wait;
            while changes.is_empty() {
                match tokio::time::timeout_at(deadline, live.recv()).await {
                    Err(_) | Ok(Err(RecvError::Closed)) => break,
                    Ok(Ok(commit)) => changes.extend(cursor.read(&commit).unwrap_or_default()),
                    Ok(Err(RecvError::Lagged(_))) => {
                        self.catch_up(&mut cursor, &mut changes, limit).await?;
                    }
                }
            }
        }
        Ok(ChangesAnswer {
            changes,
            next: cursor.after,
        })
    }

    /// Reads the account's commits after the cursor from the store, up to the present or until
    /// `limit` changes are gathered.
    async fn catch_up(
        &self,
        cursor: &mut Cursor,
        out: &mut Vec<Change>,
        limit: usize,
    ) -> Result<(), ErrorBody> {
        let applied = self.model.position();
        let mut commits = self
            .history
            .read_account(&cursor.account, cursor.after)
            .await
            .map_err(|e| unavailable(&e))?;
        while out.len() < limit {
            let Some(commit) = commits.next().await else {
                break;
            };
            let commit = commit.map_err(|e| unavailable(&e))?;
            match self.screen(&commit, applied) {
                Read::Stop => break,
                Read::Skip => {}
                Read::Give => out.extend(cursor.read(&commit).unwrap_or_default()),
            }
        }
        Ok(())
    }

    /// What a catch-up does with a commit read from the store: it gives only what the live
    /// model had passed when the read began (later commits come as the model applies them), and
    /// never a commit the model refused (`--require-signatures`: unsigned or forged), so the
    /// feed shows exactly the history the queries answer from.
    fn screen(&self, commit: &StoredCommit, applied: Position) -> Read {
        if commit.position > applied {
            Read::Stop
        } else if self.model.refused_at(commit.position) {
            Read::Skip
        } else {
            Read::Give
        }
    }

    /// Opens a stream of the changes after `q.after`, or refuses it `unavailable` when
    /// [`FeedLimits::streams`] are open. The stream ends with a [`FeedEvent::End`] unless the
    /// client goes away first.
    pub fn stream(
        &self,
        account: &AccountId,
        q: &Changes,
    ) -> Result<impl futures::Stream<Item = FeedEvent> + Send + use<>, ErrorBody> {
        let place = self.streams.clone().try_acquire_owned().map_err(|_| {
            ErrorBody::new(
                ErrorCode::Unavailable,
                format!(
                    "{} change streams are open, the most this service serves; retry later",
                    self.limits.streams
                ),
            )
        })?;
        let (tx, rx) = mpsc::channel::<Vec<Change>>(self.limits.buffer.max(1));
        let ending = Arc::new(Mutex::new(None));
        let pump = Pump {
            feed: self.clone(),
            cursor: self.cursor(account, q),
            tx,
            ending: ending.clone(),
        };
        tokio::spawn(async move {
            pump.run().await;
            drop(place);
        });
        let changes = futures::stream::unfold(rx, |mut rx| async move {
            let commit = rx.recv().await?;
            Some((
                futures::stream::iter(commit.into_iter().map(|c| FeedEvent::Change(Box::new(c)))),
                rx,
            ))
        })
        .flatten();
        let end = futures::stream::once(async move {
            ending.lock().unwrap_or_else(PoisonError::into_inner).take()
        })
        .filter_map(|end| async move { end.map(FeedEvent::End) });
        Ok(changes.chain(end))
    }
}

/// Moves one stream's changes from the store and the live commits into its client's buffer.
struct Pump {
    feed: Feed,
    cursor: Cursor,
    /// The client's buffer, a commit's changes to a slot: a commit is sent whole or not at all.
    tx: mpsc::Sender<Vec<Change>>,
    /// Why the stream ended, given to the client after the buffered changes.
    ending: Arc<Mutex<Option<Ending>>>,
}

/// Why a pump stopped.
enum Stop {
    /// The client went away: nothing to tell.
    Gone,
    End(&'static str, String),
}

impl Pump {
    async fn run(mut self) {
        let stop = self.pump().await;
        if let Stop::End(code, message) = stop {
            if code == "slow_consumer" {
                metrics::counter!("followers_feed_cut_off_total").increment(1);
            }
            tracing::info!(account = %self.cursor.account, code, "change stream ended");
            *self.ending.lock().unwrap_or_else(PoisonError::into_inner) = Some(Ending {
                code,
                message,
                resume_after: self.sent_up_to(),
            });
        }
    }

    /// Every change in the client's buffer was read from a commit at or before the cursor.
    fn sent_up_to(&self) -> Position {
        self.cursor.after
    }

    async fn pump(&mut self) -> Stop {
        let mut live = self.feed.model.applied_commits();
        loop {
            if let Err(stop) = self.catch_up().await {
                return stop;
            }
            loop {
                let received = tokio::select! {
                    () = self.feed.shutdown.cancelled() => return closing(),
                    () = self.tx.closed() => return Stop::Gone,
                    r = live.recv() => r,
                };
                match received {
                    Ok(commit) => {
                        if let Err(stop) = self.deliver(&commit).await {
                            return stop;
                        }
                    }
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return closing(),
                }
            }
        }
    }

    async fn catch_up(&mut self) -> Result<(), Stop> {
        let read = self
            .feed
            .history
            .read_account(&self.cursor.account, self.cursor.after);
        let applied = self.feed.model.position();
        let mut commits = read.await.map_err(|e| history_failed(&e))?;
        while let Some(commit) = commits.next().await {
            let commit = commit.map_err(|e| history_failed(&e))?;
            match self.feed.screen(&commit, applied) {
                Read::Stop => break,
                Read::Skip => {}
                Read::Give => self.deliver(&commit).await?,
            }
        }
        Ok(())
    }

    /// Puts the changes of `commit` into the client's buffer, waiting at most
    /// [`FeedLimits::slow_after`] for room for each.
    async fn deliver(&mut self, commit: &StoredCommit) -> Result<(), Stop> {
        let before = self.cursor.after;
        let Some(changes) = self.cursor.read(commit) else {
            return Ok(());
        };
        if changes.is_empty() {
            return Ok(());
        }
        let slow_after = self.feed.limits.slow_after;
        let sent = tokio::select! {
            () = self.feed.shutdown.cancelled() => Err(closing()),
            s = tokio::time::timeout(slow_after, self.tx.send(changes)) => match s {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(Stop::Gone),
                Err(_) => Err(Stop::End(
                    "slow_consumer",
                    format!(
                        "the client read nothing for {} ms while {} commits' changes waited \
                         for it; reconnect with after = resume_after",
                        slow_after.as_millis(),
                        self.feed.limits.buffer
                    ),
                )),
            },
        };
        if sent.is_err() {
            // Not in the client's buffer: resume before this commit.
            self.cursor.after = before;
        }
        sent
    }
}

fn closing() -> Stop {
    Stop::End(
        "closing",
        "the service is stopping; reconnect, to this or another instance, with after = \
         resume_after"
            .to_owned(),
    )
}

fn history_failed(e: &StoreError) -> Stop {
    Stop::End("unavailable", unavailable(e).message)
}

#[cfg(test)]
pub(crate) mod tests {
    use followers_shared::event::EventBody;
    use followers_shared::ids::{ContactId, UserId};
    use followers_shared::read_model::ReadModel;
    use followers_shared::store::{Commit, Expected, StreamId};
    use followers_store::MemoryStore;

    use super::*;

    fn deactivated(account: &AccountId, n: usize) -> (StreamId, Commit) {
        let user = UserId::new(format!("u{n}")).unwrap();
        let record = RecordRef::Contact(ContactId::new(format!("c{n}")).unwrap());
        let stream = StreamId::record(account.clone(), record);
        (
            stream,
            Commit::of_system(vec![EventBody::MemberDeactivated { user }]),
        )
    }

    fn positions(events: &[FeedEvent]) -> Vec<Option<u64>> {
        events
            .iter()
            .map(|e| match e {
                FeedEvent::Change(c) => Some(c.position.0),
                FeedEvent::End(_) => None,
            })
            .collect()
    }

    /// A client that reads nothing while its buffer (one commit) is full is cut off after
    /// `slow_after`, is told where to resume, and resuming there misses nothing.
    #[tokio::test]
    async fn a_client_that_reads_nothing_is_cut_off_and_told_where_to_resume() {
        let store = MemoryStore::new();
        let model = LiveModel::new(ReadModel::default());
        let stop = CancellationToken::new();
        let following = (model.clone(), store.clone(), stop.clone());
        tokio::spawn(async move { following.0.follow(following.1, following.2).await });
        let limits = FeedLimits {
            streams: 1,
            buffer: 1,
            slow_after: Duration::from_millis(50),
        };
        let feed = Feed::new(model.clone(), Arc::new(store.clone()), limits, stop.clone());
        let acme = AccountId::new("acme").unwrap();
        let slow = feed.stream(&acme, &Changes::default()).unwrap();
        let mut stored = Vec::new();
        for n in 0..3 {
            let (stream, commit) = deactivated(&acme, n);
            let appended = store
                .append(&stream, Expected::NoStream, &commit)
                .await
                .unwrap();
            stored.push(Some(appended.position.0));
        }
        // The pump gives its place back when it cuts the client off.
        let freed = async {
            while feed.streams.available_permits() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), freed)
            .await
            .expect("cut off");

        let got: Vec<FeedEvent> = slow.collect().await;
        assert_eq!(
            positions(&got),
            [stored[0], None],
            "the buffered commit, then the end"
        );
        let FeedEvent::End(end) = &got[1] else {
            unreachable!()
        };
        assert_eq!(end.code, "slow_consumer");
        assert_eq!(Some(end.resume_after.0), stored[0]);

        let resume = Changes {
            after: end.resume_after,
            ..Changes::default()
        };
        let mut rest = Box::pin(feed.stream(&acme, &resume).unwrap());
        let (a, b) = (rest.next().await.unwrap(), rest.next().await.unwrap());
        assert_eq!(positions(&[a, b]), stored[1..]);
        stop.cancel();
        let FeedEvent::End(end) = rest.next().await.unwrap() else {
            panic!("not the end")
        };
        assert_eq!(end.code, "closing");
        assert_eq!(Some(end.resume_after.0), stored[2]);
    }

    /// With `--require-signatures`, a commit the model refused (here: every one, as no key is
    /// configured) is in the store but never in the feed: the feed is what the queries see.
    #[tokio::test]
    async fn a_commit_the_model_refused_is_not_a_change() {
        let store = MemoryStore::new();
        let refusing = Some(followers_shared::signing::Verifier::new());
        let model = LiveModel::new(ReadModel::default()).with_verifier(refusing);
        let stop = CancellationToken::new();
        let following = (model.clone(), store.clone(), stop.clone());
        tokio::spawn(async move { following.0.follow(following.1, following.2).await });
        let acme = AccountId::new("acme").unwrap();
        let mut last = Position(0);
        for n in 0..2 {
            let (stream, commit) = deactivated(&acme, n);
            last = store
                .append(&stream, Expected::NoStream, &commit)
                .await
                .unwrap()
                .position;
        }
        model.wait_for(last, Duration::from_secs(5)).await.unwrap();
        assert_eq!(model.refused(), 2);
        let history: Arc<dyn AccountHistory> = Arc::new(store.clone());
        let feed = Feed::new(model, history, feed().limits, stop.clone());
        let page = feed
            .page(&acme, &Changes::default(), 100, Duration::ZERO)
            .await
            .unwrap();
        assert!(page.changes.is_empty(), "{page:?}");
        stop.cancel();
    }

    /// A feed on an empty model and store, for tests of the query side.
    pub(crate) fn feed() -> Feed {
        let limits = FeedLimits {
            streams: 2,
            buffer: 4,
            slow_after: Duration::from_millis(100),
        };
        let history = Arc::new(MemoryStore::new());
        Feed::new(
            LiveModel::new(ReadModel::default()),
            history,
            limits,
            CancellationToken::new(),
        )
    }
}

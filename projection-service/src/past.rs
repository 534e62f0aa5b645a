//! Answers as of a past moment (`at_position`, `at_time`) and a record's own history
//! (`record_history`), read from the history rather than the live model.
//!
//! A past answer is the live answer of that moment: the account's commits up to the moment
//! are read ([`EventStore::read_account`]) and folded into a fresh [`ReadModel`] with
//! [`read_model::replay_until`], the very fold of the audit tool's `at`, and the query is then
//! answered by the same function as a live one. An account's state depends on its own commits
//! alone (R1), so the other accounts' are never read.
//!
//! What bounds it (docs/protocol.md, "Past moments"; docs/performance.md):
//!
//! - at most [`PastLimits::max_commits`] commits of the account are read for one answer: a
//!   moment whose replay needs more is refused `too_much_history` after reading one more than
//!   that, never after reading the rest;
//! - the read must end within [`PastLimits::read_timeout`], else `store_unavailable`;
//! - at most [`PastLimits::readers`] past models are built at once; another query that needs
//!   one is answered `unavailable` at once (retry), so past answers cannot take the whole query
//!   budget's places and memory;
//! - the last [`PastLimits::cached`] past models are kept, keyed by history, account and
//!   position ([`Moment`]), so the pages of one past answer, or several queries about one
//!   moment, read the history once (and a replaced history's are never served for the new one).
//!
//! `record_history` reads the record's stream ([`EventStore::read_stream`]) and, for each
//! reaction of the follower sync on the page, the stream of the record its cause names, to say
//! where that owner change is stored.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use followers_shared::event::{Event, EventBody};
use followers_shared::ids::{AccountId, EventId};
use followers_shared::model::{AddedHow, RecordRef};
use followers_shared::read_model::{self, Chains, ReadModel};
use followers_shared::store::{
    CommitStream, EventStore, HistoryId, Position, StoreError, StoredCommit, StreamId,
};
use futures::StreamExt;
use futures::future::BoxFuture;

/// What past answers read from the history: one account's commits, and one stream.
pub trait History: Send + Sync + 'static {
    /// The account's commits after `after`, up to the head as the call finds it.
    fn account<'a>(
        &'a self,
        account: &'a AccountId,
        after: Position,
    ) -> BoxFuture<'a, Result<CommitStream, StoreError>>;

    /// Every commit of one stream, in order.
    fn stream<'a>(
        &'a self,
        stream: &'a StreamId,
    ) -> BoxFuture<'a, Result<Vec<StoredCommit>, StoreError>>;

    /// The position of the last commit of the partitions served ([`EventStore::head`]).
    fn head(&self) -> BoxFuture<'_, Result<Position, StoreError>>;

    /// The position of the last commit of the whole history, every partition's.
    fn whole_head(&self) -> BoxFuture<'_, Result<Position, StoreError>>;
}

impl<S: EventStore> History for S {
    fn account<'a>(
        &'a self,
        account: &'a AccountId,
        after: Position,
    ) -> BoxFuture<'a, Result<CommitStream, StoreError>> {
        Box::pin(self.read_account(account, after))
    }

    fn stream<'a>(
        &'a self,
        stream: &'a StreamId,
    ) -> BoxFuture<'a, Result<Vec<StoredCommit>, StoreError>> {
        Box::pin(self.read_stream(stream))
    }

    fn head(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
        Box::pin(EventStore::head(self))
    }

    fn whole_head(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
        Box::pin(async move {
            match self.serving(followers_shared::partition::PartitionSet::All) {
                Some(whole) => whole.head().await,
                None => EventStore::head(self).await,
            }
        })
    }
}

/// The bounds of past answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PastLimits {
    /// The most commits of one account read (and replayed) for one past answer.
    pub max_commits: usize,
    /// How long reading them may take.
    pub read_timeout: Duration,
    /// How many past models are kept for the next queries.
    pub cached: usize,
    /// How many past models may be built at once.
    pub readers: usize,
}

impl Default for PastLimits {
    fn default() -> Self {
        Self {
            max_commits: MAX_PAST_COMMITS,
            read_timeout: Duration::from_secs(10),
            cached: 8,
            readers: 4,
        }
    }
}

/// The default of [`PastLimits::max_commits`]: an answer at the bound costs about what reading
/// that many commits from JetStream costs (docs/performance.md, "Past moments").
pub const MAX_PAST_COMMITS: usize = 10_000;

/// The moment a past answer is asked about, as the query gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Right after the commit at this position (`at_position`).
    Position(Position),
    /// Right after the last commit of the account stored at or before this time (`at_time`).
    Time(DateTime<Utc>),
}

impl Until {
    /// Whether `stored` comes after the moment: the first such commit ends the read. A commit
    /// without events has no time and is never after a time.
    fn passed_by(self, stored: &StoredCommit) -> bool {
        match self {
            Until::Position(at) => stored.position > at,
            Until::Time(t) => stored.time().is_some_and(|at| at > t),
        }
    }
}

impl std::fmt::Display for Until {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Until::Position(p) => write!(f, "position {}", p.0),
            Until::Time(t) => write!(f, "{}", t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        }
    }
}

/// Why a past model could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PastError {
    #[error(
        "answering as of {until} needs more than {limit} commits of account `{account}` to be \
         replayed, the most one query may read; ask about an earlier moment, or use \
         `followers-audit at` (docs/protocol.md, \"Past moments\")"
    )]
    TooMuchHistory {
        account: AccountId,
        until: Until,
        limit: usize,
    },
    #[error("reading the history of account `{account}` took more than {} ms", .limit.as_millis())]
    TimedOut { account: AccountId, limit: Duration },
    #[error(
        "{0} past answers are being read from the history already, the most at once; retry \
         shortly"
    )]
    Busy(usize),
    #[error("reading the history: {0}")]
    Store(#[from] StoreError),
}

/// Which past model: of which history (the live model's, so that a replaced history's models
/// are never served for the new one), which account, as of which position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moment {
    pub history: Option<HistoryId>,
    pub account: AccountId,
    pub at: Position,
}

/// A past model, shared by the queries that ask about its moment.
type Cached = (Moment, Arc<ReadModel>);

/// Past models, built from the history on demand.
pub struct Past {
    history: Arc<dyn History>,
    limits: PastLimits,
    cache: Mutex<VecDeque<Cached>>,
    readers: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Past {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Past")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Past {
    /// The position of the last commit of the partitions this instance serves.
    pub async fn served_head(&self) -> Result<Position, StoreError> {
        self.history.head().await
    }

    /// The position of the last commit of the whole history.
    pub async fn whole_head(&self) -> Result<Position, StoreError> {
        self.history.whole_head().await
    }

    pub fn new(history: Arc<dyn History>, limits: PastLimits) -> Self {
        Self {
            history,
            limits,
            cache: Mutex::new(VecDeque::new()),
            readers: tokio::sync::Semaphore::new(limits.readers.max(1)),
        }
    }

    pub fn limits(&self) -> PastLimits {
        self.limits
    }

    pub fn history(&self) -> &dyn History {
        self.history.as_ref()
    }

    fn cached(&self, moment: &Moment) -> Option<Arc<ReadModel>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .iter()
            .find(|(m, _)| m == moment)
            .map(|(_, model)| model.clone())
    }

    fn keep(&self, moment: &Moment, model: Arc<ReadModel>) {
        if self.limits.cached == 0 {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.iter().any(|(m, _)| m == moment) {
            return;
        }
        while cache.len() >= self.limits.cached {
            cache.pop_front();
        }
        cache.push_back((moment.clone(), model));
    }

    /// The model of the moment's account as of its position: the account's commits at or
    /// before it, replayed.
    pub async fn model(&self, moment: &Moment) -> Result<Arc<ReadModel>, PastError> {
        if let Some(model) = self.cached(moment) {
            return Ok(model);
        }
        let until = Until::Position(moment.at);
        let (_, model) = self.build(moment, until).await?;
        Ok(model)
    }

    /// The model of `account` as of `time`, and the position that moment is: the account's
    /// last commit stored at or before it (`Position(0)` when there is none). The model is kept
    /// under that position, so the next pages can ask `at_position` it.
    pub async fn model_at_time(
        &self,
        history: Option<HistoryId>,
        account: &AccountId,
        time: DateTime<Utc>,
    ) -> Result<(Position, Arc<ReadModel>), PastError> {
        let moment = Moment {
            history,
            account: account.clone(),
            at: Position(0),
        };
        self.build(&moment, Until::Time(time)).await
    }

    /// Reads and replays the account's commits up to `until`, and keeps the model under the
    /// moment's history, account and the position `until` turned out to be.
    async fn build(
        &self,
        moment: &Moment,
        until: Until,
    ) -> Result<(Position, Arc<ReadModel>), PastError> {
        let account = &moment.account;
        let _reading = self
            .readers
            .try_acquire()
            .map_err(|_| PastError::Busy(self.limits.readers.max(1)))?;
        let read = self.read(account, until);
        let (commits, unreadable) = tokio::time::timeout(self.limits.read_timeout, read)
            .await
            .map_err(|_| PastError::TimedOut {
                account: account.clone(),
                limit: self.limits.read_timeout,
            })??;
        let at = match until {
            Until::Position(at) => at,
            Until::Time(_) => commits.last().map_or(Position(0), |c| c.position),
        };
        let model = Arc::new(read_model::replay_until(
            ReadModel::with_chains(Chains::Dropped),
            &commits,
            unreadable,
            at,
        ));
        let kept = Moment {
            at,
            ..moment.clone()
        };
        self.keep(&kept, model.clone());
        Ok((at, model))
    }

    /// The account's commits up to `until`, and the positions of those that could not be read
    /// (up to the first commit after `until`); at most `max_commits` of them together.
    async fn read(
        &self,
        account: &AccountId,
        until: Until,
    ) -> Result<(Vec<StoredCommit>, Vec<Position>), PastError> {
        let (mut commits, mut unreadable) = (Vec::new(), Vec::new());
        let mut after = Position(0);
        // Each round reads on from `after`; a commit that cannot be read is stepped over by
        // reading on after it (a feed may end at its first error).
        'read: loop {
            let mut feed = self.history.account(account, after).await?;
            while let Some(next) = feed.next().await {
                match next {
                    Ok(c) if until.passed_by(&c) => break 'read,
                    Ok(c) => commits.push(c),
                    Err(StoreError::Corrupt { position, .. }) if matches!(until, Until::Position(at) if position > at) =>
                    {
                        break 'read;
                    }
                    Err(StoreError::Corrupt { position, .. }) => {
                        unreadable.push(position);
                    }
                    Err(e) => return Err(e.into()),
                }
                if commits.len() + unreadable.len() > self.limits.max_commits {
                    return Err(PastError::TooMuchHistory {
                        account: account.clone(),
                        until,
                        limit: self.limits.max_commits,
                    });
                }
                if let Some(&skipped) = unreadable.last().filter(|&&u| u > after) {
                    after = skipped;
                    continue 'read;
                }
            }
            break;
        }
        Ok((commits, unreadable))
    }
}

/// The records an event of the follower sync names as where its cause happened: the record
/// whose owner changed.
pub fn cause_records(body: &EventBody) -> Vec<RecordRef> {
    let mut out: Vec<RecordRef> = Vec::new();
    let mut add = |r: &RecordRef| {
        if !out.contains(r) {
            out.push(r.clone());
        }
    };
    match body {
        EventBody::FollowersAdded { followers, .. } => {
            for f in followers {
                if let AddedHow::OwnerSync { from } = &f.how {
                    add(from);
                }
            }
        }
        EventBody::FollowersRemoved {
            owner_sync_from: Some(from),
            ..
        } => add(from),
        EventBody::FollowerSyncSkipped { trigger, .. } => add(trigger),
        EventBody::OwnerChanged {
            coupled_with: Some(with),
            ..
        } => add(with),
        _ => {}
    }
    out
}

/// Where the event `id` is stored, looked for in the streams of `records` (read once per
/// answer, kept in `read`): its commit's position, its record and its type.
pub async fn find_cause(
    history: &dyn History,
    account: &AccountId,
    id: EventId,
    records: &[RecordRef],
    read: &mut HashMap<RecordRef, Vec<StoredCommit>>,
) -> Result<Option<(Position, RecordRef, &'static str)>, StoreError> {
    for record in records {
        if !read.contains_key(record) {
            let stream = StreamId::record(account.clone(), record.clone());
            let commits = history.stream(&stream).await?;
            read.insert(record.clone(), commits);
        }
        let found = read.get(record).and_then(|commits| {
            commits.iter().find_map(|c| {
                c.commit
                    .events
                    .iter()
                    .find(|e: &&Event| e.meta.event_id == id)
                    .map(|e| (c.position, record.clone(), e.body.type_name()))
            })
        });
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use followers_shared::ids::UserId;
    use followers_shared::store::{Commit, Expected, StoredCommit, StreamId};
    use followers_store::MemoryStore;

    use super::*;

    fn user(u: &str) -> UserId {
        UserId::new(u).unwrap()
    }

    /// Appends one commit of `bodies` to `stream` and returns it as stored.
    async fn append(store: &MemoryStore, stream: StreamId, bodies: Vec<EventBody>) -> StoredCommit {
        let commit = Commit::of_system(bodies);
        let before = store.read_stream(&stream).await.unwrap();
        let expected = Expected::from_version(before.last().map(|c| c.version));
        let appended = store.append(&stream, expected, &commit).await.unwrap();
        StoredCommit {
            stream,
            version: appended.version,
            position: appended.position,
            commit,
            trace: None,
        }
    }

    /// Two accounts' interleaved histories: contacts created, and an owner changed twice.
    async fn history(store: &MemoryStore) -> Vec<StoredCommit> {
        let mut out = Vec::new();
        for (n, account) in ["acme", "globex", "acme", "acme", "globex", "acme"]
            .iter()
            .enumerate()
        {
            let account: AccountId = account.parse().unwrap();
            let contact = RecordRef::Contact("c1".parse().unwrap());
            let stream = StreamId::record(account, contact.clone());
            let bodies = if out.iter().any(|c: &StoredCommit| c.stream == stream) {
                vec![EventBody::OwnerChanged {
                    record: contact,
                    from: None,
                    to: Some(user(&format!("u{n}"))),
                    coupled_with: None,
                }]
            } else {
                vec![EventBody::ContactCreated {
                    contact: "c1".parse().unwrap(),
                    owner: Some(user("ann")),
                }]
            };
            out.push(append(store, stream, bodies).await);
        }
        out
    }

    fn moment(account: &AccountId, at: u64) -> Moment {
        Moment {
            history: None,
            account: account.clone(),
            at: Position(at),
        }
    }

    fn past(store: &MemoryStore, limits: PastLimits) -> Past {
        Past::new(Arc::new(store.clone()), limits)
    }

    /// R1, R23: at every position, the past model of an account is that account in the live
    /// model at that position (the live model applies every account's commits as they come).
    #[tokio::test]
    async fn a_past_model_is_the_live_models_account_then() {
        let store = MemoryStore::new();
        let commits = history(&store).await;
        let past = past(&store, PastLimits::default());
        let acme: AccountId = "acme".parse().unwrap();
        let head = commits.last().unwrap().position;
        for at in 0..=head.0 + 1 {
            let mut live = ReadModel::with_chains(Chains::Dropped);
            for c in commits.iter().filter(|c| c.position.0 <= at) {
                live.apply(c);
            }
            let model = past.model(&moment(&acme, at)).await.unwrap();
            assert_eq!(model.account(&acme), live.account(&acme), "at {at}");
            let globex: AccountId = "globex".parse().unwrap();
            assert!(
                model.account(&globex).is_none(),
                "R1: only acme's commits are read"
            );
        }
    }

    #[tokio::test]
    async fn beyond_the_bound_is_refused_and_a_model_is_kept_for_the_next_query() {
        let store = MemoryStore::new();
        let commits = history(&store).await;
        let limits = PastLimits {
            max_commits: 3,
            ..PastLimits::default()
        };
        let past = past(&store, limits);
        let acme: AccountId = "acme".parse().unwrap();
        let head = commits.last().unwrap().position;
        // acme has 4 commits up to the head: one more than the bound.
        let refused = past.model(&moment(&acme, head.0)).await.unwrap_err();
        assert!(
            matches!(refused, PastError::TooMuchHistory { limit: 3, .. }),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("more than 3 commits"),
            "{refused}"
        );
        // The moment of its third commit is within it, and kept.
        let third = commits[3].position;
        let first = past.model(&moment(&acme, third.0)).await.unwrap();
        let again = past.model(&moment(&acme, third.0)).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        // Not for another history.
        let other = Moment {
            history: Some(HistoryId("other".to_owned())),
            ..moment(&acme, third.0)
        };
        let rebuilt = past.model(&other).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &rebuilt));
        // Only the last `cached` moments are kept.
        let few = Past::new(
            Arc::new(store.clone()),
            PastLimits {
                cached: 1,
                ..PastLimits::default()
            },
        );
        let a = few.model(&moment(&acme, 1)).await.unwrap();
        few.model(&moment(&acme, 2)).await.unwrap();
        let b = few.model(&moment(&acme, 1)).await.unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(a, b);
    }

    #[test]
    fn the_syncs_events_name_the_record_of_their_cause() {
        let c1 = RecordRef::Contact("c1".parse().unwrap());
        let o1 = RecordRef::Opportunity("o1".parse().unwrap());
        let added = EventBody::FollowersAdded {
            record: o1.clone(),
            followers: vec![
                followers_shared::event::AddedFollower {
                    user: user("bob"),
                    how: AddedHow::OwnerSync { from: c1.clone() },
                    until: None,
                },
                followers_shared::event::AddedFollower {
                    user: user("dee"),
                    how: AddedHow::Manual,
                    until: None,
                },
            ],
        };
        assert_eq!(cause_records(&added), vec![c1.clone()]);
        let mirrored = EventBody::OwnerChanged {
            record: o1.clone(),
            from: None,
            to: Some(user("cid")),
            coupled_with: Some(c1.clone()),
        };
        assert_eq!(cause_records(&mirrored), vec![c1]);
        let created = EventBody::ContactCreated {
            contact: "c2".parse().unwrap(),
            owner: None,
        };
        assert_eq!(cause_records(&created), Vec::<RecordRef>::new());
    }
}

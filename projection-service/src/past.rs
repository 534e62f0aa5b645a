//! Answers as of a past moment (`at_position`) and a record's own history (`record_history`),
//! read from the history rather than the live model.
//!
//! A past answer is the live answer of that moment: the account's commits up to the position
//! are read ([`EventStore::read_account`]) and folded into a fresh [`ReadModel`] with
//! [`read_model::replay_until`], the very fold of the audit tool's `at`, and the query is then
//! answered by the same function as a live one. An account's state depends on its own commits
//! alone (R1), so the other accounts' are never read.
//!
//! What bounds it (docs/protocol.md, "Past moments"; docs/performance.md):
//!
//! - at most [`PastLimits::max_commits`] commits of the account are read for one answer: a
//!   position whose replay needs more is refused `too_much_history` after reading that many,
//!   never after reading the rest;
//! - the read must end within [`PastLimits::read_timeout`], else `store_unavailable`;
//! - the last [`PastLimits::cached`] past models are kept, keyed by account and position, so
//!   the pages of one past answer, or several queries about one moment, read the history once.
//!
//! `record_history` reads the record's stream ([`EventStore::read_stream`]) and, for each
//! reaction of the follower sync on the page, the stream of the record its cause names, to say
//! where that owner change is stored.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use followers_shared::event::{Event, EventBody};
use followers_shared::ids::{AccountId, EventId};
use followers_shared::model::{AddedHow, RecordRef};
use followers_shared::read_model::{self, Chains, ReadModel};
use followers_shared::store::{
    CommitStream, EventStore, Position, StoreError, StoredCommit, StreamId,
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
}

impl Default for PastLimits {
    fn default() -> Self {
        Self {
            max_commits: MAX_PAST_COMMITS,
            read_timeout: Duration::from_secs(10),
            cached: 8,
        }
    }
}

/// The default of [`PastLimits::max_commits`]: an answer at the bound costs about what reading
/// that many commits from JetStream costs (docs/performance.md, "Past moments").
pub const MAX_PAST_COMMITS: usize = 10_000;

/// Why a past model could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PastError {
    #[error(
        "answering as of position {} needs more than {limit} commits of account \
         `{account}` to be replayed, the most one query may read; ask about an earlier position, \
         or use `followers-audit at` (docs/protocol.md, \"Past moments\")",
        .position.0
    )]
    TooMuchHistory {
        account: AccountId,
        position: Position,
        limit: usize,
    },
    #[error("reading the history of account `{account}` took more than {} ms", .limit.as_millis())]
    TimedOut { account: AccountId, limit: Duration },
    #[error("reading the history: {0}")]
    Store(#[from] StoreError),
}

/// A past model, shared by the queries that ask about its moment.
type Cached = (AccountId, Position, Arc<ReadModel>);

/// Past models, built from the history on demand.
pub struct Past {
    history: Arc<dyn History>,
    limits: PastLimits,
    cache: Mutex<VecDeque<Cached>>,
}

impl std::fmt::Debug for Past {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Past")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Past {
    pub fn new(history: Arc<dyn History>, limits: PastLimits) -> Self {
        Self {
            history,
            limits,
            cache: Mutex::new(VecDeque::new()),
        }
    }

    pub fn limits(&self) -> PastLimits {
        self.limits
    }

    pub fn history(&self) -> &dyn History {
        self.history.as_ref()
    }

    fn cached(&self, account: &AccountId, at: Position) -> Option<Arc<ReadModel>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .iter()
            .find(|(a, p, _)| a == account && *p == at)
            .map(|(_, _, m)| m.clone())
    }

    fn keep(&self, account: &AccountId, at: Position, model: Arc<ReadModel>) {
        if self.limits.cached == 0 {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.iter().any(|(a, p, _)| a == account && *p == at) {
            return;
        }
        while cache.len() >= self.limits.cached {
            cache.pop_front();
        }
        cache.push_back((account.clone(), at, model));
    }

    /// The model of `account` as of `at`: the account's commits at or before `at`, replayed.
    pub async fn model(
        &self,
        account: &AccountId,
        at: Position,
    ) -> Result<Arc<ReadModel>, PastError> {
        if let Some(model) = self.cached(account, at) {
            return Ok(model);
        }
        let read = self.read(account, at);
        let (commits, unreadable) = tokio::time::timeout(self.limits.read_timeout, read)
            .await
            .map_err(|_| PastError::TimedOut {
                account: account.clone(),
                limit: self.limits.read_timeout,
            })??;
        let model = Arc::new(read_model::replay_until(
            ReadModel::with_chains(Chains::Dropped),
            &commits,
            unreadable,
            at,
        ));
        self.keep(account, at, model.clone());
        Ok(model)
    }

    /// The account's commits at or before `at`, and the positions of those that could not be
    /// read; at most `max_commits` of them together.
    async fn read(
        &self,
        account: &AccountId,
        at: Position,
    ) -> Result<(Vec<StoredCommit>, Vec<Position>), PastError> {
        let (mut commits, mut unreadable) = (Vec::new(), Vec::new());
        let mut after = Position(0);
        // Each round reads on from `after`; a commit that cannot be read is stepped over by
        // reading on after it (a feed may end at its first error).
        'read: loop {
            let mut feed = self.history.account(account, after).await?;
            while let Some(next) = feed.next().await {
                match next {
                    Ok(c) if c.position > at => break 'read,
                    Ok(c) => commits.push(c),
                    Err(StoreError::Corrupt { position, .. }) if position > at => break 'read,
                    Err(StoreError::Corrupt { position, .. }) => {
                        unreadable.push(position);
                    }
                    Err(e) => return Err(e.into()),
                }
                if commits.len() + unreadable.len() > self.limits.max_commits {
                    return Err(PastError::TooMuchHistory {
                        account: account.clone(),
                        position: at,
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

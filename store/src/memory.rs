//! An in-memory store: the whole history in a vector, followers woken through a watch channel.
//! For tests only: nothing survives the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use followers_shared::store::{
    Appended, Commit, CommitStream, EventStore, Expected, HistoryId, Position, StoreError,
    StoredCommit, StreamId, Version,
};
use tokio::sync::watch;

#[derive(Debug, Default)]
struct Inner {
    commits: Vec<StoredCommit>,
    /// Index into `commits` of each stream's commits.
    streams: HashMap<StreamId, Vec<usize>>,
    checkpoints: HashMap<String, Position>,
}

/// A history held in memory. Positions and versions are 1-based indexes into the history.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    head: watch::Sender<Position>,
    /// A fresh identity per store: two memory stores are two histories.
    identity: HistoryId,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            head: watch::Sender::new(Position(0)),
            identity: HistoryId(format!("memory:{}", uuid::Uuid::new_v4())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn after(&self, after: Position, max: usize) -> Vec<StoredCommit> {
        let inner = self.lock();
        let start = usize::try_from(after.0).unwrap_or(usize::MAX);
        inner
            .commits
            .iter()
            .skip(start)
            .take(max)
            .cloned()
            .collect()
    }
}

impl EventStore for MemoryStore {
    async fn append(
        &self,
        stream: &StreamId,
        expected: Expected,
        commit: &Commit,
    ) -> Result<Appended, StoreError> {
        let mut inner = self.lock();
        let indexes = inner.streams.get(stream).cloned().unwrap_or_default();
        if let Some(&i) = indexes
            .iter()
            .find(|&&i| inner.commits[i].commit.command_id == commit.command_id)
        {
            let stored = &inner.commits[i];
            return Ok(Appended {
                version: stored.version,
                position: stored.position,
                already_stored: true,
                previous: None,
            });
        }
        let actual = indexes.last().map(|&i| inner.commits[i].version);
        if Expected::from_version(actual) != expected {
            return Err(StoreError::Conflict {
                stream: stream.clone(),
                expected,
                actual,
            });
        }
        let position = Position(inner.commits.len() as u64 + 1);
        let version = Version(position.0);
        inner.commits.push(StoredCommit {
            stream: stream.clone(),
            version,
            position,
            commit: commit.clone(),
            trace: None,
        });
        let index = inner.commits.len() - 1;
        inner.streams.entry(stream.clone()).or_default().push(index);
        drop(inner);
        self.head.send_replace(position);
        Ok(Appended {
            version,
            position,
            already_stored: false,
            previous: Some(Position(position.0 - 1)),
        })
    }

    async fn read_stream(&self, stream: &StreamId) -> Result<Vec<StoredCommit>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .streams
            .get(stream)
            .map(|ix| ix.iter().map(|&i| inner.commits[i].clone()).collect())
            .unwrap_or_default())
    }

    async fn read_at(&self, position: Position) -> Result<Option<StoredCommit>, StoreError> {
        let inner = self.lock();
        let index = usize::try_from(position.0)
            .ok()
            .and_then(|p| p.checked_sub(1));
        Ok(index.and_then(|i| inner.commits.get(i)).cloned())
    }

    async fn head(&self) -> Result<Position, StoreError> {
        Ok(*self.head.borrow())
    }

    async fn identity(&self) -> Result<HistoryId, StoreError> {
        Ok(self.identity.clone())
    }

    async fn follow(&self, after: Position) -> Result<CommitStream, StoreError> {
        let store = self.clone();
        let head = self.head.subscribe();
        let stream = futures::stream::unfold(
            (after, Vec::<StoredCommit>::new().into_iter()),
            move |(mut pos, mut buffered)| {
                let store = store.clone();
                let mut head = head.clone();
                async move {
                    loop {
                        if let Some(next) = buffered.next() {
                            pos = next.position;
                            return Some((Ok(next), (pos, buffered)));
                        }
                        let batch = store.after(pos, 1024);
                        if batch.is_empty() {
                            if head.wait_for(|h| *h > pos).await.is_err() {
                                return None;
                            }
                            continue;
                        }
                        buffered = batch.into_iter();
                    }
                }
            },
        );
        Ok(Box::pin(stream))
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>, StoreError> {
        Ok(self.lock().checkpoints.get(name).copied())
    }

    async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), StoreError> {
        self.lock().checkpoints.insert(name.to_owned(), position);
        Ok(())
    }
}

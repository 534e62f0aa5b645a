//! Group commit (issue 14): the commits waiting at once, published as one JetStream atomic batch.
//!
//! Why: with `sync_interval: always` the server syncs each message to disk before acknowledging
//! it, and that per-message fsync bounds how many durable commands a second a stream takes. An
//! atomic batch (nats-server 2.12+, a stream with `allow_atomic`) is stored as one, so one sync
//! covers many commits. But a batch costs the server a few milliseconds of staging: it pays only
//! when many commits wait (measured: above about 20 a batch), and only when fsync is what bounds
//! the rate (with the server's default sync, batches were slower than single publishes). So it
//! is opt-in (`--group-commit MIN`) and falls back to single publishes whenever few commits
//! wait. See docs/performance.md, "Group commit".
//!
//! - One committer task per store instance: appends hand it their message over a channel and
//!   wait for their own answer. The server commits one batch of a stream at a time, so several
//!   committers would only queue behind each other.
//! - Each round takes what is waiting, at most [`GroupCommit::max_batch`] commits and never two
//!   for one subject (the server refuses a batch that writes a subject twice with an
//!   expectation): a later commit for a subject already in the round waits for the next round.
//!   Fewer than [`GroupCommit::min_batch`] are published as single messages, concurrently, as
//!   without group commit; more as one atomic batch, whose ack gives each commit its sequence (a
//!   batch is stored in order, at consecutive sequences).
//! - The server refuses a whole batch for one wrong expectation, or for one message id it
//!   already holds (a retry of a stored commit, R24). So a batch the server refused is published
//!   again commit by commit through the single path, which tells a conflict from a retry by
//!   reading the stream: one record's conflict never fails another record's command.
//! - A stream without `allow_atomic` refuses every batch: logged once, then only single
//!   publishes for the life of the store.
//! - A batch whose ack never came (connection lost, leader changing) answers each of its
//!   appends `Unavailable`, as a lost single ack does. Their retries carry the same message ids,
//!   so a batch that was stored after all is recognised, never stored twice (R24).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use async_nats::HeaderMap;
use async_nats::header::{NATS_BATCH_COMMIT, NATS_BATCH_ID, NATS_BATCH_SEQUENCE};
use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::{self, ErrorCode, publish::PublishAck};
use bytes::Bytes;
use followers_shared::store::{Appended, Expected, Position, StoreError, StreamId, Version};
use tokio::sync::{mpsc, oneshot};

use crate::jetstream::{JetStreamStore, unavailable};

/// The most commits in one batch (the server refuses batches above its `max_batch_size`,
/// 1,000 messages by default).
pub const MAX_BATCH: usize = 256;

/// How many hand-overs may wait for the committer before new ones wait to be queued, and how
/// many appends the committer holds at most.
const QUEUE: usize = 4 * MAX_BATCH;

/// When commits are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommit {
    /// Fewer commits waiting than this are published one by one.
    pub min_batch: usize,
    /// The most commits in one batch.
    pub max_batch: usize,
}

impl GroupCommit {
    /// Batches of at least `min_batch` commits (2 to [`MAX_BATCH`]) and at most [`MAX_BATCH`].
    pub fn new(min_batch: usize) -> Self {
        Self {
            min_batch: min_batch.clamp(2, MAX_BATCH),
            max_batch: MAX_BATCH,
        }
    }
}

/// Why a batched append failed without a word from the server.
#[derive(Debug, thiserror::Error)]
pub enum GroupCommitError {
    #[error("the group committer has stopped")]
    Stopped,
    #[error("an atomic batch of {size} commits was not acknowledged")]
    Unacknowledged {
        size: usize,
        #[source]
        source: Arc<BatchError>,
    },
}

/// Publishing one atomic batch failed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("cannot send message {sequence} of the batch")]
    Staging {
        sequence: usize,
        #[source]
        source: async_nats::PublishError,
    },
    #[error("the batch's commit failed")]
    Commit(#[source] PublishError),
}

/// One commit, ready to be published.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) stream: StreamId,
    pub(crate) subject: String,
    pub(crate) expected: Expected,
    /// The commit's `Nats-Msg-Id`.
    pub(crate) message_id: String,
    /// The commit's headers, its message id and expectation included.
    pub(crate) headers: HeaderMap,
    pub(crate) payload: Bytes,
}

/// An append waiting for the committer.
#[derive(Debug)]
struct Waiting {
    outgoing: Outgoing,
    answer: oneshot::Sender<Result<Appended, StoreError>>,
}

impl Waiting {
    fn answer(self, result: Result<Appended, StoreError>) {
        // The appender may have given up waiting; the commit's fate is in the history.
        let _ = self.answer.send(result);
    }
}

/// The handle appends reach the committer task through.
#[derive(Debug, Clone)]
pub(crate) struct Committer {
    /// Appends handed over together arrive together, so they are considered in one round.
    tx: mpsc::Sender<Vec<Waiting>>,
}

impl Committer {
    /// Starts the committer task of `store`, which must not have a committer itself: the task
    /// ends when the last handle is dropped.
    pub(crate) fn start(store: JetStreamStore, settings: GroupCommit) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(commit_rounds(store, settings, rx));
        Self { tx }
    }

    /// Hands `outgoing` to the committer together and waits for each one's own answer.
    pub(crate) async fn append_all(
        &self,
        outgoing: Vec<Outgoing>,
    ) -> Vec<Result<Appended, StoreError>> {
        let (waiting, answers): (Vec<_>, Vec<_>) = outgoing
            .into_iter()
            .map(|outgoing| {
                let (answer, answered) = oneshot::channel();
                (Waiting { outgoing, answer }, answered)
            })
            .unzip();
        let sent = self.tx.send(waiting).await.is_ok();
        let mut results = Vec::with_capacity(answers.len());
        for answered in answers {
            results.push(match answered.await {
                Ok(result) if sent => result,
                _ => Err(unavailable(GroupCommitError::Stopped)),
            });
        }
        results
    }
}

/// The committer: round after round, what is waiting is published, as a batch when enough
/// commits wait and the stream allows it.
async fn commit_rounds(
    store: JetStreamStore,
    settings: GroupCommit,
    mut rx: mpsc::Receiver<Vec<Waiting>>,
) {
    let mut waiting = VecDeque::new();
    let mut batches_allowed = true;
    loop {
        if waiting.is_empty() {
            match rx.recv().await {
                Some(group) => waiting.extend(group),
                None => return,
            }
        }
        while waiting.len() < QUEUE {
            match rx.try_recv() {
                Ok(group) => waiting.extend(group),
                Err(_) => break,
            }
        }
        let round = take_round(&mut waiting, settings.max_batch, |w| {
            w.outgoing.subject.as_str()
        });
        if batches_allowed && round.len() >= settings.min_batch {
            batches_allowed = commit_batch(&store, round).await;
        } else {
            publish_each(&store, round).await;
        }
    }
}

/// Takes from `waiting`, in order, at most `max` items with distinct subjects; the others stay,
/// in order, for a later round.
fn take_round<T>(waiting: &mut VecDeque<T>, max: usize, subject: impl Fn(&T) -> &str) -> Vec<T> {
    let mut subjects = HashSet::new();
    let mut round = Vec::new();
    let mut later = VecDeque::new();
    for item in waiting.drain(..) {
        if round.len() < max && subjects.insert(subject(&item).to_owned()) {
            round.push(item);
        } else {
            later.push_back(item);
        }
    }
    *waiting = later;
    round
}

/// Publishes each commit on its own, concurrently, and answers it.
async fn publish_each(store: &JetStreamStore, round: Vec<Waiting>) {
    futures::future::join_all(round.into_iter().map(|w| async move {
        let result = store.publish_one(&w.outgoing).await;
        w.answer(result);
    }))
    .await;
}

/// Publishes `round` as one atomic batch and answers each commit. Returns whether the stream
/// still takes batches.
async fn commit_batch(store: &JetStreamStore, round: Vec<Waiting>) -> bool {
    let size = round.len();
    match publish_batch(store, &round).await {
        Ok(ack) => match first_sequence(&ack, size) {
            Some(first) => {
                for (seq, w) in (first..).zip(round) {
                    w.answer(Ok(Appended {
                        version: Version(seq),
                        position: Position(seq),
                        already_stored: false,
                        // Consecutive sequences: the commit before is the batch's previous
                        // one, or the stream's last before the batch.
                        previous: Some(Position(seq - 1)),
                    }));
                }
                true
            }
            None => {
                tracing::warn!(
                    size,
                    ?ack,
                    "a batch's ack does not match the batch; learning each commit's fate one by one"
                );
                publish_each(store, round).await;
                true
            }
        },
        Err(BatchError::Commit(e)) if refused_by_server(&e).is_some() => {
            let allowed = refused_by_server(&e) != Some(ErrorCode::ATOMIC_PUBLISH_DISABLED);
            if allowed {
                tracing::debug!(size, error = %e, "the server refused a batch; publishing its commits one by one");
            } else {
                tracing::warn!(
                    error = %e,
                    "the history stream does not allow atomic batches (allow_atomic): group \
                     commit is off until restart; run the administrative step with \
                     --group-commit to allow them"
                );
            }
            publish_each(store, round).await;
            allowed
        }
        Err(e) => {
            let source = Arc::new(e);
            for w in round {
                w.answer(Err(unavailable(GroupCommitError::Unacknowledged {
                    size,
                    source: source.clone(),
                })));
            }
            true
        }
    }
}

/// Sends `round` as one atomic batch: every message but the last is staged without an ack; the
/// last commits the batch and is acknowledged for all of them.
async fn publish_batch(
    store: &JetStreamStore,
    round: &[Waiting],
) -> Result<PublishAck, BatchError> {
    let js = store.context();
    let client = js.client();
    let batch_id = uuid::Uuid::new_v4().simple().to_string();
    let Some((commit, staged)) = round.split_last() else {
        return Err(BatchError::Commit(PublishError::new(
            jetstream::context::PublishErrorKind::Other,
        )));
    };
    for (i, w) in staged.iter().enumerate() {
        let headers = batch_headers(&w.outgoing, &batch_id, i + 1);
        client
            .publish_with_headers(
                w.outgoing.subject.clone(),
                headers,
                w.outgoing.payload.clone(),
            )
            .await
            .map_err(|source| BatchError::Staging {
                sequence: i + 1,
                source,
            })?;
    }
    let mut headers = batch_headers(&commit.outgoing, &batch_id, round.len());
    headers.insert(NATS_BATCH_COMMIT, "1");
    let ack = js
        .publish_with_headers(
            commit.outgoing.subject.clone(),
            headers,
            commit.outgoing.payload.clone(),
        )
        .await
        .map_err(BatchError::Commit)?;
    ack.await.map_err(BatchError::Commit)
}

/// The commit's own headers and its place in the batch.
fn batch_headers(outgoing: &Outgoing, batch_id: &str, sequence: usize) -> HeaderMap {
    let mut headers = outgoing.headers.clone();
    headers.insert(NATS_BATCH_ID, batch_id);
    headers.insert(NATS_BATCH_SEQUENCE, sequence.to_string().as_str());
    headers
}

/// The sequence of a batch's first commit: the batch is stored in order at consecutive
/// sequences ending at the ack's. `None` when the ack does not fit a batch of `size`.
fn first_sequence(ack: &PublishAck, size: usize) -> Option<u64> {
    let size = u64::try_from(size).ok()?;
    if ack.duplicate || ack.batch_size.is_some_and(|n| n != size) {
        return None;
    }
    ack.sequence
        .checked_sub(size.checked_sub(1)?)
        .filter(|first| *first >= 1)
}

/// The server's error code when the server answered the publish with a refusal.
fn refused_by_server(e: &PublishError) -> Option<ErrorCode> {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .map(|j| j.error_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_takes_one_commit_per_subject_and_leaves_the_rest_in_order() {
        let mut waiting: VecDeque<&str> = ["a", "b", "a", "c", "b", "d"].into_iter().collect();
        let round = take_round(&mut waiting, 3, |s| *s);
        assert_eq!(round, ["a", "b", "c"]);
        assert_eq!(waiting, ["a", "b", "d"]);
        let round = take_round(&mut waiting, 3, |s| *s);
        assert_eq!(round, ["a", "b", "d"]);
        assert!(waiting.is_empty());
    }

    fn ack(sequence: u64, batch_size: Option<u64>) -> PublishAck {
        PublishAck {
            stream: "S".to_owned(),
            sequence,
            domain: String::new(),
            duplicate: false,
            value: None,
            batch_id: Some("b".to_owned()),
            batch_size,
        }
    }

    #[test]
    fn a_batch_ends_at_its_acks_sequence_or_its_ack_is_not_trusted() {
        assert_eq!(first_sequence(&ack(10, Some(3)), 3), Some(8));
        assert_eq!(first_sequence(&ack(10, None), 3), Some(8));
        assert_eq!(first_sequence(&ack(10, Some(2)), 3), None);
        assert_eq!(first_sequence(&ack(2, Some(3)), 3), None);
        assert_eq!(first_sequence(&ack(0, None), 1), None);
    }
}

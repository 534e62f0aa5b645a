//! The follower sync (R7-R10): a process that follows the history and reacts to owner changes
//! with commands of its own, through the same handler as every other command.
//!
//! It reads the history with its own feed, starting at its checkpoint, so it resumes where it
//! stopped. Before reacting to a commit it waits until the live model has applied that commit;
//! the reactions themselves are [`followers_shared::sync::reactions`]. Their command ids derive
//! from the triggering event, so a reaction re-run after a crash, or by a second instance, is
//! recognised as already applied and never applied twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use followers_shared::command::Command;
use followers_shared::event::EventBody;
use followers_shared::partition::{Partition, Partitions};
use followers_shared::store::{EventStore, Position, StoredCommit};
use followers_shared::sync;
use followers_store::LiveModel;
use futures::StreamExt;
use metrics::Counter;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::handler::{CommandError, Handler};

/// The checkpoint's name in the store; in a partitioned history, followed by `.p<partition>`:
/// one per partition, so that an instance started for a partition resumes where whichever
/// instance served it before stopped.
pub const CHECKPOINT: &str = "follower-sync";

/// The checkpoints of the partitions `partitions` serves (of the whole history without them).
fn checkpoint_names(partitions: &Partitions) -> Vec<String> {
    if partitions.count.is_none() {
        return vec![CHECKPOINT.to_owned()];
    }
    partitions
        .served()
        .into_iter()
        .map(|p| checkpoint_name(Some(p)))
        .collect()
}

/// The checkpoint of one partition (of the whole history for `None`).
pub fn checkpoint_name(partition: Option<Partition>) -> String {
    match partition {
        Some(p) => format!("{CHECKPOINT}.p{p}"),
        None => CHECKPOINT.to_owned(),
    }
}

/// Save the checkpoint at least every this many commits even when nothing needed a reaction.
const CHECKPOINT_EVERY: u64 = 1000;

/// Whether a commit can cause reactions at all (most cannot: they are skipped cheaply).
fn may_trigger(commit: &StoredCommit) -> bool {
    commit.commit.events.iter().any(|e| {
        matches!(
            e.body,
            EventBody::OwnerChanged { .. }
                | EventBody::OpportunityCreated { .. }
                | EventBody::SettingsChanged { .. }
        )
    })
}

/// The last commit the sync passed, shared with the metrics (its lag).
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    /// Commits the model has applied (it follows the head of the history) that the sync has
    /// not passed yet.
    pub fn lag(&self, model: &LiveModel) -> u64 {
        model
            .position()
            .0
            .saturating_sub(self.0.load(Ordering::Relaxed))
    }

    fn set(&self, done: Position) {
        self.0.store(done.0, Ordering::Relaxed);
    }
}

/// Sets `followers_sync_lag_commits`: how far the sync of `progress` is behind `model`.
pub fn record_lag(progress: &Progress, model: &LiveModel) {
    metrics::gauge!("followers_sync_lag_commits").set(progress.lag(model) as f64);
}

/// Counts a commit or reaction the sync stepped over, by why (`followers_sync_skipped_total`).
fn skipped(reason: &'static str) -> Counter {
    metrics::counter!("followers_sync_skipped_total", "reason" => reason)
}

/// Runs the sync until `shutdown`, telling `progress` where it is.
pub async fn run<S: EventStore + Clone>(
    store: S,
    model: LiveModel,
    handler: Arc<Handler<S>>,
    progress: Progress,
    shutdown: CancellationToken,
) {
    let partitions = store.partitions();
    let Some(done) = load_checkpoints(&store, &partitions, &shutdown).await else {
        return;
    };
    tracing::info!(from = done.0, "follower sync started");
    progress.set(done);
    let mut replacements = model.replacements();
    let mut sync = Sync {
        store,
        partitions,
        model,
        handler,
        shutdown,
        done,
        since_save: 0,
        progress,
        no_trigger: skipped("no_trigger"),
    };
    let mut replaced = false;
    while !sync.shutdown.is_cancelled() {
        if std::mem::take(&mut replaced) {
            // Its positions mean nothing here any more: react to the new history from its
            // start (derived command ids make a repeat harmless).
            tracing::warn!(
                "the history was replaced; the follower sync starts again from its start"
            );
            sync.passed(Position(0));
        }
        replaced = sync.follow(&mut replacements).await == Left::Replaced;
    }
    sync.save_all(sync.done).await;
    tracing::info!(at = sync.done.0, "follower sync stopped");
}

/// Where the sync stopped last time: the earliest checkpoint of the partitions served (a
/// partition never served yet starts at the beginning; reacting again is harmless, the
/// reactions' command ids being derived). Waits while the store cannot say; `None` if shut
/// down meanwhile.
async fn load_checkpoints<S: EventStore>(
    store: &S,
    partitions: &Partitions,
    shutdown: &CancellationToken,
) -> Option<Position> {
    let mut earliest: Option<Position> = None;
    for name in checkpoint_names(partitions) {
        let at = loop {
            match store.load_checkpoint(&name).await {
                Ok(p) => break p.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(error = %e, checkpoint = name, "cannot load the follower-sync checkpoint; retrying");
                    if pause(shutdown, Duration::from_secs(1)).await {
                        return None;
                    }
                }
            }
        };
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    Some(earliest.unwrap_or_default())
}

/// The sync between two feeds of the history.
struct Sync<S> {
    store: S,
    /// The history's partitions and those this sync serves (each has its checkpoint).
    partitions: Partitions,
    model: LiveModel,
    handler: Arc<Handler<S>>,
    shutdown: CancellationToken,
    /// The last commit reacted to or passed: the next feed starts after it.
    done: Position,
    /// Commits passed since the checkpoint was last saved.
    since_save: u64,
    /// `done`, for the metrics.
    progress: Progress,
    /// Commits that cannot cause reactions.
    no_trigger: Counter,
}

/// Why a feed of the history was left.
#[derive(Debug, PartialEq, Eq)]
enum Left {
    /// The history was replaced.
    Replaced,
    /// The feed failed or ended, or the sync is shutting down.
    Ended,
}

impl<S: EventStore> Sync<S> {
    /// Every partition served is done up to `position`: the feed brings their commits in order.
    async fn save_all(&mut self, position: Position) {
        for name in checkpoint_names(&self.partitions) {
            save(&self.store, &name, position).await;
        }
        self.since_save = 0;
    }

    fn passed(&mut self, position: Position) {
        self.done = position;
        self.progress.set(position);
    }

    /// Reacts to every commit after `done`, as the history brings them, until the feed fails or
    /// ends, the history is replaced, or shutdown.
    async fn follow(&mut self, replacements: &mut watch::Receiver<u64>) -> Left {
        let mut feed = match self.store.follow(self.done).await {
            Ok(feed) => feed,
            Err(e) => {
                tracing::warn!(error = %e, "follower sync cannot read the history; retrying");
                pause(&self.shutdown, Duration::from_secs(1)).await;
                return Left::Ended;
            }
        };
        loop {
            let next = tokio::select! {
                () = self.shutdown.cancelled() => return Left::Ended,
                _ = replacements.changed() => return Left::Replaced,
                next = feed.next() => next,
            };
            let commit = match next {
                Some(Ok(commit)) => commit,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "follower sync feed failed; resuming");
                    return Left::Ended;
                }
                None => return Left::Ended,
            };
            if !self.pass(&commit).await {
                return Left::Ended;
            }
        }
    }

    /// Reacts to one commit if it may cause reactions, and moves the checkpoint past it: at
    /// once after reactions, otherwise every [`CHECKPOINT_EVERY`] commits. False if stopped by
    /// shutdown before reacting.
    async fn pass(&mut self, commit: &StoredCommit) -> bool {
        if may_trigger(commit) {
            let reacting = react(&self.model, &self.handler, commit, &self.shutdown);
            if !reacting.instrument(reaction_span(commit)).await {
                return false;
            }
            let partition = self.partitions.of(&commit.stream.account);
            save(&self.store, &checkpoint_name(partition), commit.position).await;
            self.since_save = 0;
        } else {
            self.no_trigger.increment(1);
            self.since_save += 1;
            if self.since_save >= CHECKPOINT_EVERY {
                self.save_all(commit.position).await;
            }
        }
        self.passed(commit.position);
        true
    }
}

/// The span of the reactions to `commit`, in the trace that wrote it: their commands and commits
/// join the trace of the owner change that caused them. None for a commit written outside one.
fn reaction_span(commit: &StoredCommit) -> tracing::Span {
    if commit.trace.is_none() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!("follower_sync", position = commit.position.0);
    followers_store::trace::continue_commit(&span, commit.trace.as_ref());
    span
}

/// Applies every reaction to `commit`; false if stopped by shutdown before finishing.
async fn react<S: EventStore>(
    model: &LiveModel,
    handler: &Handler<S>,
    commit: &StoredCommit,
    shutdown: &CancellationToken,
) -> bool {
    // The model must include the trigger before we decide what follows from it.
    while model
        .wait_for(commit.position, Duration::from_secs(5))
        .await
        .is_err()
    {
        if shutdown.is_cancelled() {
            return false;
        }
    }
    // A commit the model refused for its signature (`--require-signatures`) causes nothing.
    if model.refused_at(commit.position) {
        skipped("refused_commit").increment(1);
        return true;
    }
    let commands = model.read(|m| sync::reactions(m, commit, Utc::now()));
    for cmd in &commands {
        if !apply(handler, cmd, shutdown).await {
            return false;
        }
    }
    true
}

/// Applies one reaction, trying again while the store or the model is not ready or other
/// commands keep winning the race (the same command id never applies twice); a rule's refusal
/// (e.g. the record is gone) is final. False if stopped by shutdown before it was applied.
async fn apply<S: EventStore>(
    handler: &Handler<S>,
    cmd: &Command,
    shutdown: &CancellationToken,
) -> bool {
    loop {
        match handler.handle(cmd).await {
            Ok(_) => {
                metrics::counter!("followers_sync_reactions_total", "command" => cmd.body.name())
                    .increment(1);
                return true;
            }
            Err(CommandError::Refused { rule, .. }) => {
                skipped("reaction_refused").increment(1);
                tracing::warn!(
                    code = rule.code().as_str(),
                    command = cmd.body.name(),
                    "a follower-sync reaction was refused: {rule}"
                );
                return true;
            }
            Err(
                CommandError::Conflict { .. } | CommandError::Rebuilding | CommandError::Store(_),
            ) => {
                if pause(shutdown, Duration::from_millis(200)).await {
                    return false;
                }
            }
        }
    }
}

async fn save<S: EventStore>(store: &S, name: &str, position: Position) {
    if let Err(e) = store.save_checkpoint(name, position).await {
        tracing::warn!(error = %e, checkpoint = name, "cannot save the follower-sync checkpoint");
    }
}

/// Sleeps, or returns true at once if shutting down.
async fn pause(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::Ordering;
    use std::time::Instant;

    use super::*;
    use crate::handler::tests::{Appends, handler, open_account, store};

    #[tokio::test]
    async fn a_refused_reaction_is_final() {
        let store = store(Appends::DownUntil(Instant::now()));
        let (handler, stop) = handler(store.clone(), Duration::from_secs(5));
        handler.handle(&open_account()).await.unwrap();
        // A second opening is refused (the account exists): given up at once, not retried.
        let shutdown = CancellationToken::new();
        assert!(apply(&handler, &open_account(), &shutdown).await);
        assert_eq!(store.tries.load(Ordering::SeqCst), 1, "never appended");
        stop.cancel();
    }

    #[tokio::test]
    async fn a_reaction_the_store_cannot_take_is_tried_until_shutdown() {
        let store = store(Appends::Hang);
        let (handler, stop) = handler(store.clone(), Duration::from_millis(100));
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(700)).await;
                shutdown.cancel();
            }
        });
        assert!(!apply(&handler, &open_account(), &shutdown).await);
        assert!(store.tries.load(Ordering::SeqCst) >= 2, "tried again");
        stop.cancel();
    }
}

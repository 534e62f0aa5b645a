//! The follower sync (R7-R10): a process that follows the history and reacts to owner changes
//! with commands of its own, through the same handler as every other command.
//!
//! It reads the history with its own feed, starting at its checkpoint, so it resumes where it
//! stopped. Before reacting to a commit it waits until the live model has applied that commit;
//! the reactions themselves are [`followers_shared::sync::reactions`]. Their command ids derive
//! from the triggering event, so a reaction re-run after a crash, or by a second instance, is
//! recognised as already applied and never applied twice.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use followers_shared::error::ErrorCode;
use followers_shared::event::EventBody;
use followers_shared::store::{EventStore, Position, StoredCommit};
use followers_shared::sync;
use followers_store::LiveModel;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::handler::Handler;

/// The checkpoint's name in the store.
pub const CHECKPOINT: &str = "follower-sync";

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

/// Runs the sync until `shutdown`.
pub async fn run<S: EventStore + Clone>(
    store: S,
    model: LiveModel,
    handler: Arc<Handler<S>>,
    shutdown: CancellationToken,
) {
    let mut done = loop {
        match store.load_checkpoint(CHECKPOINT).await {
            Ok(p) => break p.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot load the follower-sync checkpoint; retrying");
                if pause(&shutdown, Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    };
    tracing::info!(from = done.0, "follower sync started");
    let mut since_save = 0u64;
    let mut replacements = model.replacements();
    let mut replaced = false;
    while !shutdown.is_cancelled() {
        if std::mem::take(&mut replaced) {
            // The history was replaced: its positions mean nothing here any more; react to the
            // new one from its start (derived command ids make a repeat harmless).
            tracing::warn!(
                "the history was replaced; the follower sync starts again from its start"
            );
            done = Position(0);
        }
        let mut feed = match store.follow(done).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "follower sync cannot read the history; retrying");
                if pause(&shutdown, Duration::from_secs(1)).await {
                    break;
                }
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => break,
                _ = replacements.changed() => {
                    replaced = true;
                    break;
                }
                n = feed.next() => n,
            };
            let commit = match next {
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "follower sync feed failed; resuming");
                    break;
                }
                None => break,
            };
            if may_trigger(&commit) {
                if !react(&model, &handler, &commit, &shutdown).await {
                    break;
                }
                save(&store, commit.position).await;
                since_save = 0;
            } else {
                since_save += 1;
                if since_save >= CHECKPOINT_EVERY {
                    save(&store, commit.position).await;
                    since_save = 0;
                }
            }
            done = commit.position;
        }
    }
    save(&store, done).await;
    tracing::info!(at = done.0, "follower sync stopped");
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
        return true;
    }
    let commands = model.read(|m| sync::reactions(m, commit, Utc::now()));
    for cmd in commands {
        loop {
            let reply = handler.handle(cmd.clone()).await;
            match reply.error.map(|e| e.code) {
                None => break,
                Some(
                    ErrorCode::StoreUnavailable | ErrorCode::Conflict | ErrorCode::Unavailable,
                ) => {
                    if pause(shutdown, Duration::from_millis(200)).await {
                        return false;
                    }
                }
                Some(code) => {
                    // A rule refused it (e.g. the record is gone): nothing to retry.
                    tracing::warn!(
                        code = code.as_str(),
                        command = cmd.body.name(),
                        "a follower-sync reaction was refused"
                    );
                    break;
                }
            }
        }
    }
    true
}

async fn save<S: EventStore>(store: &S, position: Position) {
    if let Err(e) = store.save_checkpoint(CHECKPOINT, position).await {
        tracing::warn!(error = %e, "cannot save the follower-sync checkpoint");
    }
}

/// Sleeps, or returns true at once if shutting down.
async fn pause(shutdown: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}

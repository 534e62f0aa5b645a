//! The expiry scheduler (issue 17.4): removes a follower when its `until` comes, through the
//! same handler as every other command, exactly once whichever instances run.
//!
//! The schedule is the live model itself: it indexes every follower's `until`, earliest first,
//! and is rebuilt from the history at start like everything else. The scheduler sleeps until
//! the earliest is due, or until the model moves (a new `until`, a changed or removed one), and
//! then sends the system's `expire_follower` command of each due expiry
//! ([`followers_shared::expiry`]). An expiry that fell due while the service was stopped is due
//! in the model loaded at start, and is sent at once.
//!
//! Exactly once: the command id is derived from the event that set the `until` and from
//! (record, user, until) ([`followers_shared::expiry::command_id`]), so a second instance
//! that sees the same expiry due, or this one after a crash, sends the same command, and the
//! handler recognises it from the history (R24); the decision appends nothing unless the user
//! still follows with that `until`.
//!
//! Why not JetStream's own message scheduling (nats-server 2.12, `AllowMsgSchedules`): the
//! schedule would be a second source of truth beside the history (a scheduled message to keep
//! in step with every later change or removal of the `until`, or to recognise as stale), the
//! EventStoreDB backend has no such thing, and it needs a stream option only the administrative
//! step could set on 2.12 or newer servers. The model already knows every `until`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use followers_shared::command::Command;
use followers_shared::expiry;
use followers_shared::read_model::Expiry;
use followers_shared::store::EventStore;
use followers_store::LiveModel;
use tokio_util::sync::CancellationToken;

use crate::handler::{CommandError, Handler};

/// At most this many expiries are sent per round; the next round follows at once.
const BATCH: usize = 100;

/// The longest sleep between two looks at the wall clock: a sleep is measured on the monotonic
/// clock, and an `until` is a wall-clock time.
const LONGEST_SLEEP: Duration = Duration::from_secs(30);

/// Runs the scheduler until `shutdown`.
pub async fn run<S: EventStore>(
    model: LiveModel,
    handler: Arc<Handler<S>>,
    shutdown: CancellationToken,
) {
    tracing::info!("follower expiry scheduler started");
    let mut updates = model.position_updates();
    // Expiries sent that the model still lists: their command appended nothing (it was
    // overtaken) or was refused. Not sent again while they are listed; forgotten once not.
    let mut done: HashSet<Expiry> = HashSet::new();
    while !shutdown.is_cancelled() {
        // Seen before the model is read: a change after this read wakes the wait below.
        updates.borrow_and_update();
        let now = Utc::now();
        let (due, next) = model.read(|m| {
            done.retain(|e| m.has_expiry(e));
            let mut due = Vec::new();
            let mut next = None;
            for e in m.expiries().filter(|e| !done.contains(e)) {
                if e.until > now {
                    next = Some(e.until);
                    break;
                }
                due.push(e.clone());
                if due.len() == BATCH {
                    break;
                }
            }
            (due, next)
        });
        if !due.is_empty() {
            for e in due {
                let cmd = expiry::command(&e, Utc::now());
                if !apply(&handler, &cmd, &shutdown).await {
                    return;
                }
                done.insert(e);
            }
            continue;
        }
        let sleep = next.map_or(LONGEST_SLEEP, |next| {
            (next - now).to_std().unwrap_or_default().min(LONGEST_SLEEP)
        });
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = updates.changed() => {}
            () = tokio::time::sleep(sleep) => {}
        }
    }
    tracing::info!("follower expiry scheduler stopped");
}

/// Sends one expiry, trying again while the store or the model is not ready or other commands
/// keep winning the race (the same command id never applies twice); a refusal is final. False
/// if stopped by shutdown first.
async fn apply<S: EventStore>(
    handler: &Handler<S>,
    cmd: &Command,
    shutdown: &CancellationToken,
) -> bool {
    loop {
        match handler.handle(cmd).await {
            Ok(applied) => {
                let outcome = if applied.events.is_empty() {
                    "unchanged"
                } else if applied.replayed {
                    "replayed"
                } else {
                    "expired"
                };
                metrics::counter!("followers_expiries_total", "outcome" => outcome).increment(1);
                return true;
            }
            Err(CommandError::Refused { rule, .. }) => {
                metrics::counter!("followers_expiries_total", "outcome" => "refused").increment(1);
                tracing::warn!(
                    code = rule.code().as_str(),
                    "a follower expiry was refused: {rule}"
                );
                return true;
            }
            Err(
                CommandError::Conflict { .. } | CommandError::Rebuilding | CommandError::Store(_),
            ) => {
                tokio::select! {
                    () = shutdown.cancelled() => return false,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Instant;

    use followers_shared::event::EventBody;
    use followers_shared::read_model::ReadModel;
    use followers_shared::store::{Position, StreamId};
    use followers_shared::wire::parse_command;
    use serde_json::{Value, json};

    use super::*;
    use crate::handler::tests::{Appends, Electing, store};

    /// An instance: a model following `store`, its handler and its scheduler.
    fn instance(store: &Electing, stop: &CancellationToken) -> (LiveModel, Arc<Handler<Electing>>) {
        let model = LiveModel::new(ReadModel::tracking_commands());
        tokio::spawn({
            let (model, store, stop) = (model.clone(), store.clone(), stop.clone());
            async move { model.follow(store, stop).await }
        });
        let handler = Arc::new(Handler::new(store.clone(), model.clone(), 4, 100));
        tokio::spawn(run(model.clone(), handler.clone(), stop.clone()));
        (model, handler)
    }

    async fn send(handler: &Handler<Electing>, name: &str, mut fields: Value) -> Position {
        fields["command_id"] = json!(uuid::Uuid::now_v7());
        fields["actor"] = json!({"kind": "system"});
        let body = serde_json::to_vec(&fields).unwrap();
        let cmd = parse_command("acme", name, &body, Utc::now()).unwrap();
        handler.handle(&cmd).await.unwrap().position
    }

    async fn expired(store: &Electing) -> usize {
        let stream = StreamId::record(
            "acme".parse().unwrap(),
            followers_shared::model::RecordRef::Contact("c1".parse().unwrap()),
        );
        store
            .read_stream(&stream)
            .await
            .unwrap()
            .iter()
            .flat_map(|c| c.commit.events.iter())
            .filter(|e| matches!(e.body, EventBody::FollowerExpired { .. }))
            .count()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_schedulers_expire_a_follower_once() {
        let store = store(Appends::DownUntil(Instant::now()));
        let stop = CancellationToken::new();
        let (model_a, a) = instance(&store, &stop);
        let (model_b, _b) = instance(&store, &stop);
        send(&a, "open_account", json!({"name": "Acme"})).await;
        let member = json!({"user": "bob", "name": "Bob", "email": "bob@example.com",
                            "role": "user", "data_scope": "all"});
        send(&a, "register_member", member).await;
        send(&a, "create_contact", json!({"contact": "c1"})).await;
        let until = Utc::now() + chrono::Duration::milliseconds(300);
        let record = json!({"kind": "contact", "id": "c1"});
        send(
            &a,
            "add_followers",
            json!({"record": record, "users": ["bob"], "until": {"bob": until}}),
        )
        .await;
        // The expiry shows in the history: bounded wait on that condition.
        let deadline = Instant::now() + Duration::from_secs(10);
        while expired(&store).await == 0 {
            assert!(Instant::now() < deadline, "never expired");
            let mut updates = model_a.position_updates();
            let _ = tokio::time::timeout(Duration::from_millis(100), updates.changed()).await;
        }
        // Both models pass a later commit: both schedulers had their go at the expiry.
        let later = send(&a, "create_contact", json!({"contact": "c2"})).await;
        for m in [&model_a, &model_b] {
            m.wait_for(later, Duration::from_secs(5)).await.unwrap();
            assert!(m.read(|m| m.next_expiry().is_none()));
        }
        assert_eq!(expired(&store).await, 1, "exactly once");
        stop.cancel();
    }
}

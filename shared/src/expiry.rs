//! Followers until a date (issue 17.4): which expiries are due, as commands, a pure function
//! of the model and the clock.
//!
//! A follower added with an `until` (or given one by `change_follower_until`) is removed by the
//! system when that time comes: a `follower_expired` event, once. The model indexes every
//! follower's `until`, earliest first ([`ReadModel::next_expiry`]); the command service's
//! scheduler waits for the earliest, and when it is due, sends the commands [`due`] returns
//! through the same handler as every other command.
//!
//! Exactly once, whichever instance runs and after any restart: each command's id is derived
//! from the expiry itself, the event that set the `until` and (record, user, until)
//! ([`command_id`]), so two instances that both see it due, or one that sends it again after a
//! crash, send the same command, which is applied once (R24): the second is recognised from the
//! history. An `until` set again to a time that already expired once (a clock behind another
//! instance's could accept it) is set by another event, so it is another expiry. And the decision
//! (`record::expire_follower`) appends nothing unless the user still follows with that very
//! `until`, so an expiry overtaken by a removal or a change does nothing.
//!
//! An expiry that fell due while every instance was stopped is in the model rebuilt at start,
//! already due: it is sent right after start-up.

use chrono::{DateTime, Utc};

use crate::command::{Command, CommandMeta, ExpireFollower};
use crate::ids::CommandId;
use crate::model::Actor;
use crate::read_model::{Expiry, ReadModel};

/// The id of the command that expires `e`: the same on every instance, every time. Derived, as
/// the follower sync's are, from the event that set the `until` and what is done, so an `until`
/// set again to the same time by a later event is another expiry.
pub fn command_id(e: &Expiry) -> CommandId {
    CommandId::derive(e.set_by, &purpose(e))
}

/// What the expiry does, as stable tokens (never from `Debug` output: an id already in some
/// history must be derived the same way for ever).
fn purpose(e: &Expiry) -> String {
    format!(
        "expire:{}:{}:{}:{}",
        e.record.kind().as_str(),
        e.record.id(),
        e.user,
        e.until.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    )
}

/// The system's command that expires `e`, sent at `now`.
pub fn command(e: &Expiry, now: DateTime<Utc>) -> Command {
    let command_id = command_id(e);
    Command {
        account: e.account.clone(),
        meta: CommandMeta {
            command_id,
            actor: Actor::System,
            caller: None,
            // One expiry, one correlation: derived like the id, so every try shares it; caused
            // by the event that set the `until`.
            correlation: command_id.0,
            causation: Some(e.set_by),
            at: now,
        },
        body: ExpireFollower {
            record: e.record.clone(),
            user: e.user.clone(),
            until: e.until,
        }
        .into(),
        dry_run: false,
    }
}

/// The commands of the expiries due at `now`, earliest first, at most `limit`.
pub fn due(model: &ReadModel, now: DateTime<Utc>, limit: usize) -> Vec<Command> {
    model
        .due_expiries(now, limit)
        .iter()
        .map(|e| command(e, now))
        .collect()
}

/// When the next expiry falls due, if any follower has an `until`.
pub fn next(model: &ReadModel) -> Option<DateTime<Utc>> {
    model.next_expiry().map(|e| e.until)
}

//! Timelines: what happened to one record (or an account's own stream), or everything one user
//! did or was given, with actor, time, command id and cause.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use followers_shared::event::{Event, EventBody};
use followers_shared::ids::{AccountId, CommandId, EventId, UserId};
use followers_shared::model::{Actor, AddedHow, RecordRef};
use followers_shared::store::{StoredCommit, StreamId};
use serde::Serialize;
use uuid::Uuid;

use crate::error::AuditError;

/// Whose timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// One aggregate's stream: a contact, an opportunity, or the account itself.
    Stream(StreamId),
    /// Everything a user did, and everything done to them or given to them, in one account or
    /// in all of them.
    User {
        user: UserId,
        account: Option<AccountId>,
    },
}

/// What triggered a command of the follower sync: the event named as its causation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    pub event_id: EventId,
    /// Where the triggering event is stored, if it is in the history read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.event, &self.stream, self.position) {
            (Some(e), Some(s), Some(p)) => write!(f, "{e} of {s} at #{p}"),
            _ => write!(f, "event {}", self.event_id),
        }
    }
}

/// One event of a timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub position: u64,
    pub stream: String,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub command_id: CommandId,
    pub correlation: Uuid,
    /// The event's type, e.g. `owner_changed`.
    pub kind: &'static str,
    /// A sentence about what happened.
    pub what: String,
    /// For reactions of the follower sync: the event that triggered them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    /// The event as stored.
    pub event: Event,
}

/// The timeline of `subject` in `commits` (the whole history, so causes can be found).
pub fn timeline(commits: &[StoredCommit], subject: &Subject) -> Result<Vec<Entry>, AuditError> {
    let index: HashMap<EventId, (u64, &StreamId, &'static str)> = commits
        .iter()
        .flat_map(|c| {
            c.commit.events.iter().map(move |e| {
                (
                    e.meta.event_id,
                    (c.position.0, &c.stream, e.body.type_name()),
                )
            })
        })
        .collect();
    let mut entries = Vec::new();
    for c in commits {
        for e in &c.commit.events {
            if !concerns(subject, c, e) {
                continue;
            }
            let cause = e.meta.causation.map(|id| {
                let found = index.get(&id);
                Cause {
                    event_id: id,
                    position: found.map(|f| f.0),
                    stream: found.map(|f| f.1.to_string()),
                    event: found.map(|f| f.2.to_owned()),
                }
            });
            entries.push(Entry {
                position: c.position.0,
                stream: c.stream.to_string(),
                at: e.meta.at,
                actor: e.meta.actor.clone(),
                command_id: e.meta.command_id,
                correlation: e.meta.correlation,
                kind: e.body.type_name(),
                what: describe(&e.body),
                cause,
                event: e.clone(),
            });
        }
    }
    if entries.is_empty() {
        return Err(AuditError::Unknown {
            what: match subject {
                Subject::Stream(s) => match s.aggregate.record() {
                    Some(r) => format!("{r} of account {}", s.account),
                    None => format!("account {}", s.account),
                },
                Subject::User { user, .. } => format!("user {user}"),
            },
        });
    }
    Ok(entries)
}

fn concerns(subject: &Subject, c: &StoredCommit, e: &Event) -> bool {
    match subject {
        Subject::Stream(s) => &c.stream == s,
        Subject::User { user, account } => {
            account.as_ref().is_none_or(|a| &c.stream.account == a)
                && (e.meta.actor.user() == Some(user) || given_to(&e.body, user))
        }
    }
}

/// Whether the event is about `user`: their membership, an ownership or a following.
fn given_to(body: &EventBody, user: &UserId) -> bool {
    match body {
        EventBody::MemberRegistered { user: u, .. }
        | EventBody::MemberRoleChanged { user: u, .. }
        | EventBody::MemberDataScopeChanged { user: u, .. }
        | EventBody::MemberDeactivated { user: u }
        | EventBody::MemberReactivated { user: u }
        | EventBody::FollowerSyncSkipped { user: u, .. }
        | EventBody::FollowerUntilChanged { user: u, .. }
        | EventBody::FollowerExpired { user: u, .. } => u == user,
        EventBody::ContactCreated { owner, .. } | EventBody::OpportunityCreated { owner, .. } => {
            owner.as_ref() == Some(user)
        }
        EventBody::OwnerChanged { from, to, .. } => {
            from.as_ref() == Some(user) || to.as_ref() == Some(user)
        }
        EventBody::FollowersAdded { followers, .. } => followers.iter().any(|f| &f.user == user),
        EventBody::FollowersRemoved { users, .. } => users.contains(user),
        EventBody::AccountOpened { .. } | EventBody::SettingsChanged { .. } => false,
    }
}

/// The snake_case name serde gives a unit enum value.
fn name(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_owned(),
    }
}

fn who(user: Option<&UserId>) -> String {
    user.map_or_else(|| "nobody".to_owned(), ToString::to_string)
}

pub fn how(how: &AddedHow) -> String {
    match how {
        AddedHow::Manual => "manually".to_owned(),
        AddedHow::Workflow { workflow } => format!("by workflow {workflow}"),
        AddedHow::OwnerSync { from } => format!("by the owner sync from {from}"),
        AddedHow::System => "by the system".to_owned(),
    }
}

fn record_label(r: &RecordRef) -> String {
    r.to_string()
}

/// A sentence about an event.
pub fn describe(body: &EventBody) -> String {
    match body {
        EventBody::FollowerUntilChanged { user, until, .. } => match until {
            Some(until) => format!("follower {user} now follows until {until}"),
            None => format!("follower {user} now follows until removed"),
        },
        EventBody::FollowerExpired { user, until, .. } => {
            format!("follower {user} expired (until {until})")
        }
        EventBody::AccountOpened { name, .. } => format!("account opened ({name})"),
        EventBody::MemberRegistered {
            user,
            role,
            data_scope,
            ..
        } => format!(
            "member {user} registered as {} with data scope {}",
            name(role),
            name(data_scope)
        ),
        EventBody::MemberRoleChanged { user, role } => {
            format!("member {user} is now {}", name(role))
        }
        EventBody::MemberDataScopeChanged { user, data_scope } => {
            format!("member {user} now has data scope {}", name(data_scope))
        }
        EventBody::MemberDeactivated { user } => format!("member {user} deactivated"),
        EventBody::MemberReactivated { user } => format!("member {user} reactivated"),
        EventBody::SettingsChanged { settings } => format!(
            "settings changed: {}",
            followers_shared::json::to_string(settings)
        ),
        EventBody::ContactCreated { contact, owner } => {
            format!("contact {contact} created, owner {}", who(owner.as_ref()))
        }
        EventBody::OpportunityCreated {
            opportunity,
            contact,
            owner,
        } => format!(
            "opportunity {opportunity} created under contact {contact}, owner {}",
            who(owner.as_ref())
        ),
        EventBody::OwnerChanged {
            from,
            to,
            coupled_with,
            ..
        } => {
            let mut s = format!("owner {} -> {}", who(from.as_ref()), who(to.as_ref()));
            if let Some(w) = coupled_with {
                s.push_str(&format!(" (coupled with {})", record_label(w)));
            }
            s
        }
        EventBody::FollowersAdded { followers, .. } => format!(
            "followers added: {}",
            followers
                .iter()
                .map(|f| match f.until {
                    Some(until) => format!("{} ({}, until {until})", f.user, how(&f.how)),
                    None => format!("{} ({})", f.user, how(&f.how)),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        EventBody::FollowersRemoved {
            users,
            owner_sync_from,
            ..
        } => {
            let users: Vec<&str> = users.iter().map(UserId::as_str).collect();
            match owner_sync_from {
                Some(from) => format!(
                    "followers removed: {} (by the owner sync from {from})",
                    users.join(", ")
                ),
                None => format!("followers removed: {}", users.join(", ")),
            }
        }
        EventBody::FollowerSyncSkipped {
            user,
            action,
            reason,
            trigger,
            ..
        } => format!(
            "owner sync did not {} {user}: {} (trigger {trigger})",
            name(action),
            name(reason)
        ),
    }
}

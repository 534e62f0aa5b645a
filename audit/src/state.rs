//! A record at a past moment: its owner, its followers and how each was added, and who could do
//! what to it and why (R23). Rebuilt with the projection's own read model and access check.

use chrono::{DateTime, Utc};
use followers_shared::access::{AccessDecision, Action};
use followers_shared::ids::{AccountId, UserId};
use followers_shared::model::{Actor, AddedHow, DataScope, RecordRef, Role};
use followers_shared::read_model::{self, ReadModel};
use followers_shared::store::{self, Position, StoredCommit, StreamId};
use serde::Serialize;

use crate::error::AuditError;
use crate::source::History;

/// A moment of the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// After the last commit stored at or before this time.
    Time(DateTime<Utc>),
    /// After the commit at this position.
    Position(Position),
}

/// When a commit was stored: the time of its events ([`StoredCommit::time`]).
pub fn commit_time(c: &StoredCommit) -> Option<DateTime<Utc>> {
    c.time()
}

/// The read model after the commits up to `moment`, and the last commit applied. Unreadable
/// commits are stepped over, as the services do. With one account's history (`--account`), the
/// model holds that account only, which is all its records' state and access depend on (R1).
pub fn replay_until(history: &History, moment: Moment) -> Result<ReadModel, AuditError> {
    let first = history.commits.first().ok_or(AuditError::EmptyHistory)?;
    let last = history.head.0;
    let limit = match moment {
        Moment::Position(p) => {
            // With one account read, where the whole history ends is not known: a position after
            // the account's last commit is answered as of that commit (nothing of the account
            // was stored between them).
            let beyond = history.account.is_none() && p.0 > last;
            if p.0 == 0 || beyond {
                return Err(AuditError::OutsideHistory {
                    asked: p.0,
                    head: last,
                });
            }
            p
        }
        Moment::Time(t) => {
            if let Some(start) = commit_time(first).filter(|start| t < *start) {
                return Err(AuditError::BeforeHistory {
                    time: t,
                    first: start,
                });
            }
            // In position order, up to the first commit stored after `t`.
            store::position_at_time(&history.commits, t)
        }
    };
    Ok(replay(history, limit))
}

/// The read model after every commit at or before `limit`.
pub fn replay(history: &History, limit: Position) -> ReadModel {
    replay_into(ReadModel::new(), history, limit)
}

/// [`replay`] onto `model` (empty): to replay as a service whose model keeps other things. The
/// fold is the services' own ([`read_model::replay_until`]).
pub fn replay_into(model: ReadModel, history: &History, limit: Position) -> ReadModel {
    let unreadable = history.unreadable.iter().map(|u| u.position);
    read_model::replay_until(model, &history.commits, unreadable, limit)
}

/// One follower as of the moment (R18).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FollowerAt {
    pub user: UserId,
    pub added_at: DateTime<Utc>,
    pub added_by: Actor,
    #[serde(flatten)]
    pub how: AddedHow,
}

/// One action's decision for one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ActionDecision {
    pub action: Action,
    #[serde(flatten)]
    pub decision: AccessDecision,
}

/// What one user could do to the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserAccess {
    pub user: UserId,
    /// `None`: not a member of the account.
    pub role: Option<Role>,
    pub data_scope: Option<DataScope>,
    pub active: Option<bool>,
    pub decisions: Vec<ActionDecision>,
}

impl UserAccess {
    pub fn decision(&self, action: Action) -> Option<AccessDecision> {
        self.decisions
            .iter()
            .find(|d| d.action == action)
            .map(|d| d.decision)
    }
}

/// A record as of a moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordAt {
    pub account: AccountId,
    pub record: RecordRef,
    /// The position of the last commit included.
    pub position: Position,
    /// The time of the last commit included.
    pub at: Option<DateTime<Utc>>,
    pub owner: Option<UserId>,
    pub followers: Vec<FollowerAt>,
    pub access: Vec<UserAccess>,
}

/// The question `at` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtQuery {
    pub account: AccountId,
    pub record: RecordRef,
    pub moment: Moment,
    /// Only this user's access; every member's when `None`.
    pub user: Option<UserId>,
}

/// The record of `query` at its moment.
pub fn record_at(history: &History, query: &AtQuery) -> Result<RecordAt, AuditError> {
    let stream = StreamId::record(query.account.clone(), query.record.clone());
    let what = format!("{} of account {}", query.record, query.account);
    let created = history
        .commits
        .iter()
        .find(|c| c.stream == stream)
        .ok_or_else(|| AuditError::Unknown { what: what.clone() })?
        .position;
    let model = replay_until(history, query.moment)?;
    let position = model.position();
    let view = model
        .followers(&query.account, &query.record)
        .ok_or(AuditError::NotYetCreated {
            what,
            position: position.0,
            created: created.0,
        })?;
    let owner = view.owner.cloned();
    let followers = view
        .followers
        .iter()
        .map(|(f, _)| FollowerAt {
            user: f.user.clone(),
            added_at: f.added_at,
            added_by: (*f.added_by).clone(),
            how: (*f.how).clone(),
        })
        .collect();
    let account = model.account(&query.account);
    let users: Vec<UserId> = match &query.user {
        Some(u) => vec![u.clone()],
        None => {
            let mut members: Vec<UserId> = account
                .map(|a| a.state.members.keys().cloned().collect())
                .unwrap_or_default();
            members.sort();
            members
        }
    };
    let access = users
        .into_iter()
        .map(|user| {
            let membership = account.and_then(|a| a.state.member(&user));
            UserAccess {
                role: membership.map(|m| m.role),
                data_scope: membership.map(|m| m.data_scope),
                active: membership.map(|m| m.active),
                decisions: Action::ALL
                    .iter()
                    .map(|&action| ActionDecision {
                        action,
                        decision: model.check(&query.account, &user, action, &query.record),
                    })
                    .collect(),
                user,
            }
        })
        .collect();
    let at = history
        .commits
        .iter()
        .take_while(|c| c.position <= position)
        .last()
        .and_then(commit_time);
    Ok(RecordAt {
        account: query.account.clone(),
        record: query.record.clone(),
        position,
        at,
        owner,
        followers,
        access,
    })
}

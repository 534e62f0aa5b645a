//! The access-change preview of a dry run (docs/protocol.md §3.17): which members would gain or
//! lose which action on which records if a command's events were appended.
//!
//! Why it can be trusted: "before" and "after" are decided by the one access rule
//! ([`crate::access::decide_access`]), over the model as it is and over the model as the events
//! would leave it. That second model is no copy: it is the model seen through the one state the
//! events change (the account's, or one record's), folded with the deciders' own `evolve` (R23).
//!
//! Why it is bounded: a command can only change the access of some members to some records, so
//! only those pairs are compared, all four actions each:
//! - a member command (`change_member_role`, `change_member_data_scope`, `deactivate_member`,
//!   `reactivate_member`): that member, on every record of the account;
//! - `change_owner`: the previous and the new owner, on the record and, for a contact, on its
//!   opportunities (R20's contact access);
//! - `change_settings`: every member, on every record.
//!
//! Other commands get no preview. Above [`MAX_PAIRS`] (member, record) pairs nothing is
//! compared: the preview says how many pairs there are. A change is a decision whose `allowed`
//! flips; a reason that changes while the answer stays is none. The preview covers the
//! command's own events, not the follower sync's follow-ups (R7-R10), which come after.

use std::borrow::Cow;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::access::{AccessDecision, Action, Holders, RecordAccess, decide_access};
use crate::account::{self, AccountState};
use crate::command::{AccountCommand, ChangeOwner, Command, CommandBody, RecordCommand};
use crate::event::Event;
use crate::ids::{ContactId, UserId};
use crate::model::RecordRef;
use crate::read_model::AccountEntry;
use crate::record::{self, RecordState};
use crate::records::Record;

/// The most changes a preview lists; `total` counts them all.
pub const MAX_CHANGES: usize = 100;

/// The most (member, record) pairs a preview compares.
pub const MAX_PAIRS: usize = 250_000;

/// One decision a command would change (R19-R21).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccessChange {
    pub user: UserId,
    pub record: RecordRef,
    pub action: Action,
    /// The decision now.
    pub before: AccessDecision,
    /// The decision once the command's events are appended.
    pub after: AccessDecision,
}

/// The access changes a command would cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccessPreview {
    /// How many (member, record) pairs the command can change the access of.
    pub pairs: usize,
    /// How many decisions change; absent when `pairs` is over the limit and none was compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<usize>,
    /// The first changes, by record, then user, then action; at most 100.
    pub changes: Vec<AccessChange>,
    /// True when `changes` does not list every change: there are more than 100, or none was
    /// compared.
    pub truncated: bool,
}

/// The access changes of `cmd`, decided against `entry` into `events`; `None` for a command
/// that has no preview.
pub fn access_changes(
    entry: &AccountEntry,
    cmd: &Command,
    events: &[Event],
) -> Option<AccessPreview> {
    access_changes_within(entry, cmd, events, MAX_PAIRS)
}

/// [`access_changes`], comparing at most `max_pairs` pairs.
pub fn access_changes_within(
    entry: &AccountEntry,
    cmd: &Command,
    events: &[Event],
    max_pairs: usize,
) -> Option<AccessPreview> {
    let scope = Scope::of(entry, &cmd.body)?;
    let pairs = scope.pairs(entry);
    if pairs > max_pairs {
        return Some(AccessPreview {
            pairs,
            total: None,
            changes: Vec::new(),
            truncated: true,
        });
    }
    let (users, records) = scope.listed(entry);
    let before = View::now(entry);
    let after = View::after(entry, &cmd.body, events);
    Some(compare(&before, &after, &users, &records, pairs))
}

/// The members and records whose access a command can change; `None`: all of the account's.
/// "All" is counted before it is listed, so that a preview over the limit costs nothing.
struct Scope {
    users: Option<Vec<UserId>>,
    records: Option<Vec<RecordRef>>,
}

impl Scope {
    fn of(entry: &AccountEntry, body: &CommandBody) -> Option<Self> {
        let member = |user: &UserId| Self {
            users: Some(vec![user.clone()]),
            records: None,
        };
        let scope = match body {
            CommandBody::Account(cmd) => match cmd {
                AccountCommand::ChangeMemberRole(c) => member(&c.user),
                AccountCommand::ChangeMemberDataScope(c) => member(&c.user),
                AccountCommand::DeactivateMember(c) => member(&c.user),
                AccountCommand::ReactivateMember(c) => member(&c.user),
                AccountCommand::ChangeSettings(_) => Self {
                    users: None,
                    records: None,
                },
                _ => return None,
            },
            CommandBody::Record(RecordCommand::ChangeOwner(c)) => owner_change(entry, c),
            _ => return None,
        };
        Some(scope)
    }

    /// How many (member, record) pairs: counted, not listed.
    fn pairs(&self, entry: &AccountEntry) -> usize {
        let users = self
            .users
            .as_ref()
            .map_or(entry.state.members.len(), Vec::len);
        let records = match &self.records {
            Some(records) => records.len(),
            None => entry.records.values().filter(Record::created).count(),
        };
        users.saturating_mul(records)
    }

    /// The members and the records, in order.
    fn listed(self, entry: &AccountEntry) -> (Vec<UserId>, Vec<RecordRef>) {
        let users = self.users.unwrap_or_else(|| all_members(entry));
        let records = self.records.unwrap_or_else(|| all_records(entry));
        (users, records)
    }
}

/// `change_owner`: the previous and the new owner, on the record and a contact's opportunities.
fn owner_change(entry: &AccountEntry, cmd: &ChangeOwner) -> Scope {
    let rec = entry.records.get(&cmd.record);
    let previous = rec.and_then(|r| r.owner().cloned());
    let mut users: Vec<UserId> = previous.into_iter().chain(cmd.owner.clone()).collect();
    users.sort();
    users.dedup();
    let opportunities = match &cmd.record {
        RecordRef::Contact(_) => rec.map(|r| r.opportunities.to_vec()).unwrap_or_default(),
        RecordRef::Opportunity(_) => Vec::new(),
    };
    let mut records = vec![cmd.record.clone()];
    records.extend(opportunities.into_iter().map(RecordRef::Opportunity));
    Scope {
        users: Some(users),
        records: Some(records),
    }
}

/// Every record of the account, in record order.
fn all_records(entry: &AccountEntry) -> Vec<RecordRef> {
    let mut records: Vec<RecordRef> = entry
        .records
        .iter()
        .filter(|(_, r)| r.created())
        .map(|(r, _)| r.clone())
        .collect();
    records.sort();
    records
}

/// Every member of the account, active or not, in user order.
fn all_members(entry: &AccountEntry) -> Vec<UserId> {
    let mut users: Vec<UserId> = entry.state.members.keys().cloned().collect();
    users.sort();
    users
}

/// The account as the access rule sees it: now, or with one state replaced by what the events
/// make of it.
struct View<'a> {
    entry: &'a AccountEntry,
    account: Cow<'a, AccountState>,
    changed: Option<(RecordRef, RecordState)>,
}

impl<'a> View<'a> {
    fn now(entry: &'a AccountEntry) -> Self {
        Self {
            entry,
            account: Cow::Borrowed(&entry.state),
            changed: None,
        }
    }

    /// The account once `events` of a command `body` are appended: its own evolve functions.
    fn after(entry: &'a AccountEntry, body: &CommandBody, events: &[Event]) -> Self {
        let mut view = Self::now(entry);
        match body {
            CommandBody::Account(_) => {
                let state = events.iter().fold(entry.state.clone(), account::evolve);
                view.account = Cow::Owned(state);
            }
            CommandBody::Record(c) => {
                if let Some(r) = c.record() {
                    let state = entry.records.get(&r).map(|e| e.state());
                    let state = events
                        .iter()
                        .fold(state.unwrap_or_default(), record::evolve);
                    view.changed = Some((r, state));
                }
            }
            CommandBody::Sync(_) => {}
        }
        view
    }

    /// A record's holders and contact as this view has them, if it was created.
    fn state(&self, record: &RecordRef) -> Option<(Holders<'_>, Option<&ContactId>)> {
        match &self.changed {
            Some((r, state)) if r == record => {
                Some((state.holders(), state.contact.as_ref())).filter(|_| state.created)
            }
            _ => {
                let rec = self.entry.records.get(record).filter(Record::created)?;
                Some((rec.holders(), rec.contact()))
            }
        }
    }

    /// What the access rule needs about `record` (as [`crate::read_model::record_access`]).
    fn access(&self, record: &RecordRef) -> Option<RecordAccess<'_>> {
        let (holders, contact) = self.state(record)?;
        let contact = contact.and_then(|c| self.state(&RecordRef::Contact(c.clone())));
        Some(RecordAccess {
            record: holders,
            contact: contact.map(|(h, _)| h),
        })
    }

    fn decide(
        &self,
        user: &UserId,
        record: Option<&RecordAccess<'_>>,
        action: Action,
    ) -> AccessDecision {
        let account = &self.account;
        decide_access(
            user,
            account.member(user),
            &account.settings,
            record,
            action,
        )
    }
}

/// The decisions of `users` on `records` that differ between `before` and `after`.
fn compare(
    before: &View<'_>,
    after: &View<'_>,
    users: &[UserId],
    records: &[RecordRef],
    pairs: usize,
) -> AccessPreview {
    let mut changes = Vec::new();
    let mut total = 0;
    for record in records {
        let (was, will) = (before.access(record), after.access(record));
        for user in users {
            for action in Action::ALL {
                let b = before.decide(user, was.as_ref(), action);
                let a = after.decide(user, will.as_ref(), action);
                if a.allowed == b.allowed {
                    continue;
                }
                total += 1;
                if changes.len() < MAX_CHANGES {
                    changes.push(AccessChange {
                        user: user.clone(),
                        record: record.clone(),
                        action,
                        before: b,
                        after: a,
                    });
                }
            }
        }
    }
    AccessPreview {
        pairs,
        total: Some(total),
        truncated: total > changes.len(),
        changes,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::model::{DataScope, Membership, Role};
    use crate::read_model::RecordEntry;

    /// An account with `members` users of scope only_assigned and `contacts` unassigned contacts.
    fn account(members: usize, contacts: usize) -> AccountEntry {
        let mut entry = AccountEntry::default();
        for i in 0..members {
            let member = Membership {
                name: format!("User {i}"),
                email: format!("u{i}@example.com"),
                role: Role::User,
                data_scope: DataScope::OnlyAssigned,
                active: true,
            };
            entry
                .state
                .members
                .insert(UserId::new(format!("u{i}")).unwrap(), member);
        }
        for i in 0..contacts {
            let mut rec = RecordEntry::default();
            rec.state.created = true;
            let contact = RecordRef::Contact(format!("c{i}").parse().unwrap());
            entry.records.insert(contact, rec);
        }
        entry
    }

    fn command(name: &str, body: serde_json::Value) -> Command {
        let mut body = body;
        body["command_id"] = serde_json::json!(uuid::Uuid::now_v7());
        body["actor"] = serde_json::json!({"kind": "system"});
        let bytes = serde_json::to_vec(&body).unwrap();
        crate::wire::parse_command("acme", name, &bytes, chrono::Utc::now()).unwrap()
    }

    #[test]
    fn over_the_limit_nothing_is_compared_and_the_pairs_are_counted() {
        let entry = account(3, 4);
        let cmd = command(
            "change_settings",
            serde_json::json!({"allow_different_owners": true}),
        );
        let preview = access_changes_within(&entry, &cmd, &[], 11).unwrap();
        assert_eq!(
            preview,
            AccessPreview {
                pairs: 12,
                total: None,
                changes: Vec::new(),
                truncated: true
            }
        );
        let within = access_changes_within(&entry, &cmd, &[], 12).unwrap();
        assert_eq!((within.total, within.truncated), (Some(0), false));
    }

    #[test]
    fn commands_that_change_no_access_have_no_preview() {
        let entry = account(1, 1);
        let cmd = command("create_contact", serde_json::json!({"contact": "c9"}));
        assert_eq!(access_changes(&entry, &cmd, &[]), None);
    }
}

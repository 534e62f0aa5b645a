//! Who may act on a record, and what a user may act on, and why: the access rule (R19-R21)
//! asked the other way round, both ways.
//!
//! The answers must never disagree with `check_access`, so they do not restate the rule: they
//! walk the only candidates that can be allowed and ask [`access::decide_access`] about each.
//!
//! Who may act on a record ([`grantees`]):
//! Those candidates are the record's holders (its owner and followers, and its contact's for an
//! opportunity) and the members who reach records without holding them: active admins and
//! active members whose data scope is `all`. The latter are kept as an index per account
//! ([`BroadAccess`]), rebuilt on each account commit (rare beside record commits), so a page
//! costs the candidates up to it, not a scan of every member.
//!
//! Pages are in user order, so a caller pages with the last user of the previous page.
//!
//! What a user may act on ([`reachable`]): an admin may do everything to every record, and a
//! member with scope `all` everything but `change_owner` (R20); those answers name no records
//! (listing a whole account is the CRM's job) but say so with the reason. Otherwise the
//! candidates are the records the user owns or follows (the per-user index) and, while contact
//! access includes opportunities, the opportunities of the contacts among them. Pages are in
//! record order.

use std::collections::BTreeSet;
use std::ops::Bound;

use crate::access::{self, Action, Reason};
use crate::account::AccountState;
use crate::ids::UserId;
use crate::model::{DataScope, RecordRef, Role};
use crate::read_model::{AccountEntry, record_access};

/// The active members who may reach a record without holding it, in user order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadAccess {
    /// Active admins: allowed every action on every record (R20).
    admins: BTreeSet<UserId>,
    /// Active members with data scope `all` who are not admins: allowed every action but
    /// `change_owner` on every record, and `change_owner` on unassigned ones (R5, R20).
    all_data: BTreeSet<UserId>,
}

impl BroadAccess {
    /// The index of an account's memberships as they stand.
    pub fn of(account: &AccountState) -> Self {
        let mut broad = Self::default();
        for (user, m) in account.members.iter().filter(|(_, m)| m.active) {
            if m.role == Role::Admin {
                broad.admins.insert(user.clone());
            } else if m.data_scope == DataScope::All {
                broad.all_data.insert(user.clone());
            }
        }
        broad
    }

    /// The account's active admins, in user order.
    pub fn admins(&self) -> &BTreeSet<UserId> {
        &self.admins
    }
}

/// One member allowed an action, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grantee<'a> {
    pub user: &'a UserId,
    pub reason: Reason,
}

/// R19-R21 reversed: the members allowed `action` on `record`, each with the reason
/// `check_access` gives, in user order after `after`, at most `limit` of them. `None` when the
/// record does not exist.
pub fn grantees<'m: 'q, 'q>(
    entry: &'m AccountEntry,
    record: &RecordRef,
    action: Action,
    after: Option<&'q UserId>,
    limit: usize,
) -> Option<Vec<Grantee<'m>>> {
    let access = record_access(entry, record)?;
    let mut holders: BTreeSet<&UserId> = access.record.users().collect();
    holders.extend(access.contact.iter().flat_map(|c| c.users()));
    let later = move |user: &&UserId| after.is_none_or(|a| *user > a);
    let mut candidates: Vec<Box<dyn Iterator<Item = &'m UserId> + 'q>> = vec![
        Box::new(holders.into_iter().filter(later)),
        Box::new(entry.broad.admins.range(range_after(after))),
    ];
    // R5: a member with scope `all` may change only an unassigned record's owner.
    if action != Action::ChangeOwner || access.record.owner.is_none() {
        candidates.push(Box::new(entry.broad.all_data.range(range_after(after))));
    }
    let settings = entry.state.settings;
    let allowed = in_order(candidates).filter_map(|user| {
        let membership = entry.state.member(user);
        let d = access::decide_access(user, membership, &settings, Some(&access), action);
        d.allowed.then_some(Grantee {
            user,
            reason: d.reason,
        })
    });
    Some(allowed.take(limit).collect())
}

/// What a user may do `action` to: every record, with a reason, or the records listed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reachable<'a> {
    /// The user may do `action` to every record of the account, for this reason (`admin`, or
    /// `all_data` for `view`, `edit` and `manage_followers`); `records` is then empty.
    pub every_record: Option<Reason>,
    /// `change_owner` with scope `all`: every unassigned record too, for this reason (R5),
    /// besides the records listed.
    pub unassigned_records: Option<Reason>,
    /// The records the user may do `action` to, each with the reason `check_access` gives, in
    /// record order after the page's `after`.
    pub records: Vec<(&'a RecordRef, Reason)>,
}

/// R19-R21 reversed for one user: what `user` may do `action` to in the account `entry`, a
/// page of at most `limit` records after `after`.
pub fn reachable<'m>(
    entry: &'m AccountEntry,
    user: &UserId,
    action: Action,
    after: Option<&RecordRef>,
    limit: usize,
) -> Reachable<'m> {
    let Some(membership) = entry.state.member(user).filter(|m| m.active) else {
        return Reachable::default();
    };
    let everywhere = match (membership.role, membership.data_scope) {
        (Role::Admin, _) => Some(Reason::Admin),
        (_, DataScope::All) if action != Action::ChangeOwner => Some(Reason::AllData),
        _ => None,
    };
    if everywhere.is_some() {
        return Reachable {
            every_record: everywhere,
            ..Reachable::default()
        };
    }
    let settings = entry.state.settings;
    let allowed = candidates(entry, user, action, after).filter_map(|record| {
        let access = record_access(entry, record);
        let d = access::decide_access(user, Some(membership), &settings, access.as_ref(), action);
        d.allowed.then_some((record, d.reason))
    });
    Reachable {
        every_record: None,
        unassigned_records: (membership.data_scope == DataScope::All).then_some(Reason::AllData),
        records: allowed.take(limit).collect(),
    }
}

/// The records `user` may reach without a broad grant, in record order after `after`: those
/// they own or follow and, while contact access includes opportunities (and not for
/// `change_owner`, which no contact grants), the opportunities of those contacts.
fn candidates<'m>(
    entry: &'m AccountEntry,
    user: &UserId,
    action: Action,
    after: Option<&RecordRef>,
) -> impl Iterator<Item = &'m RecordRef> {
    let mut records: BTreeSet<&RecordRef> = entry.held_by(user).collect();
    if entry.state.settings.contact_access_includes_opportunities && action != Action::ChangeOwner {
        let linked = records
            .iter()
            .filter_map(|r| entry.records.get(r))
            .flat_map(|c| c.opportunities.iter())
            .filter_map(|o| {
                entry
                    .records
                    .get_key_value(&RecordRef::Opportunity(o.clone()))
            })
            .map(|(r, _)| r)
            .collect::<Vec<_>>();
        records.extend(linked);
    }
    let after = after.cloned();
    records
        .into_iter()
        .filter(move |r| after.as_ref().is_none_or(|a| *r > a))
}

fn range_after(after: Option<&UserId>) -> (Bound<&UserId>, Bound<&UserId>) {
    match after {
        Some(a) => (Bound::Excluded(a), Bound::Unbounded),
        None => (Bound::Unbounded, Bound::Unbounded),
    }
}

/// The users of several ascending sequences, ascending, each once.
fn in_order<'m: 'q, 'q>(
    sources: Vec<Box<dyn Iterator<Item = &'m UserId> + 'q>>,
) -> impl Iterator<Item = &'m UserId> + 'q {
    let mut sources: Vec<_> = sources.into_iter().map(Iterator::peekable).collect();
    std::iter::from_fn(move || {
        let next = sources.iter_mut().filter_map(|s| s.peek().copied()).min()?;
        for source in &mut sources {
            if source.peek() == Some(&next) {
                source.next();
            }
        }
        Some(next)
    })
}

//! Who may act on a record, and why: the access rule (R19-R21) asked the other way round.
//!
//! The answer must never disagree with `check_access`, so it does not restate the rule: it
//! walks the only members who can be allowed and asks [`access::decide_access`] about each.
//! Those candidates are the record's holders (its owner and followers, and its contact's for an
//! opportunity) and the members who reach records without holding them: active admins and
//! active members whose data scope is `all`. The latter are kept as an index per account
//! ([`BroadAccess`]), rebuilt on each account commit (rare beside record commits), so a page
//! costs the candidates up to it, not a scan of every member.
//!
//! Pages are in user order, so a caller pages with the last user of the previous page.

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

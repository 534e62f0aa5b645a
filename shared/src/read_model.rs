//! The read model: every aggregate's current state plus the indexes the queries need, built only
//! by applying stored commits in order with the deciders' own `evolve` functions.
//!
//! The command service decides against it, the projection service answers queries from it, and
//! the audit tool rebuilds it at any past position, so the three can never disagree (R23).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::access::{self, AccessDecision, Action, RecordAccess};
use crate::account::{self, AccountState};
use crate::event::EventBody;
use crate::grantees::{self, BroadAccess, Grantee, Reachable};
use crate::hashing::{IdHasher, IdMap};
use crate::hint::{self, AccessHint};
use crate::ids::{AccountId, CommandId, EventId, OpportunityId, UserId};
use crate::model::{Follower, Membership, RecordRef};
use crate::record::{self, RecordState};
use crate::records::{Held, Record, RecordIndex, Records};
use crate::store::{ChainValue, HistoryId, Position, StoredCommit, Version};
use crate::stored_commands::{AccountCommandsSnapshot, StoredCommands};

/// One record and where its stream stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordEntry {
    pub state: RecordState,
    pub version: Option<Version>,
    /// For a contact: its opportunities, in creation order.
    pub opportunities: Vec<OpportunityId>,
    /// The stream's hash chain value after its last commit ([`crate::store::chain_hash`]);
    /// `None` in a model that drops chain values ([`Chains::Dropped`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainValue>,
}

/// One account: its own state and its records.
#[derive(Debug, Clone, Default)]
pub struct AccountEntry {
    pub state: AccountState,
    pub version: Option<Version>,
    /// The account stream's hash chain value after its last commit (`None` when dropped).
    pub chain: Option<ChainValue>,
    pub records: Records,
    /// The records each user owns or follows ([`AccountEntry::held_by`]). Empty in a model that
    /// tracks commands: the command service's decides commands and answers no query about what a
    /// user holds, so it does not pay for this index in memory nor in each commit applied.
    by_user: IdMap<UserId, Held>,
    /// Who reaches every record without holding it ([`grantees`](crate::grantees)); derived
    /// from `state`, rebuilt on each account commit.
    pub broad: BroadAccess,
}

impl PartialEq for AccountEntry {
    /// The same states, records and index, whatever order the records were added in.
    fn eq(&self, other: &Self) -> bool {
        self.state == other.state
            && self.version == other.version
            && self.chain == other.chain
            && self.records == other.records
            && self.broad == other.broad
            && self.by_user.len() == other.by_user.len()
            && self.by_user.iter().all(|(user, held)| {
                other
                    .by_user
                    .get(user)
                    .is_some_and(|theirs| held.refs(&self.records).eq(theirs.refs(&other.records)))
            })
    }
}

impl Eq for AccountEntry {}

impl AccountEntry {
    /// The records `user` owns or follows, in record order.
    pub fn held_by<'a>(&'a self, user: &UserId) -> impl Iterator<Item = &'a RecordRef> + 'a {
        let held = self.by_user.get(user);
        held.into_iter().flat_map(|h| h.refs(&self.records))
    }

    /// Every user who owns or follows a record, with those records in record order.
    pub fn holders_index(
        &self,
    ) -> impl Iterator<Item = (&UserId, impl Iterator<Item = &RecordRef>)> {
        self.by_user
            .iter()
            .map(|(user, held)| (user, held.refs(&self.records)))
    }

    /// The state fold of an account commit: the account's own `evolve` (R23).
    fn fold_account(&mut self, stored: &StoredCommit, chains: Chains) {
        let state = std::mem::take(&mut self.state);
        self.state = stored.commit.events.iter().fold(state, account::evolve);
        self.broad = BroadAccess::of(&self.state);
        self.version = Some(stored.version);
        if chains == Chains::Kept {
            self.chain = stored.commit.chain.as_deref().map(ChainValue::of);
        }
    }

    /// The state fold of a record commit: the record's own `evolve` (R23). Returns the record's
    /// state before and after it.
    fn fold_record(
        &mut self,
        record: RecordIndex,
        stored: &StoredCommit,
        chains: Chains,
    ) -> (RecordState, RecordState) {
        let before = self.records.at(record).1.state();
        let after = stored
            .commit
            .events
            .iter()
            .fold(before.clone(), record::evolve);
        self.records.set_state(record, after.clone());
        self.records.at_mut(record).set_version(stored.version);
        if chains == Chains::Kept {
            let chain = stored.commit.chain.as_deref().map(ChainValue::of);
            self.records.set_chain(record, chain);
        }
        (before, after)
    }

    /// The index update: `record` leaves the records of those who no longer own or follow it,
    /// and joins those of who now does.
    fn index_holders(&mut self, record: RecordIndex, before: &[UserId], after: Vec<UserId>) {
        for user in before.iter().filter(|u| !after.contains(u)) {
            if let Some(held) = self.by_user.get_mut(user) {
                held.remove(record, &self.records);
                if held.is_empty() {
                    self.by_user.remove(user);
                }
            }
        }
        for user in after.into_iter().filter(|u| !before.contains(u)) {
            let held = self.by_user.entry(user).or_default();
            held.insert(record, &self.records);
        }
    }

    /// The contact links (R4): each opportunity created joins its contact's opportunities, in
    /// creation order, once.
    fn link_opportunities(&mut self, stored: &StoredCommit) {
        for event in &stored.commit.events {
            let EventBody::OpportunityCreated {
                opportunity,
                contact,
                ..
            } = &event.body
            else {
                continue;
            };
            let c = self
                .records
                .index_or_insert(&RecordRef::Contact(contact.clone()));
            self.records.at_mut(c).add_opportunity(opportunity);
        }
    }
}

/// How a user holds a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    Owner,
    Follower,
}

/// Whether a model keeps each stream's hash chain value. Whoever seals or admits the next commit
/// of a stream needs it (the command service; a reader checking signatures); a reader that only
/// answers queries does not, and each value costs a 64-character string per stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Chains {
    #[default]
    Kept,
    Dropped,
}

/// The commit a model applied last: a snapshot names it so that, before the snapshot is used,
/// the history can be asked whether it still holds that very commit at that position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitMark {
    pub command_id: CommandId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
}

impl CommitMark {
    /// Whether `stored` is the commit this mark names.
    pub fn names(&self, stored: &StoredCommit) -> bool {
        self.command_id == stored.commit.command_id && self.chain == stored.commit.chain
    }
}

/// The state of everything, as of `position`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadModel {
    accounts: IdMap<AccountId, AccountEntry>,
    position: Position,
    /// The commit at `position`; `None` when empty or when that commit could not be read.
    head: Option<CommitMark>,
    /// Kept only when asked for (the command service): where every command stored is, per
    /// account, so that a retry is recognised however late it comes (R24). A command id is a
    /// key only within its account (R1): another account may use the same id for its own
    /// command. Compact: a fingerprint of each id, confirmed against the commit
    /// ([`crate::stored_commands`]). Such a model keeps no per-user index
    /// ([`AccountEntry::held_by`] is empty).
    commands: Option<StoredCommands>,
    /// Whether the streams' chain values are kept. The head's is kept either way: it names the
    /// commit a snapshot was taken at.
    chains: Chains,
    /// Every follower with an `until`, earliest first (issue 17.4): what the expiry scheduler
    /// waits for. Derived from the records, never stored.
    expiries: BTreeSet<Expiry>,
}

/// One follower's `until` (issue 17.4), ordered by when it falls due.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expiry {
    pub until: DateTime<Utc>,
    pub account: AccountId,
    pub record: RecordRef,
    pub user: UserId,
    /// The event that set `until` ([`Follower::until_set_by`]).
    pub set_by: EventId,
}

/// The `until`s of a record's followers, each with the event that set it.
fn untils(state: &RecordState) -> Vec<(UserId, DateTime<Utc>, EventId)> {
    state
        .followers
        .iter()
        .filter_map(|f| Some((f.user.clone(), f.until?, f.until_set_by?)))
        .collect()
}

impl ReadModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty model that keeps the streams' chain values or not.
    pub fn with_chains(chains: Chains) -> Self {
        Self {
            chains,
            ..Self::default()
        }
    }

    /// Whether this model keeps the streams' chain values.
    pub fn chains(&self) -> Chains {
        self.chains
    }

    /// A model that also remembers where every command's commit is stored.
    pub fn tracking_commands() -> Self {
        Self {
            commands: Some(StoredCommands::default()),
            ..Self::default()
        }
    }

    /// An empty model that keeps what this one tracks: for rebuilding from a new history.
    pub fn emptied(&self) -> Self {
        Self {
            commands: self.commands.as_ref().map(|_| StoredCommands::default()),
            chains: self.chains,
            ..Self::default()
        }
    }

    /// The commit at [`ReadModel::position`], if known.
    pub fn head(&self) -> Option<&CommitMark> {
        self.head.as_ref()
    }

    /// The position of the last commit applied.
    pub fn position(&self) -> Position {
        self.position
    }

    pub fn account(&self, account: &AccountId) -> Option<&AccountEntry> {
        self.accounts.get(account)
    }

    pub fn accounts(&self) -> impl Iterator<Item = (&AccountId, &AccountEntry)> {
        self.accounts.iter()
    }

    /// The record as the deciders and the snapshots have it (built from the model's compact
    /// form: [`crate::records`]).
    pub fn record(&self, account: &AccountId, record: &RecordRef) -> Option<RecordEntry> {
        let rec = self.accounts.get(account)?.records.get(record)?;
        Some(rec.to_entry())
    }

    /// The earliest follower's `until` of all accounts (issue 17.4), if any follower has one.
    pub fn next_expiry(&self) -> Option<&Expiry> {
        self.expiries.first()
    }

    /// Every follower's `until`, earliest first.
    pub fn expiries(&self) -> impl Iterator<Item = &Expiry> {
        self.expiries.iter()
    }

    /// Whether some follower still has this `until`.
    pub fn has_expiry(&self, e: &Expiry) -> bool {
        self.expiries.contains(e)
    }

    /// Every follower's `until` at or before `now`, earliest first, at most `limit`.
    pub fn due_expiries(&self, now: DateTime<Utc>, limit: usize) -> Vec<Expiry> {
        self.expiries
            .iter()
            .take_while(|e| e.until <= now)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Where command `id` of `account` may be stored, if it appended: the positions of the
    /// stored commands whose id has its fingerprint (almost always none or one). Only the
    /// commit at a position says whether it is this command ([`crate::stored_commands`]).
    /// Empty in a model that does not track commands.
    pub fn command_candidates(&self, account: &AccountId, id: &CommandId) -> Vec<Position> {
        match &self.commands {
            Some(commands) => commands.candidates(account, id),
            None => Vec::new(),
        }
    }

    /// Whether this model tracks the commands stored ([`ReadModel::tracking_commands`]).
    pub fn tracks_commands(&self) -> bool {
        self.commands.is_some()
    }

    /// Applies one stored commit. Commits at or before the current position are ignored, so a
    /// commit seen twice (our own append, then the live feed) is applied once.
    pub fn apply(&mut self, stored: &StoredCommit) {
        if stored.position <= self.position {
            return;
        }
        self.position = stored.position;
        self.head = Some(CommitMark {
            command_id: stored.commit.command_id,
            chain: stored.commit.chain.clone(),
        });
        self.remember_command(stored);
        // Only a model that answers queries keeps who holds what (not the command service's).
        let indexed = !self.tracks_commands();
        let entry = self
            .accounts
            .entry(stored.stream.account.clone())
            .or_default();
        match stored.stream.aggregate.record() {
            None => entry.fold_account(stored, self.chains),
            Some(record) => {
                let index = entry.records.index_or_insert(&record);
                let (before, after) = entry.fold_record(index, stored, self.chains);
                let (until_before, until_after) = (untils(&before), untils(&after));
                let expiry = |(user, until, set_by): &(UserId, DateTime<Utc>, EventId)| Expiry {
                    until: *until,
                    account: stored.stream.account.clone(),
                    record: record.clone(),
                    user: user.clone(),
                    set_by: *set_by,
                };
                for gone in until_before.iter().filter(|u| !until_after.contains(u)) {
                    self.expiries.remove(&expiry(gone));
                }
                for new in until_after.iter().filter(|u| !until_before.contains(u)) {
                    self.expiries.insert(expiry(new));
                }
                if indexed {
                    entry.index_holders(index, &holders(&before), holders(&after));
                }
                entry.link_opportunities(stored);
            }
        }
    }

    /// R24: where the commit of each stored command is, so a late retry is still recognised.
    fn remember_command(&mut self, stored: &StoredCommit) {
        if let Some(commands) = &mut self.commands {
            commands.insert(
                &stored.stream.account,
                &stored.commit.command_id,
                stored.position,
            );
        }
    }

    /// Moves past a commit that could not be read, so waiting for it does not hang.
    pub fn skip_to(&mut self, position: Position) {
        if position > self.position {
            self.position = position;
            self.head = None;
        }
    }

    /// R19-R21: may `user` do `action` to `record` of `account`, and why.
    pub fn check(
        &self,
        account: &AccountId,
        user: &UserId,
        action: Action,
        record: &RecordRef,
    ) -> AccessDecision {
        let entry = self.accounts.get(account);
        let membership = entry.and_then(|a| a.state.member(user));
        let settings = entry.map(|a| a.state.settings).unwrap_or_default();
        let access = entry.and_then(|a| record_access(a, record));
        access::decide_access(user, membership, &settings, access.as_ref(), action)
    }

    /// [`ReadModel::check`], with how to get the access when it is denied ([`hint`]).
    pub fn check_with_hint(
        &self,
        account: &AccountId,
        user: &UserId,
        action: Action,
        record: &RecordRef,
    ) -> (AccessDecision, Option<AccessHint>) {
        let decision = self.check(account, user, action, record);
        let hint = self
            .accounts
            .get(account)
            .and_then(|entry| hint::hint(entry, action, record, decision));
        (decision, hint)
    }

    /// R19-R21 reversed: the members of `account` allowed `action` on `record`, with the
    /// reasons [`ReadModel::check`] gives, in user order after `after`, at most `limit`. `None`
    /// when the account or the record does not exist.
    pub fn grantees(
        &self,
        account: &AccountId,
        record: &RecordRef,
        action: Action,
        after: Option<&UserId>,
        limit: usize,
    ) -> Option<Vec<Grantee<'_>>> {
        grantees::grantees(self.accounts.get(account)?, record, action, after, limit)
    }

    /// R19-R21 reversed for one user: what `user` may do `action` to in `account`, a page of at
    /// most `limit` records after `after`. `None` when the account does not exist.
    pub fn reachable(
        &self,
        account: &AccountId,
        user: &UserId,
        action: Action,
        after: Option<&RecordRef>,
        limit: usize,
    ) -> Option<Reachable<'_>> {
        let entry = self.accounts.get(account)?;
        Some(grantees::reachable(entry, user, action, after, limit))
    }

    /// R18: the owner and followers of a record, with each follower's membership.
    pub fn followers(&self, account: &AccountId, record: &RecordRef) -> Option<FollowersView<'_>> {
        let entry = self.accounts.get(account)?;
        let rec = entry.records.get(record).filter(Record::created)?;
        Some(FollowersView {
            owner: rec.owner(),
            followers: rec
                .followers()
                .map(|f| {
                    let membership = entry.state.member(&f.user);
                    (f, membership)
                })
                .collect(),
        })
    }

    /// The records `user` owns or follows in `account`, in record order, after `after`.
    pub fn records_of(
        &self,
        account: &AccountId,
        user: &UserId,
        after: Option<&RecordRef>,
        limit: usize,
    ) -> Vec<(RecordRef, Relation)> {
        let Some(entry) = self.accounts.get(account) else {
            return Vec::new();
        };
        let Some(held) = entry.by_user.get(user) else {
            return Vec::new();
        };
        held.after(after, &entry.records)
            .take(limit)
            .map(|i| {
                let (r, e) = entry.records.at(i);
                let owner = e.owner() == Some(user);
                let relation = if owner {
                    Relation::Owner
                } else {
                    Relation::Follower
                };
                (r.clone(), relation)
            })
            .collect()
    }
}

/// The read model after the commits at or before `limit`, applied in position order onto
/// `model` (empty, or holding commits before the first given), stepping over the positions in
/// `unreadable` (commits that could not be read) as the services do. `commits` and `unreadable`
/// are each in position order.
///
/// This is the one fold of a past moment (R23): the audit tool's `at` and the projection's
/// answers `at_position` both call it, so a past answer is the one the live model gave then.
pub fn replay_until<'a>(
    mut model: ReadModel,
    commits: impl IntoIterator<Item = &'a StoredCommit>,
    unreadable: impl IntoIterator<Item = Position>,
    limit: Position,
) -> ReadModel {
    let mut unreadable = unreadable.into_iter().peekable();
    for c in commits.into_iter().take_while(|c| c.position <= limit) {
        while let Some(u) = unreadable.next_if(|u| *u < c.position) {
            model.skip_to(u);
        }
        model.apply(c);
    }
    for u in unreadable.take_while(|u| *u <= limit) {
        model.skip_to(u);
    }
    model
}

/// What the access rule needs about `record` within `entry`.
pub fn record_access<'a>(entry: &'a AccountEntry, record: &RecordRef) -> Option<RecordAccess<'a>> {
    let rec = entry.records.get(record).filter(Record::created)?;
    let contact = rec
        .contact_record()
        .filter(Record::created)
        .map(|c| c.holders());
    Some(RecordAccess {
        record: rec.holders(),
        contact,
    })
}

/// The owner and followers of a record, joined with their memberships. The followers are
/// built from the model's compact form ([`crate::records`]).
#[derive(Debug)]
pub struct FollowersView<'a> {
    pub owner: Option<&'a UserId>,
    pub followers: Vec<(Follower, Option<&'a Membership>)>,
}

/// Everyone who owns or follows the record.
fn holders(state: &RecordState) -> Vec<UserId> {
    let mut users: Vec<UserId> = state.followers.iter().map(|f| f.user.clone()).collect();
    if let Some(o) = &state.owner
        && !users.contains(o)
    {
        users.push(o.clone());
    }
    users
}

/// A read model frozen at a position, for a fast restart; [`crate::snapshot`] writes it to a file
/// and reads it back. The per-user index is not stored: it is derived from the records on load.
///
/// A snapshot is used only for the history it came from: it names that history (`history`)
/// and the commit at its position (`head`), and both must match the history before it is
/// loaded ([`Snapshot::fits`]). Otherwise the history is replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The identity of the history it was taken from ([`crate::store::EventStore::identity`]).
    pub history: HistoryId,
    pub position: Position,
    /// The commit at `position` (`None` at position 0).
    pub head: Option<CommitMark>,
    /// Whether the streams' chain values are in `accounts` (the model's [`Chains`]).
    pub chains: Chains,
    /// In account order.
    pub accounts: Vec<AccountSnapshot>,
    /// The command service's: where every stored command is, per account, in account order
    /// ([`crate::stored_commands`]). `None` in a snapshot of a model that does not track them
    /// (the projection's).
    pub commands: Option<Vec<AccountCommandsSnapshot>>,
}

/// Why a snapshot is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotMismatch {
    #[error("the snapshot comes from history `{snapshot}`, not from this one (`{current}`)")]
    OtherHistory {
        snapshot: HistoryId,
        current: HistoryId,
    },
    #[error("the snapshot is at position {snapshot}, beyond the history's head {head}")]
    Ahead { snapshot: u64, head: u64 },
    #[error("the history does not hold the snapshot's last commit at position {position}")]
    OtherCommit { position: u64 },
}

impl Snapshot {
    /// Whether this snapshot can be used for the history `current`, whose head is `head` and
    /// which holds `at_position` at the snapshot's position: the history's identity and the
    /// commit at the snapshot's position. (The format and the digest are the file's, checked
    /// when it is read: [`crate::snapshot::decode`].)
    pub fn fits(
        &self,
        current: &HistoryId,
        head: Position,
        at_position: Option<&StoredCommit>,
    ) -> Result<(), SnapshotMismatch> {
        if &self.history != current {
            return Err(SnapshotMismatch::OtherHistory {
                snapshot: self.history.clone(),
                current: current.clone(),
            });
        }
        if self.position > head {
            return Err(SnapshotMismatch::Ahead {
                snapshot: self.position.0,
                head: head.0,
            });
        }
        let same_commit = match (&self.head, at_position) {
            (None, None) => self.position == Position(0),
            (Some(mark), Some(stored)) => stored.position == self.position && mark.names(stored),
            _ => false,
        };
        if !same_commit {
            return Err(SnapshotMismatch::OtherCommit {
                position: self.position.0,
            });
        }
        Ok(())
    }
}

/// One account of a [`Snapshot`]: its state, and its records in the model's own compact form
/// ([`Records`]), so that a snapshot is written from them and read back into them directly, and
/// splitting or merging snapshots by account moves whole accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSnapshot {
    pub account: AccountId,
    pub state: AccountState,
    pub version: Option<Version>,
    pub chain: Option<ChainValue>,
    pub records: Records,
}

impl ReadModel {
    /// The model frozen at its position, accounts in account order (a file has its records in
    /// record order: [`crate::snapshot`]). The
    /// history's identity is left empty, for the caller who knows it to fill in. The stored
    /// commands are in it when the model tracks them (the command service's).
    pub fn to_snapshot(&self) -> Snapshot {
        let mut accounts: Vec<AccountSnapshot> = self
            .accounts
            .iter()
            .map(|(id, a)| AccountSnapshot {
                account: id.clone(),
                state: a.state.clone(),
                version: a.version,
                chain: a.chain.clone(),
                records: a.records.clone(),
            })
            .collect();
        accounts.sort_by(|x, y| x.account.cmp(&y.account));
        Snapshot {
            history: HistoryId::default(),
            position: self.position,
            head: self.head.clone(),
            chains: self.chains,
            accounts,
            commands: self.commands.as_ref().map(StoredCommands::to_snapshot),
        }
    }

    /// Rebuilds a model from a snapshot: its records moved in, the per-user index and the
    /// followers' `until`s derived from them.
    pub fn from_snapshot(snapshot: Snapshot) -> Self {
        let mut accounts =
            IdMap::with_capacity_and_hasher(snapshot.accounts.len(), IdHasher::default());
        let mut expiries = BTreeSet::new();
        // The command service's snapshot (it tracks commands) builds no per-user index.
        let indexed = snapshot.commands.is_none();
        for a in snapshot.accounts {
            for (record, user, until) in a.records.untils() {
                if let (Some(at), Some(set_by)) = (until.at, until.set_by) {
                    expiries.insert(Expiry {
                        until: at,
                        account: a.account.clone(),
                        record: record.clone(),
                        user: user.clone(),
                        set_by,
                    });
                }
            }
            accounts.insert(a.account.clone(), AccountEntry::from_snapshot(a, indexed));
        }
        ReadModel {
            accounts,
            position: snapshot.position,
            head: snapshot.head,
            commands: snapshot.commands.map(StoredCommands::from_snapshot),
            chains: snapshot.chains,
            expiries,
        }
    }
}

impl AccountEntry {
    fn from_snapshot(a: AccountSnapshot, indexed: bool) -> Self {
        AccountEntry {
            broad: BroadAccess::of(&a.state),
            by_user: if indexed {
                a.records.held_by_user()
            } else {
                IdMap::default()
            },
            state: a.state,
            version: a.version,
            chain: a.chain,
            records: a.records,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::ids::ContactId;
    use crate::model::Actor;
    use crate::store::{Commit, StreamId};

    /// A sealed history of two streams: account `acme`, and contact `c1` in it.
    fn history() -> Vec<StoredCommit> {
        let account: AccountId = "acme".parse().unwrap();
        let contact = RecordRef::Contact(ContactId::new("c1").unwrap());
        let streams = [
            StreamId::account(account.clone()),
            StreamId::record(account, contact),
        ];
        let bodies = [
            EventBody::MemberDeactivated {
                user: UserId::new("ann").unwrap(),
            },
            EventBody::ContactCreated {
                contact: ContactId::new("c1").unwrap(),
                owner: Some(UserId::new("ann").unwrap()),
            },
        ];
        streams
            .into_iter()
            .zip(bodies)
            .zip(1..)
            .map(|((stream, body), at)| {
                let meta = crate::command::CommandMeta {
                    command_id: CommandId::new(),
                    actor: Actor::System,
                    caller: None,
                    correlation: uuid::Uuid::now_v7(),
                    causation: None,
                    at: chrono::Utc::now(),
                };
                let commit = Commit::sealed(meta.command_id, meta.events(vec![body]), None);
                StoredCommit {
                    stream,
                    version: Version(1),
                    position: Position(at),
                    commit,
                    trace: None,
                }
            })
            .collect()
    }

    fn chain_values(model: &ReadModel) -> Vec<Option<String>> {
        let mut values = Vec::new();
        let hex = |c: &ChainValue| c.as_str().into_owned();
        for (_, entry) in model.accounts() {
            values.push(entry.chain.as_ref().map(hex));
            values.extend(entry.records.values().map(|r| r.chain.map(hex)));
        }
        values
    }

    /// Two accounts' commits, interleaved: `acme` and `globex` alternate.
    fn two_accounts() -> Vec<StoredCommit> {
        let mut out = Vec::new();
        for (i, name) in ["acme", "globex", "acme", "globex", "acme"]
            .iter()
            .enumerate()
        {
            let account: AccountId = name.parse().unwrap();
            let contact = ContactId::new(format!("c{i}")).unwrap();
            let meta = crate::command::CommandMeta {
                command_id: CommandId::new(),
                actor: Actor::System,
                caller: None,
                correlation: uuid::Uuid::now_v7(),
                causation: None,
                at: chrono::Utc::now(),
            };
            let body = EventBody::ContactCreated {
                contact: contact.clone(),
                owner: Some(UserId::new("ann").unwrap()),
            };
            out.push(StoredCommit {
                stream: StreamId::record(account, RecordRef::Contact(contact)),
                version: Version(1),
                position: Position(i as u64 + 1),
                commit: Commit::new(meta.command_id, meta.events(vec![body])),
                trace: None,
            });
        }
        out
    }

    /// R1, R23: one account's commits replayed up to a position give that account exactly as
    /// the whole history applied up to there has it; so do they at the head, stepping over a
    /// commit that could not be read as the services do.
    #[test]
    fn one_accounts_replay_until_a_position_is_its_state_then() {
        let history = two_accounts();
        let acme: AccountId = "acme".parse().unwrap();
        let own: Vec<&StoredCommit> = history
            .iter()
            .filter(|c| c.stream.account == acme)
            .collect();
        for at in 0..=history.len() as u64 + 1 {
            let mut live = ReadModel::with_chains(Chains::Dropped);
            for c in history.iter().take_while(|c| c.position.0 <= at) {
                live.apply(c);
            }
            let past = replay_until(
                ReadModel::with_chains(Chains::Dropped),
                own.iter().copied(),
                [],
                Position(at),
            );
            assert_eq!(past.account(&acme), live.account(&acme), "at {at}");
        }
        // An unreadable commit is stepped over: the position moves on, nothing else.
        let past = replay_until(ReadModel::new(), &history[..2], [Position(3)], Position(3));
        assert_eq!(past.position(), Position(3));
        assert_eq!(past.head(), None);
        let before = replay_until(ReadModel::new(), &history[..2], [Position(3)], Position(2));
        assert_eq!(before.position(), Position(2));
    }

    /// Issue 14: followers added by one actor the same way, on different records and in
    /// different commits, share one actor and one how.
    #[test]
    fn followers_share_their_actor_and_how_across_records() {
        let account: AccountId = "acme".parse().unwrap();
        let mut model = ReadModel::new();
        for (i, name) in ["c1", "c2"].into_iter().enumerate() {
            let contact = ContactId::new(name).unwrap();
            let record = RecordRef::Contact(contact.clone());
            let added = crate::event::AddedFollower {
                user: UserId::new("ann").unwrap(),
                how: crate::model::AddedHow::System,
                until: None,
            };
            let bodies = vec![
                EventBody::ContactCreated {
                    contact,
                    owner: None,
                },
                EventBody::FollowersAdded {
                    record: record.clone(),
                    followers: vec![added],
                },
            ];
            model.apply(&StoredCommit {
                stream: StreamId::record(account.clone(), record),
                version: Version(1),
                position: Position(i as u64 + 1),
                commit: Commit::of_system(bodies),
                trace: None,
            });
        }
        let follower = |c: &str| {
            let record = RecordRef::Contact(ContactId::new(c).unwrap());
            model.record(&account, &record).unwrap().state.followers[0].clone()
        };
        let (one, two) = (follower("c1"), follower("c2"));
        assert!(std::sync::Arc::ptr_eq(&one.added_by, &two.added_by));
        assert!(std::sync::Arc::ptr_eq(&one.how, &two.how));
    }

    #[test]
    fn a_model_dropping_chains_holds_none_and_the_command_services_holds_each() {
        let history = history();
        let mut kept = ReadModel::tracking_commands();
        let mut dropped = ReadModel::with_chains(Chains::Dropped);
        for stored in &history {
            kept.apply(stored);
            dropped.apply(stored);
        }
        let sealed: Vec<_> = history.iter().map(|s| s.commit.chain.clone()).collect();
        let mut held = chain_values(&kept);
        held.sort();
        let mut expected = sealed.clone();
        expected.sort();
        assert_eq!(held, expected);
        assert_eq!(chain_values(&dropped), vec![None, None]);
        // The head still names its commit, chain value included, for the snapshot check.
        assert_eq!(dropped.head(), kept.head());
        assert!(dropped.head().unwrap().names(&history[1]));
        let emptied = dropped.emptied();
        assert_eq!(emptied.chains(), Chains::Dropped);
    }

    /// The command service's model keeps no per-user index (nothing it decides reads it), in
    /// memory or after its snapshot; the projection's answers from it.
    #[test]
    fn only_a_model_that_answers_queries_keeps_who_holds_what() {
        let history = history();
        let mut commands = ReadModel::tracking_commands();
        let mut queries = ReadModel::with_chains(Chains::Dropped);
        for stored in &history {
            commands.apply(stored);
            queries.apply(stored);
        }
        let acme: AccountId = "acme".parse().unwrap();
        let ann = UserId::new("ann").unwrap();
        let c1 = RecordRef::Contact(ContactId::new("c1").unwrap());
        let held = |m: &ReadModel| -> Vec<RecordRef> {
            m.account(&acme).unwrap().held_by(&ann).cloned().collect()
        };
        assert_eq!(held(&queries), vec![c1.clone()]);
        assert_eq!(held(&commands), Vec::<RecordRef>::new());
        let restarted = ReadModel::from_snapshot(commands.to_snapshot());
        assert_eq!(held(&restarted), Vec::<RecordRef>::new());
        assert_eq!(restarted, commands);
        // Deciding reads the records, not the index: the same answers either way.
        assert_eq!(
            commands.check(&acme, &ann, Action::View, &c1),
            queries.check(&acme, &ann, Action::View, &c1)
        );
    }

    #[test]
    fn a_snapshot_keeps_whether_the_chains_were_dropped() {
        let mut dropped = ReadModel::with_chains(Chains::Dropped);
        for stored in &history() {
            dropped.apply(stored);
        }
        let snapshot = dropped.to_snapshot();
        assert_eq!(snapshot.chains, Chains::Dropped);
        let bytes = crate::snapshot::encode(&snapshot).unwrap();
        let back = crate::snapshot::decode(&bytes).unwrap();
        assert_eq!(back.chains, Chains::Dropped);
        assert_eq!(ReadModel::from_snapshot(back), dropped);
    }

    /// Issue 14, R24: the command service's model comes back from its snapshot with its chain
    /// values and where every stored command is; the projection's has none of them.
    #[test]
    fn a_command_services_snapshot_keeps_the_stored_commands() {
        let history = history();
        let mut model = ReadModel::tracking_commands();
        for stored in &history {
            model.apply(stored);
        }
        let bytes = crate::snapshot::encode(&model.to_snapshot()).unwrap();
        let back = ReadModel::from_snapshot(crate::snapshot::decode(&bytes).unwrap());
        assert_eq!(back, model);
        assert!(back.tracks_commands());
        let acme = &history[0].stream.account;
        let second = &history[1].commit.command_id;
        assert_eq!(back.command_candidates(acme, second), [Position(2)]);
        let projection = ReadModel::with_chains(Chains::Dropped);
        assert_eq!(projection.to_snapshot().commands, None);
    }

    #[test]
    fn a_snapshot_fits_only_its_own_history_up_to_its_commit() {
        let history = history();
        let mut model = ReadModel::new();
        for stored in &history {
            model.apply(stored);
        }
        let mut snapshot = model.to_snapshot();
        snapshot.history = HistoryId("a".to_owned());
        let a = HistoryId("a".to_owned());
        assert_eq!(snapshot.fits(&a, Position(2), Some(&history[1])), Ok(()));
        let b = HistoryId("b".to_owned());
        assert!(matches!(
            snapshot.fits(&b, Position(2), Some(&history[1])),
            Err(SnapshotMismatch::OtherHistory { .. })
        ));
        assert_eq!(
            snapshot.fits(&a, Position(1), Some(&history[0])),
            Err(SnapshotMismatch::Ahead {
                snapshot: 2,
                head: 1
            })
        );
        let mut other = history[1].clone();
        other.commit.command_id = CommandId::new();
        assert_eq!(
            snapshot.fits(&a, Position(2), Some(&other)),
            Err(SnapshotMismatch::OtherCommit { position: 2 })
        );
    }
}

//! How one account's records are stored in the read model (issue 14): densely, each record at an
//! index that never changes, with a hash table from its id to that index; per user, the indexes
//! of the records the user owns or follows, in record order; and the users and the ways followers
//! were added numbered once per account, so that a record holds small numbers, not ids.
//!
//! Why not a `HashMap<RecordRef, RecordEntry>` and a `BTreeSet<RecordRef>` per user: at a million
//! records the map's buckets (a key and an entry each, half of them empty after a growth) and
//! the sets' cloned ids cost several hundred bytes a record. Here a record costs its entry, a
//! `u32` in the hash table, and a `u32` per holder in the per-user index.
//!
//! Why number the users: an account has a few hundred members and a million records, each with
//! an owner and followers. A [`UserId`] is 24 bytes; its number in the account's [`Names`] is
//! four. The same goes for who added a follower and how ([`Source`]). The numbers stay inside
//! this module: a record is read through a [`Record`] view, which gives the ids back, and the
//! decider's [`RecordState`] is converted to and from the stored form. Two stores are compared
//! by what their records say, not by their numbers, which depend on the order things were seen.
//!
//! Records are never removed from a model (a record's stream only grows), so an index stays valid
//! for the model's life. Two stores are equal when they hold the same records, whatever order
//! they were added in (a model loaded from a snapshot and one replayed from the history).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::access::{FollowerList, Holders};
use crate::ids::{ContactId, EventId, OpportunityId, UserId};
use crate::model::{Actor, AddedHow, Follower, RecordRef};
use crate::read_model::RecordEntry;
use crate::record::RecordState;
use crate::store::Version;

/// A record's place in its account's [`Records`].
pub type RecordIndex = u32;

/// A value's number in its account's [`Names`].
pub type Number = u32;

/// Who added a follower, and how: an account has a few of these, shared by most followers.
pub type Source = (Arc<Actor>, Arc<AddedHow>);

/// Values numbered in the order first seen, each kept once.
#[derive(Debug, Clone)]
pub struct Table<T> {
    values: Vec<T>,
    numbers: HashMap<T, Number>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            numbers: HashMap::new(),
        }
    }
}

impl<T: Hash + Eq + Clone> Table<T> {
    /// The number of `value`, numbering it if it is new.
    fn number(&mut self, value: &T) -> Number {
        if let Some(&n) = self.numbers.get(value) {
            return n;
        }
        let n = Number::try_from(self.values.len()).expect("fewer than 2^32 values an account");
        self.values.push(value.clone());
        self.numbers.insert(value.clone(), n);
        n
    }

    /// The value numbered `n`, if any.
    pub fn get(&self, n: Number) -> Option<&T> {
        self.values.get(n as usize)
    }
}

/// An account's users and follower sources, numbered ([`Table`]), and its followers' `until`s.
#[derive(Debug, Clone, Default)]
pub struct Names {
    users: Table<UserId>,
    sources: Table<Source>,
    /// The `until` of each follower that has one, by record and user: few have one (issue
    /// 17.4), so a follower only says whether it does.
    untils: HashMap<(RecordIndex, Number), Until>,
}

impl Names {
    /// The user numbered `n`.
    pub fn user(&self, n: Number) -> Option<&UserId> {
        self.users.get(n)
    }

    /// `follower` of the record at `record`, as the model keeps it.
    fn store_follower(&mut self, record: RecordIndex, follower: &Follower) -> StoredFollower {
        let source = (follower.added_by.clone(), follower.how.clone());
        let user = self.users.number(&follower.user);
        let until = Until {
            at: follower.until,
            set_by: follower.until_set_by,
        };
        let has_until = until.at.is_some() || until.set_by.is_some();
        if has_until {
            self.untils.insert((record, user), until);
        }
        StoredFollower {
            user,
            source: self.sources.number(&source),
            added_at: follower.added_at,
            has_until,
        }
    }

    /// The follower `stored` of the record at `record` stands for (`None` only if its numbers
    /// are not in these tables).
    fn follower(&self, record: RecordIndex, stored: &StoredFollower) -> Option<Follower> {
        let (added_by, how) = self.sources.get(stored.source)?;
        let until = if stored.has_until {
            self.untils.get(&(record, stored.user))
        } else {
            None
        };
        Some(Follower {
            user: self.user(stored.user)?.clone(),
            added_at: stored.added_at,
            added_by: Arc::clone(added_by),
            how: Arc::clone(how),
            until: until.and_then(|u| u.at),
            until_set_by: until.and_then(|u| u.set_by),
        })
    }
}

/// One follower as the model keeps it: the user and how it was added by number; its `until`,
/// if any, is in the account's [`Names`]. 24 bytes, where a [`Follower`] takes 88.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFollower {
    user: Number,
    source: Number,
    added_at: DateTime<Utc>,
    has_until: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Until {
    at: Option<DateTime<Utc>>,
    set_by: Option<EventId>,
}

/// One record as the model keeps it: a [`RecordEntry`] with its users, sources and contact by
/// number, and no heap of its own but its followers and opportunities. Options are spelled as
/// flags beside plain numbers, which packs them: 56 bytes, where a [`RecordEntry`] takes 144.
/// Its chain value, if kept, is beside it ([`Records`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct StoredRecord {
    followers: Box<[StoredFollower]>,
    /// For a contact: its opportunities, in creation order.
    opportunities: Box<[OpportunityId]>,
    version: u64,
    owner: Number,
    /// For an opportunity: the index of its contact (R4).
    contact: RecordIndex,
    created: bool,
    has_version: bool,
    has_owner: bool,
    has_contact: bool,
}

impl StoredRecord {
    fn version(&self) -> Option<Version> {
        self.has_version.then_some(Version(self.version))
    }

    pub(crate) fn set_version(&mut self, version: Version) {
        (self.has_version, self.version) = (true, version.0);
    }

    /// Links `opportunity` to this contact, once, after the others.
    pub(crate) fn add_opportunity(&mut self, opportunity: &OpportunityId) {
        if !self.opportunities.contains(opportunity) {
            let mut all = std::mem::take(&mut self.opportunities).into_vec();
            all.push(opportunity.clone());
            self.opportunities = all.into_boxed_slice();
        }
    }
}

/// One record of a [`Records`], read with its account's names: what the decider's
/// [`RecordState`] holds, without building one unless asked ([`Record::state`]).
#[derive(Clone, Copy)]
pub struct Record<'a> {
    records: &'a Records,
    index: RecordIndex,
    stored: &'a StoredRecord,
    pub version: Option<Version>,
    /// For a contact: its opportunities, in creation order.
    pub opportunities: &'a [OpportunityId],
    /// The stream's hash chain value ([`RecordEntry::chain`]).
    pub chain: &'a Option<String>,
}

/// The chain value of a record without one.
static NO_CHAIN: Option<String> = None;

impl<'a> Record<'a> {
    pub fn created(&self) -> bool {
        self.stored.created
    }

    pub fn owner(&self) -> Option<&'a UserId> {
        let stored = self.stored;
        stored
            .has_owner
            .then(|| self.records.names.user(stored.owner))
            .flatten()
    }

    /// For an opportunity: its contact (R4).
    pub fn contact(&self) -> Option<&'a ContactId> {
        if !self.stored.has_contact {
            return None;
        }
        match self.records.slots.get(self.stored.contact as usize) {
            Some((RecordRef::Contact(c), _)) => Some(c),
            _ => None,
        }
    }

    /// The followers, in list order.
    pub fn followers(&self) -> impl Iterator<Item = Follower> + 'a {
        let (names, index) = (&self.records.names, self.index);
        let followers = self.stored.followers.iter();
        followers.filter_map(move |f| names.follower(index, f))
    }

    /// Who owns and follows the record, for the access rule.
    pub fn holders(&self) -> Holders<'a> {
        Holders {
            owner: self.owner(),
            followers: FollowerList::Numbered {
                followers: &self.stored.followers,
                names: &self.records.names,
            },
        }
    }

    /// The record's state, as the deciders have it.
    pub fn state(&self) -> RecordState {
        RecordState {
            created: self.created(),
            owner: self.owner().cloned(),
            followers: self.followers().collect(),
            contact: self.contact().cloned(),
        }
    }

    /// The record, as a snapshot has it.
    pub fn to_entry(&self) -> RecordEntry {
        RecordEntry {
            state: self.state(),
            version: self.version,
            opportunities: self.opportunities.to_vec(),
            chain: self.chain.clone(),
        }
    }
}

impl StoredFollower {
    /// The user's number ([`Names::user`]).
    pub fn user(&self) -> Number {
        self.user
    }
}

impl PartialEq for Record<'_> {
    /// The same content, whatever the numbers.
    fn eq(&self, other: &Self) -> bool {
        self.to_entry() == other.to_entry()
    }
}

impl fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_entry().fmt(f)
    }
}

/// One account's records, densely, with a map from id to index.
#[derive(Clone, Default)]
pub struct Records {
    slots: Vec<(RecordRef, StoredRecord)>,
    /// The index of each record, hashed by its id.
    index: HashTable<RecordIndex>,
    hasher: RandomState,
    names: Names,
    /// Each record's chain value, by index, up to the last one set: empty in a model that drops
    /// them ([`crate::read_model::Chains`]).
    chains: Vec<Option<String>>,
}

/// The records in the order they were added.
#[derive(Clone)]
pub struct Iter<'a> {
    records: &'a Records,
    indexes: std::ops::Range<RecordIndex>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a RecordRef, Record<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        self.records.get_at(self.indexes.next()?)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.indexes.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}

impl Records {
    /// An empty store with room for `n` records, so loading `n` never grows it.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            slots: Vec::with_capacity(n),
            index: HashTable::with_capacity(n),
            hasher: RandomState::new(),
            names: Names::default(),
            chains: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The account's users and follower sources, by number.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Where `record` is, if it is here.
    pub fn index_of(&self, record: &RecordRef) -> Option<RecordIndex> {
        let hash = self.hasher.hash_one(record);
        let slots = &self.slots;
        self.index
            .find(hash, |&i| &slots[i as usize].0 == record)
            .copied()
    }

    pub fn get(&self, record: &RecordRef) -> Option<Record<'_>> {
        self.index_of(record).map(|i| self.at(i).1)
    }

    pub fn get_key_value(&self, record: &RecordRef) -> Option<(&RecordRef, Record<'_>)> {
        self.index_of(record).map(|i| self.at(i))
    }

    pub fn contains_key(&self, record: &RecordRef) -> bool {
        self.index_of(record).is_some()
    }

    /// The record at `index`. Panics if there is none: indexes come from this store.
    pub fn at(&self, index: RecordIndex) -> (&RecordRef, Record<'_>) {
        self.get_at(index).expect("an index of this store")
    }

    /// The record at `index`, if there is one.
    fn get_at(&self, index: RecordIndex) -> Option<(&RecordRef, Record<'_>)> {
        let (r, stored) = self.slots.get(index as usize)?;
        let record = Record {
            records: self,
            index,
            stored,
            version: stored.version(),
            opportunities: &stored.opportunities,
            chain: self.chains.get(index as usize).unwrap_or(&NO_CHAIN),
        };
        Some((r, record))
    }

    /// The id of the record at `index`.
    pub fn key(&self, index: RecordIndex) -> &RecordRef {
        &self.slots[index as usize].0
    }

    pub(crate) fn at_mut(&mut self, index: RecordIndex) -> &mut StoredRecord {
        &mut self.slots[index as usize].1
    }

    /// Puts `state` in the record at `index`, numbering its users and sources, and its contact
    /// (added if it is not here yet, as [`crate::read_model`] adds it when linking).
    pub(crate) fn set_state(&mut self, index: RecordIndex, state: RecordState) {
        let contact = state
            .contact
            .map(|c| self.index_or_insert(&RecordRef::Contact(c)));
        let names = &mut self.names;
        let old = std::mem::take(&mut self.slots[index as usize].1.followers);
        for f in old.iter().filter(|f| f.has_until) {
            names.untils.remove(&(index, f.user));
        }
        let stored = &mut self.slots[index as usize].1;
        stored.created = state.created;
        stored.has_owner = state.owner.is_some();
        stored.owner = state.owner.map_or(0, |o| names.users.number(&o));
        stored.has_contact = contact.is_some();
        stored.contact = contact.unwrap_or(0);
        let followers = state.followers.iter();
        stored.followers = followers.map(|f| names.store_follower(index, f)).collect();
    }

    /// Sets the chain value of the record at `index` (`None`: it has none).
    pub(crate) fn set_chain(&mut self, index: RecordIndex, chain: Option<&String>) {
        let i = index as usize;
        if chain.is_none() && i >= self.chains.len() {
            return;
        }
        if i >= self.chains.len() {
            self.chains.resize(i + 1, None);
        }
        self.chains[i] = chain.cloned();
    }

    /// Every record, in the order they were added (not record order).
    pub fn iter(&self) -> Iter<'_> {
        let len = RecordIndex::try_from(self.slots.len()).unwrap_or(RecordIndex::MAX);
        Iter {
            records: self,
            indexes: 0..len,
        }
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &RecordRef> {
        self.slots.iter().map(|(r, _)| r)
    }

    pub fn values(&self) -> impl ExactSizeIterator<Item = Record<'_>> {
        self.iter().map(|(_, e)| e)
    }

    /// Where `record` is, added with a default entry if it is not here yet.
    pub(crate) fn index_or_insert(&mut self, record: &RecordRef) -> RecordIndex {
        match self.index_of(record) {
            Some(i) => i,
            None => self.push(record.clone(), StoredRecord::default()),
        }
    }

    /// Puts `entry` at `record`, replacing what was there; returns its index. The id is hashed
    /// once (loading a snapshot inserts every record).
    pub fn insert(&mut self, record: RecordRef, entry: RecordEntry) -> RecordIndex {
        let next =
            RecordIndex::try_from(self.slots.len()).expect("fewer than 2^32 records an account");
        let hash = self.hasher.hash_one(&record);
        let (slots, hasher) = (&self.slots, &self.hasher);
        let found = self.index.entry(
            hash,
            |&i| slots[i as usize].0 == record,
            |&i| hasher.hash_one(&slots[i as usize].0),
        );
        let index = match found {
            Entry::Occupied(o) => *o.get(),
            Entry::Vacant(v) => {
                v.insert(next);
                self.slots.push((record, StoredRecord::default()));
                next
            }
        };
        let stored = &mut self.slots[index as usize].1;
        stored.opportunities = entry.opportunities.into_boxed_slice();
        stored.has_version = false;
        if let Some(v) = entry.version {
            stored.set_version(v);
        }
        self.set_chain(index, entry.chain.as_ref());
        self.set_state(index, entry.state);
        index
    }

    /// Adds a record known not to be here.
    fn push(&mut self, record: RecordRef, entry: StoredRecord) -> RecordIndex {
        let i =
            RecordIndex::try_from(self.slots.len()).expect("fewer than 2^32 records an account");
        let hash = self.hasher.hash_one(&record);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.index
            .insert_unique(hash, i, |&j| hasher.hash_one(&slots[j as usize].0));
        self.slots.push((record, entry));
        i
    }
}

impl<'a> IntoIterator for &'a Records {
    type Item = (&'a RecordRef, Record<'a>);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl PartialEq for Records {
    /// The same records with the same content, whatever their order and numbers.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(r, e)| other.get(r) == Some(e))
    }
}

impl Eq for Records {}

impl fmt::Debug for Records {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The most indexes in one block of a [`Held`]: a full block is split in two before an insert,
/// so an insert moves at most this many and a block's vector never grows beyond it.
const BLOCK: usize = 512;

/// The records one user owns or follows, as indexes into the account's [`Records`], in record
/// order: sorted blocks of at most [`BLOCK`] indexes, each block's records before the next
/// block's. (A B-tree of depth two: about four bytes a record, where a `BTreeSet<RecordRef>` of
/// cloned ids took about fifty.) The records' ids are looked up in `records` to compare them.
#[derive(Debug, Clone, Default)]
pub struct Held {
    blocks: Vec<Vec<RecordIndex>>,
}

impl Held {
    /// The index of `indexes` (each once; any order).
    pub fn of(mut indexes: Vec<RecordIndex>, records: &Records) -> Self {
        if !indexes.is_sorted_by(|a, b| records.key(*a) < records.key(*b)) {
            indexes.sort_unstable_by(|a, b| records.key(*a).cmp(records.key(*b)));
            indexes.dedup();
        }
        Self {
            blocks: indexes.chunks(BLOCK).map(<[RecordIndex]>::to_vec).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn len(&self) -> usize {
        self.blocks.iter().map(Vec::len).sum()
    }

    /// The block `record` is in or belongs in: the first whose last record is not before it.
    fn block_of(&self, record: &RecordRef, records: &Records) -> usize {
        let i = self
            .blocks
            .partition_point(|b| b.last().is_some_and(|&last| records.key(last) < record));
        i.min(self.blocks.len().saturating_sub(1))
    }

    /// Adds the record at `index`; `false` if it was there already.
    pub(crate) fn insert(&mut self, index: RecordIndex, records: &Records) -> bool {
        let record = records.key(index);
        if self.blocks.is_empty() {
            self.blocks.push(vec![index]);
            return true;
        }
        let mut b = self.block_of(record, records);
        if self.blocks[b].len() >= BLOCK {
            // Split before inserting, so that no block's vector outgrows [`BLOCK`] indexes.
            let upper = self.blocks[b].split_off(BLOCK / 2);
            self.blocks.insert(b + 1, upper);
            b = self.block_of(record, records);
        }
        let block = &mut self.blocks[b];
        let Err(at) = block.binary_search_by(|&i| records.key(i).cmp(record)) else {
            return false;
        };
        block.insert(at, index);
        true
    }

    /// Removes the record at `index`; `false` if it was not there.
    pub(crate) fn remove(&mut self, index: RecordIndex, records: &Records) -> bool {
        let record = records.key(index);
        if self.blocks.is_empty() {
            return false;
        }
        let b = self.block_of(record, records);
        let block = &mut self.blocks[b];
        let Ok(at) = block.binary_search_by(|&i| records.key(i).cmp(record)) else {
            return false;
        };
        block.remove(at);
        if block.is_empty() {
            self.blocks.remove(b);
        }
        true
    }

    /// The indexes, in record order, of the records after `after` (all with `None`).
    pub fn after<'a>(
        &'a self,
        after: Option<&RecordRef>,
        records: &'a Records,
    ) -> impl Iterator<Item = RecordIndex> + 'a {
        let (b, at) = match after {
            None => (0, 0),
            Some(a) => {
                let b = self
                    .blocks
                    .partition_point(|b| b.last().is_some_and(|&l| records.key(l) <= a));
                let at = self
                    .blocks
                    .get(b)
                    .map_or(0, |block| block.partition_point(|&i| records.key(i) <= a));
                (b, at)
            }
        };
        let first = self.blocks.get(b).map_or(&[][..], |block| &block[at..]);
        let rest = self.blocks.get(b + 1..).unwrap_or_default();
        first.iter().chain(rest.iter().flatten()).copied()
    }

    /// The records' ids, in record order.
    pub fn refs<'a>(&'a self, records: &'a Records) -> impl Iterator<Item = &'a RecordRef> + 'a {
        self.blocks.iter().flatten().map(|&i| records.key(i))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeSet;

    use super::*;

    fn contact(i: u64) -> RecordRef {
        RecordRef::Contact(ContactId::new(format!("c-{i}")).unwrap())
    }

    /// Records added in one order and looked up; the same records in another order are equal.
    #[test]
    fn records_are_found_by_id_and_equal_whatever_the_order_they_came_in() {
        let mut a = Records::default();
        let mut b = Records::with_capacity(100);
        for i in 0..100 {
            a.index_or_insert(&contact(i));
            b.index_or_insert(&contact(99 - i));
        }
        assert_eq!(a.len(), 100);
        assert_eq!(a.index_of(&contact(7)), Some(7));
        assert_eq!(b.index_of(&contact(7)), Some(92));
        assert_eq!(a.index_or_insert(&contact(7)), 7, "added once");
        assert!(a.get(&contact(100)).is_none());
        assert_eq!(a, b);
        b.at_mut(0).set_version(crate::store::Version(1));
        assert_ne!(a, b);
    }

    fn user(name: &str) -> UserId {
        UserId::new(name).unwrap()
    }

    fn follower(name: &str, how: AddedHow, until: Option<i64>) -> Follower {
        let at = |s: i64| DateTime::from_timestamp(s, 7).unwrap();
        Follower {
            user: user(name),
            added_at: at(1_700_000_000),
            added_by: Arc::new(Actor::System),
            how: Arc::new(how),
            until: until.map(at),
            until_set_by: until.map(|_| EventId(uuid::Uuid::now_v7())),
        }
    }

    /// An opportunity of contact `c-1` with an owner and followers, one with an `until`.
    fn opportunity() -> (RecordRef, RecordEntry) {
        let state = RecordState {
            created: true,
            owner: Some(user("ann")),
            followers: vec![
                follower("bob", AddedHow::Manual, None),
                follower("cid", AddedHow::System, Some(1_800_000_000)),
            ],
            contact: Some(ContactId::new("c-1").unwrap()),
        };
        let entry = RecordEntry {
            state,
            version: Some(Version(3)),
            opportunities: Vec::new(),
            chain: Some("ab".repeat(32)),
        };
        (
            RecordRef::Opportunity(OpportunityId::new("o-1").unwrap()),
            entry,
        )
    }

    /// Issue 14: a record put in with its users by number reads back as it was put in, and
    /// equals the same record in a store that numbered its users in another order.
    #[test]
    fn a_stored_record_reads_back_as_it_was_and_compares_by_content() {
        let (o1, entry) = opportunity();
        let mut a = Records::default();
        a.insert(o1.clone(), entry.clone());
        assert_eq!(a.get(&o1).unwrap().to_entry(), entry);
        assert_eq!(a.len(), 2, "its contact is there, as linking would add it");
        let mut b = Records::default();
        let mut other = entry.clone();
        other.state.owner = Some(user("cid"));
        b.insert(o1.clone(), other);
        b.insert(contact(1), RecordEntry::default());
        assert_ne!(a, b);
        b.set_state(b.index_of(&o1).unwrap(), entry.state.clone());
        b.set_chain(b.index_of(&o1).unwrap(), entry.chain.as_ref());
        assert_eq!(a, b, "the same content, users numbered in another order");
        // A follower's `until` leaves with it.
        let mut state = entry.state.clone();
        state.followers.pop();
        a.set_state(0, state.clone());
        assert_eq!(a.get(&o1).unwrap().state(), state);
        assert!(a.names().untils.is_empty());
    }

    /// Issue 14: the sizes the module's docs and docs/performance.md count with.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_stored_record_and_follower_keep_their_size() {
        assert_eq!(std::mem::size_of::<StoredRecord>(), 56);
        assert_eq!(std::mem::size_of::<StoredFollower>(), 24);
        assert_eq!(std::mem::size_of::<(RecordRef, StoredRecord)>(), 88);
    }

    /// A user's index keeps record order through inserts and removals in any order, across
    /// block splits, and pages from any record on.
    #[test]
    fn a_users_index_is_in_record_order_across_blocks() {
        let mut records = Records::default();
        let n = 3 * BLOCK as u64;
        for i in 0..n {
            records.index_or_insert(&contact(i));
        }
        let mut held = Held::default();
        let mut expected = BTreeSet::new();
        // A fixed shuffle: multiples of a number prime to n.
        for k in 0..n {
            let i = (k * 7919) % n;
            assert!(held.insert(i as RecordIndex, &records));
            expected.insert(contact(i));
        }
        assert!(!held.insert(5, &records), "already there");
        for k in (0..n).step_by(3) {
            assert!(held.remove(k as RecordIndex, &records));
            expected.remove(&contact(k));
        }
        assert!(!held.remove(0, &records), "already gone");
        let listed: Vec<RecordRef> = held.refs(&records).cloned().collect();
        assert_eq!(listed, expected.iter().cloned().collect::<Vec<_>>());
        assert_eq!(held.len(), expected.len());
        for after in [
            contact(0),
            contact(1),
            contact(500),
            contact(n - 1),
            contact(n),
        ] {
            let page: Vec<RecordRef> = held
                .after(Some(&after), &records)
                .map(|i| records.key(i).clone())
                .collect();
            let want: Vec<RecordRef> = expected
                .range(after.clone()..)
                .filter(|r| **r != after)
                .cloned()
                .collect();
            assert_eq!(page, want, "after {after:?}");
        }
        let mut reversed: Vec<RecordIndex> = held.after(None, &records).collect();
        reversed.reverse();
        let rebuilt = Held::of(reversed, &records);
        assert!(rebuilt.refs(&records).eq(held.refs(&records)));
    }
}

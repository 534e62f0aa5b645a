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

/// An account's users and follower sources, numbered ([`Table`]).
#[derive(Debug, Clone, Default)]
pub struct Names {
    users: Table<UserId>,
    sources: Table<Source>,
}

impl Names {
    /// The user numbered `n`.
    pub fn user(&self, n: Number) -> Option<&UserId> {
        self.users.get(n)
    }

    /// `follower` as the model keeps it.
    fn store_follower(&mut self, follower: &Follower) -> StoredFollower {
        let source = (follower.added_by.clone(), follower.how.clone());
        let until = (follower.until.is_some() || follower.until_set_by.is_some()).then(|| {
            Box::new(Until {
                at: follower.until,
                set_by: follower.until_set_by,
            })
        });
        StoredFollower {
            user: self.users.number(&follower.user),
            source: self.sources.number(&source),
            added_at: follower.added_at,
            until,
        }
    }

    /// The follower `stored` stands for (`None` only if its numbers are not in these tables).
    fn follower(&self, stored: &StoredFollower) -> Option<Follower> {
        let (added_by, how) = self.sources.get(stored.source)?;
        let until = stored.until.as_deref();
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

/// One follower as the model keeps it: the user and how it was added by number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFollower {
    user: Number,
    source: Number,
    added_at: DateTime<Utc>,
    /// Boxed: few followers have an `until` (issue 17.4).
    until: Option<Box<Until>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Until {
    at: Option<DateTime<Utc>>,
    set_by: Option<EventId>,
}

/// One record as the model keeps it: a [`RecordEntry`] with its users by number.
#[derive(Debug, Clone, Default)]
pub(crate) struct StoredRecord {
    created: bool,
    owner: Option<Number>,
    followers: Box<[StoredFollower]>,
    contact: Option<ContactId>,
    pub(crate) version: Option<Version>,
    pub(crate) opportunities: Vec<OpportunityId>,
    pub(crate) chain: Option<String>,
}

impl StoredRecord {
    /// Puts `state` in, numbering its users and sources in `names`.
    fn set_state(&mut self, state: RecordState, names: &mut Names) {
        self.created = state.created;
        self.owner = state.owner.as_ref().map(|o| names.users.number(o));
        self.followers = state
            .followers
            .iter()
            .map(|f| names.store_follower(f))
            .collect();
        self.contact = state.contact;
    }

    fn of(entry: RecordEntry, names: &mut Names) -> Self {
        let mut stored = StoredRecord {
            version: entry.version,
            opportunities: entry.opportunities,
            chain: entry.chain,
            ..StoredRecord::default()
        };
        stored.set_state(entry.state, names);
        stored
    }
}

/// One record of a [`Records`], read with its account's names: what the decider's
/// [`RecordState`] holds, without building one unless asked ([`Record::state`]).
#[derive(Clone, Copy)]
pub struct Record<'a> {
    stored: &'a StoredRecord,
    names: &'a Names,
    pub version: Option<Version>,
    /// For a contact: its opportunities, in creation order.
    pub opportunities: &'a [OpportunityId],
    /// The stream's hash chain value ([`RecordEntry::chain`]).
    pub chain: &'a Option<String>,
}

impl<'a> Record<'a> {
    fn new(stored: &'a StoredRecord, names: &'a Names) -> Self {
        Self {
            stored,
            names,
            version: stored.version,
            opportunities: &stored.opportunities,
            chain: &stored.chain,
        }
    }

    pub fn created(&self) -> bool {
        self.stored.created
    }

    pub fn owner(&self) -> Option<&'a UserId> {
        self.names.user(self.stored.owner?)
    }

    /// For an opportunity: its contact (R4).
    pub fn contact(&self) -> Option<&'a ContactId> {
        self.stored.contact.as_ref()
    }

    /// The followers, in list order.
    pub fn followers(&self) -> impl Iterator<Item = Follower> + 'a {
        let names = self.names;
        self.stored
            .followers
            .iter()
            .filter_map(|f| names.follower(f))
    }

    /// Who owns and follows the record, for the access rule.
    pub fn holders(&self) -> Holders<'a> {
        Holders {
            owner: self.owner(),
            followers: FollowerList::Numbered {
                followers: &self.stored.followers,
                names: self.names,
            },
        }
    }

    /// The record's state, as the deciders have it.
    pub fn state(&self) -> RecordState {
        RecordState {
            created: self.created(),
            owner: self.owner().cloned(),
            followers: self.followers().collect(),
            contact: self.stored.contact.clone(),
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
}

/// The records in the order they were added.
#[derive(Clone)]
pub struct Iter<'a> {
    slots: std::slice::Iter<'a, (RecordRef, StoredRecord)>,
    names: &'a Names,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a RecordRef, Record<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let (r, s) = self.slots.next()?;
        Some((r, Record::new(s, self.names)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.slots.size_hint()
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
        let (r, s) = &self.slots[index as usize];
        (r, Record::new(s, &self.names))
    }

    /// The id of the record at `index`.
    pub fn key(&self, index: RecordIndex) -> &RecordRef {
        &self.slots[index as usize].0
    }

    pub(crate) fn at_mut(&mut self, index: RecordIndex) -> &mut StoredRecord {
        &mut self.slots[index as usize].1
    }

    /// Puts `state` in the record at `index`.
    pub(crate) fn set_state(&mut self, index: RecordIndex, state: RecordState) {
        let stored = &mut self.slots[index as usize].1;
        stored.set_state(state, &mut self.names);
    }

    /// Every record, in the order they were added (not record order).
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            slots: self.slots.iter(),
            names: &self.names,
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
        let entry = StoredRecord::of(entry, &mut self.names);
        let next =
            RecordIndex::try_from(self.slots.len()).expect("fewer than 2^32 records an account");
        let hash = self.hasher.hash_one(&record);
        let (slots, hasher) = (&self.slots, &self.hasher);
        let found = self.index.entry(
            hash,
            |&i| slots[i as usize].0 == record,
            |&i| hasher.hash_one(&slots[i as usize].0),
        );
        match found {
            Entry::Occupied(o) => {
                let i = *o.get();
                self.slots[i as usize].1 = entry;
                i
            }
            Entry::Vacant(v) => {
                v.insert(next);
                self.slots.push((record, entry));
                next
            }
        }
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

/// The most indexes in one block of a [`Held`]: a block is split in two beyond it, so an insert
/// moves at most this many.
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
        let b = self.block_of(record, records);
        let block = &mut self.blocks[b];
        let Err(at) = block.binary_search_by(|&i| records.key(i).cmp(record)) else {
            return false;
        };
        block.insert(at, index);
        if block.len() > BLOCK {
            let upper = block.split_off(BLOCK / 2);
            self.blocks.insert(b + 1, upper);
        }
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
    use crate::ids::ContactId;

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
        b.at_mut(0).version = Some(crate::store::Version(1));
        assert_ne!(a, b);
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

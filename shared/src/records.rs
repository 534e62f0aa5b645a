//! How one account's records are stored in the read model (issue 14): densely, each record at an
//! index that never changes, with a hash table from its id to that index; and, per user, the
//! indexes of the records the user owns or follows, in record order.
//!
//! Why not a `HashMap<RecordRef, RecordEntry>` and a `BTreeSet<RecordRef>` per user: at a million
//! records the map's buckets (a key and an entry each, half of them empty after a growth) and
//! the sets' cloned ids cost several hundred bytes a record. Here a record costs its entry, a
//! `u32` in the hash table, and a `u32` per holder in the per-user index.
//!
//! Records are never removed from a model (a record's stream only grows), so an index stays valid
//! for the model's life. Two stores are equal when they hold the same records, whatever order
//! they were added in (a model loaded from a snapshot and one replayed from the history).

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::ops::Index;
use std::sync::Arc;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::model::RecordRef;
use crate::read_model::RecordEntry;

/// A record's place in its account's [`Records`].
pub type RecordIndex = u32;

/// One account's records, densely, with a map from id to index.
#[derive(Clone, Default)]
pub struct Records {
    slots: Vec<(RecordRef, RecordEntry)>,
    /// The index of each record, hashed by its id.
    index: HashTable<RecordIndex>,
    hasher: RandomState,
}

/// The records in the order they were added.
pub type Iter<'a> = std::iter::Map<
    std::slice::Iter<'a, (RecordRef, RecordEntry)>,
    fn(&'a (RecordRef, RecordEntry)) -> (&'a RecordRef, &'a RecordEntry),
>;

impl Records {
    /// An empty store with room for `n` records, so loading `n` never grows it.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            slots: Vec::with_capacity(n),
            index: HashTable::with_capacity(n),
            hasher: RandomState::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Where `record` is, if it is here.
    pub fn index_of(&self, record: &RecordRef) -> Option<RecordIndex> {
        let hash = self.hasher.hash_one(record);
        let slots = &self.slots;
        self.index
            .find(hash, |&i| &slots[i as usize].0 == record)
            .copied()
    }

    pub fn get(&self, record: &RecordRef) -> Option<&RecordEntry> {
        self.index_of(record).map(|i| &self.slots[i as usize].1)
    }

    pub fn get_key_value(&self, record: &RecordRef) -> Option<(&RecordRef, &RecordEntry)> {
        self.index_of(record).map(|i| self.at(i))
    }

    pub fn contains_key(&self, record: &RecordRef) -> bool {
        self.index_of(record).is_some()
    }

    /// The record at `index`. Panics if there is none: indexes come from this store.
    pub fn at(&self, index: RecordIndex) -> (&RecordRef, &RecordEntry) {
        let (r, e) = &self.slots[index as usize];
        (r, e)
    }

    /// The id of the record at `index`.
    pub fn key(&self, index: RecordIndex) -> &RecordRef {
        &self.slots[index as usize].0
    }

    pub(crate) fn at_mut(&mut self, index: RecordIndex) -> &mut RecordEntry {
        &mut self.slots[index as usize].1
    }

    /// Every record, in the order they were added (not record order).
    pub fn iter(&self) -> Iter<'_> {
        self.slots.iter().map(|(r, e)| (r, e))
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &RecordRef> {
        self.slots.iter().map(|(r, _)| r)
    }

    pub fn values(&self) -> impl ExactSizeIterator<Item = &RecordEntry> {
        self.slots.iter().map(|(_, e)| e)
    }

    /// Where `record` is, added with a default entry if it is not here yet.
    pub(crate) fn index_or_insert(&mut self, record: &RecordRef) -> RecordIndex {
        match self.index_of(record) {
            Some(i) => i,
            None => self.push(record.clone(), RecordEntry::default()),
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
    fn push(&mut self, record: RecordRef, entry: RecordEntry) -> RecordIndex {
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

impl Index<&RecordRef> for Records {
    type Output = RecordEntry;

    fn index(&self, record: &RecordRef) -> &RecordEntry {
        self.get(record).expect("no such record")
    }
}

impl<'a> IntoIterator for &'a Records {
    type Item = (&'a RecordRef, &'a RecordEntry);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl PartialEq for Records {
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

/// Values kept once and shared ([`Arc`]): each follower's actor and how it was added, of which an
/// account has a few, held by every follower.
#[derive(Debug, Clone)]
pub struct Interned<T> {
    values: HashSet<Arc<T>>,
}

impl<T> Default for Interned<T> {
    fn default() -> Self {
        Self {
            values: HashSet::new(),
        }
    }
}

impl<T: Hash + Eq> Interned<T> {
    /// Makes `value` the shared copy of what it holds, the first one seen becoming it.
    pub fn share(&mut self, value: &mut Arc<T>) {
        match self.values.get(&**value) {
            Some(kept) => {
                if !Arc::ptr_eq(kept, value) {
                    *value = Arc::clone(kept);
                }
            }
            None => {
                self.values.insert(Arc::clone(value));
            }
        }
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

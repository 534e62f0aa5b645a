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
//! this module and the snapshot file ([`crate::snapshot`], which stores an account's tables as
//! they are, so that loading one is mostly moving vectors): a record is read through a [`Record`]
//! view, which gives the ids back, and the decider's [`RecordState`] is converted to and from the
//! stored form. Two stores are compared by what their records say, not by their numbers, which
//! depend on the order things were seen.
//!
//! Records are never removed from a model (a record's stream only grows), so an index stays valid
//! for the model's life. Two stores are equal when they hold the same records, whatever order
//! they were added in (a model loaded from a snapshot and one replayed from the history).

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::access::{FollowerList, Holders};
use crate::hashing::{IdHasher, IdMap};
use crate::ids::{ContactId, EventId, OpportunityId, UserId};
use crate::model::{Actor, AddedHow, Follower, RecordRef};
use crate::read_model::RecordEntry;
use crate::record::RecordState;
use crate::store::{ChainValue, Version};

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
    numbers: IdMap<T, Number>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            numbers: IdMap::default(),
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

    /// Every value, by number.
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// `values` numbered in their order; `None` if one is listed twice.
    fn of(values: Vec<T>) -> Option<Self> {
        let mut numbers = IdMap::with_capacity_and_hasher(values.len(), IdHasher::default());
        for (n, v) in (0..).zip(&values) {
            if numbers.insert(v.clone(), n).is_some() {
                return None;
            }
        }
        Some(Self { values, numbers })
    }
}

/// An account's users and follower sources, numbered ([`Table`]), and its followers' `until`s.
#[derive(Debug, Clone, Default)]
pub struct Names {
    users: Table<UserId>,
    sources: Table<Source>,
    /// The `until` of each follower that has one, by record and user: few have one (issue
    /// 17.4), so a follower only says whether it does.
    untils: IdMap<(RecordIndex, Number), Until>,
}

impl Names {
    /// Tables read back from a snapshot, numbered in their order; `Err` names the table that
    /// lists a value twice.
    pub(crate) fn of(users: Vec<UserId>, sources: Vec<Source>) -> Result<Self, &'static str> {
        Ok(Self {
            users: Table::of(users).ok_or("user")?,
            sources: Table::of(sources).ok_or("source")?,
            untils: IdMap::default(),
        })
    }

    /// The user numbered `n`.
    pub fn user(&self, n: Number) -> Option<&UserId> {
        self.users.get(n)
    }

    /// Every user, by number.
    pub fn users(&self) -> &[UserId] {
        self.users.values()
    }

    /// Every source, by number.
    pub fn sources(&self) -> &[Source] {
        self.sources.values()
    }

    /// The `until` of the follower `user` of the record at `record`, if it has one.
    pub(crate) fn until(&self, record: RecordIndex, user: Number) -> Option<&Until> {
        self.untils.get(&(record, user))
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
    pub(crate) user: Number,
    pub(crate) source: Number,
    pub(crate) added_at: DateTime<Utc>,
    pub(crate) has_until: bool,
}

/// A record's list (its followers, a contact's opportunities), shared by the model and the copy
/// a snapshot is written from: copying a model of a million records for its snapshot allocates
/// nothing per record, so it frees nothing per record either (issue 14: the copy's million
/// small pieces, freed between the model's own, stayed in the process as scattered free memory,
/// about 90 bytes a record). Replaced whole when the list changes, never changed in place.
/// Nothing allocated when empty. One word in the record, the length beside the count of owners.
#[derive(Debug)]
pub(crate) struct Shared<T>(Option<triomphe::ThinArc<(), T>>);

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.0.as_ref().map_or(&[], |list| &list.slice)
    }
}

impl<T: Clone> From<&[T]> for Shared<T> {
    fn from(list: &[T]) -> Self {
        let shared = || triomphe::ThinArc::from_header_and_iter((), list.iter().cloned());
        Self((!list.is_empty()).then(shared))
    }
}

impl<T: Clone> FromIterator<T> for Shared<T> {
    fn from_iter<I: IntoIterator<Item = T>>(list: I) -> Self {
        Self::from(&list.into_iter().collect::<Vec<_>>()[..])
    }
}

/// A follower's `until` and the event that set it ([`Follower::until`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Until {
    pub(crate) at: Option<DateTime<Utc>>,
    pub(crate) set_by: Option<EventId>,
}

/// One record as the model keeps it: a [`RecordEntry`] with its users, sources and contact by
/// number, and no heap of its own but its followers and opportunities. Options are spelled as
/// flags beside plain numbers, which packs them: 40 bytes, where a [`RecordEntry`] takes 144.
/// Its chain value, if kept, is beside it ([`Records`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct StoredRecord {
    pub(crate) followers: Shared<StoredFollower>,
    /// For a contact: its opportunities, in creation order.
    pub(crate) opportunities: Shared<OpportunityId>,
    pub(crate) version: u64,
    pub(crate) owner: Number,
    /// For an opportunity: the index of its contact (R4).
    pub(crate) contact: RecordIndex,
    pub(crate) created: bool,
    pub(crate) has_version: bool,
    pub(crate) has_owner: bool,
    pub(crate) has_contact: bool,
}

impl StoredRecord {
    pub(crate) fn version(&self) -> Option<Version> {
        self.has_version.then_some(Version(self.version))
    }

    pub(crate) fn owner(&self) -> Option<Number> {
        self.has_owner.then_some(self.owner)
    }

    pub(crate) fn contact(&self) -> Option<RecordIndex> {
        self.has_contact.then_some(self.contact)
    }

    /// The users who own or follow the record, each once: its followers', then its owner's.
    fn holders(&self) -> impl Iterator<Item = Number> + '_ {
        let followers = self.followers.iter().map(|f| f.user);
        let owner = self
            .owner()
            .filter(|o| !self.followers.iter().any(|f| f.user == *o));
        followers.chain(owner)
    }

    pub(crate) fn set_version(&mut self, version: Version) {
        (self.has_version, self.version) = (true, version.0);
    }

    /// Links `opportunity` to this contact, once, after the others.
    pub(crate) fn add_opportunity(&mut self, opportunity: &OpportunityId) {
        if !self.opportunities.contains(opportunity) {
            let mut all = self.opportunities.to_vec();
            all.push(opportunity.clone());
            self.opportunities = Shared::from(&all[..]);
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
    pub chain: Option<&'a ChainValue>,
}

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

    /// For an opportunity: its contact's record (R4), found by its number rather than its id.
    pub fn contact_record(&self) -> Option<Record<'a>> {
        if !self.stored.has_contact {
            return None;
        }
        let (key, contact) = self.records.get_at(self.stored.contact)?;
        matches!(key, RecordRef::Contact(_)).then_some(contact)
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
                followers: &self.stored.followers[..],
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
            chain: self.chain.cloned(),
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
    hasher: IdHasher,
    names: Names,
    /// Each record's chain value, by index, up to the last one set: empty in a model that drops
    /// them ([`crate::read_model::Chains`]).
    chains: Vec<Option<ChainValue>>,
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
            hasher: IdHasher::default(),
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
            chain: self.chains.get(index as usize).and_then(Option::as_ref),
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
    pub(crate) fn set_chain(&mut self, index: RecordIndex, chain: Option<ChainValue>) {
        let i = index as usize;
        if chain.is_none() && i >= self.chains.len() {
            return;
        }
        if i >= self.chains.len() {
            self.chains.resize(i + 1, None);
        }
        self.chains[i] = chain;
    }

    /// The chain value of the record at `index`, if it has one.
    pub(crate) fn chain(&self, index: RecordIndex) -> Option<&ChainValue> {
        self.chains.get(index as usize)?.as_ref()
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
        stored.opportunities = Shared::from(&entry.opportunities[..]);
        stored.has_version = false;
        if let Some(v) = entry.version {
            stored.set_version(v);
        }
        self.set_chain(index, entry.chain);
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

/// What a snapshot file ([`crate::snapshot`]) reads and writes: the stored form as it is.
impl Records {
    /// An empty store for `n` records numbered by `names`, to be loaded with their final
    /// capacities by [`Records::push_unindexed`], then indexed at once ([`Records::index_all`]).
    pub(crate) fn loading(n: usize, names: Names) -> Self {
        Self {
            slots: Vec::with_capacity(n),
            index: HashTable::new(),
            hasher: IdHasher::default(),
            names,
            chains: Vec::new(),
        }
    }

    /// Adds a record known not to be here, not found by its id until [`Records::index_all`].
    pub(crate) fn push_unindexed(&mut self, record: RecordRef, entry: StoredRecord) {
        self.slots.push((record, entry));
    }

    /// Indexes every record by its id, in the order of where each goes in the hash table, so
    /// that building it walks the table once: inserted in record order, each insert was a cache
    /// miss, most of the time of loading a million records (issue 14, `perf`).
    pub(crate) fn index_all(&mut self) {
        let (slots, hasher) = (&self.slots, &self.hasher);
        let mut hashed: Vec<(u64, RecordIndex)> = (0..)
            .zip(slots)
            .map(|(i, (r, _))| (hasher.hash_one(r), i))
            .collect();
        // The table's buckets for this many records, as hashbrown sizes it: a record's place
        // is its hash's low bits. (Were it sized otherwise, the order would still be mostly
        // sequential, and the index as correct.)
        let buckets = (slots.len() * 8 / 7).max(1).next_power_of_two() as u64;
        hashed.sort_unstable_by_key(|&(hash, _)| hash & (buckets - 1));
        let mut index = HashTable::with_capacity(slots.len());
        for (hash, i) in hashed {
            index.insert_unique(hash, i, |&j| hasher.hash_one(&slots[j as usize].0));
        }
        self.index = index;
    }

    /// The record at `index` as stored. Panics if there is none: indexes come from this store.
    pub(crate) fn stored(&self, index: RecordIndex) -> (&RecordRef, &StoredRecord) {
        let (r, stored) = &self.slots[index as usize];
        (r, stored)
    }

    /// Sets the `until` of follower `user` of the record at `index` (which says it has one).
    pub(crate) fn set_until(&mut self, index: RecordIndex, user: Number, until: Until) {
        self.names.untils.insert((index, user), until);
    }

    /// Every follower's `until`, by record and user, in no order.
    pub(crate) fn untils(&self) -> impl Iterator<Item = (&RecordRef, &UserId, &Until)> {
        self.names
            .untils
            .iter()
            .filter_map(|(&(record, user), until)| {
                Some((
                    &self.slots.get(record as usize)?.0,
                    self.names.user(user)?,
                    until,
                ))
            })
    }

    /// Whether the records were added in record order (as a snapshot's are).
    fn added_in_record_order(&self) -> bool {
        self.slots.is_sorted_by(|a, b| a.0 < b.0)
    }

    /// The indexes of the records in record order: `0..len` when they were added in it,
    /// otherwise sorted by id.
    pub(crate) fn in_record_order(&self) -> Vec<RecordIndex> {
        let len = RecordIndex::try_from(self.slots.len()).unwrap_or(RecordIndex::MAX);
        let mut order: Vec<RecordIndex> = (0..len).collect();
        if !self.added_in_record_order() {
            order.sort_unstable_by(|&a, &b| self.key(a).cmp(self.key(b)));
        }
        order
    }

    /// Each user's [`Held`] index, built in one pass over the records in record order (without
    /// a vector of that order when they were added in it: a loaded store's memory is its own).
    pub(crate) fn held_by_user(&self) -> IdMap<UserId, Held> {
        let mut held = vec![Held::default(); self.names.users().len()];
        let mut add = |index: RecordIndex| {
            for user in self.slots[index as usize].1.holders() {
                if let Some(h) = held.get_mut(user as usize) {
                    h.push(index);
                }
            }
        };
        if self.added_in_record_order() {
            let len = RecordIndex::try_from(self.slots.len()).unwrap_or(RecordIndex::MAX);
            (0..len).for_each(&mut add);
        } else {
            self.in_record_order().into_iter().for_each(&mut add);
        }
        let users = self.names.users().iter();
        users
            .zip(held)
            .filter(|(_, h)| !h.is_empty())
            .map(|(user, h)| (user.clone(), h))
            .collect()
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
    /// Adds the record at `index` after the others, which are all before it in record order
    /// ([`Records::held_by_user`] goes through the records in that order); once, if it is the
    /// last one already.
    fn push(&mut self, index: RecordIndex) {
        match self.blocks.last_mut() {
            Some(block) if block.last() == Some(&index) => {}
            Some(block) if block.len() < BLOCK => block.push(index),
            _ => self.blocks.push(vec![index]),
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
            chain: Some(ChainValue::of(&"ab".repeat(32))),
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
        b.set_chain(b.index_of(&o1).unwrap(), entry.chain.clone());
        assert_eq!(a, b, "the same content, users numbered in another order");
        // A follower's `until` leaves with it.
        let mut state = entry.state.clone();
        state.followers.pop();
        a.set_state(0, state.clone());
        assert_eq!(a.get(&o1).unwrap().state(), state);
        assert!(a.names().untils.is_empty());
    }

    /// The per-user index built in one pass over records added in any order is in record
    /// order, each record once per user, whether the user owns it, follows it, or both.
    #[test]
    fn each_users_index_is_built_in_record_order_whatever_the_order_records_came_in() {
        let mut records = Records::default();
        let n = 2 * BLOCK as u64 + 3;
        for k in 0..n {
            let i = (k * 7919) % n;
            let mut state = RecordState {
                created: true,
                owner: Some(user("ann")),
                followers: vec![follower("bob", AddedHow::Manual, None)],
                contact: None,
            };
            if i.is_multiple_of(2) {
                state
                    .followers
                    .push(follower("ann", AddedHow::Manual, None));
            }
            let index = records.index_or_insert(&contact(i));
            records.set_state(index, state);
        }
        let held = records.held_by_user();
        assert_eq!(held.len(), 2);
        let mut expected: Vec<RecordRef> = (0..n).map(contact).collect();
        expected.sort();
        for who in ["ann", "bob"] {
            let listed: Vec<RecordRef> = held[&user(who)].refs(&records).cloned().collect();
            assert_eq!(listed, expected, "{who}");
        }
    }

    /// Issue 14: the sizes the module's docs and docs/performance.md count with.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_stored_record_and_follower_keep_their_size() {
        assert_eq!(std::mem::size_of::<StoredRecord>(), 40);
        assert_eq!(std::mem::size_of::<StoredFollower>(), 24);
        assert_eq!(std::mem::size_of::<(RecordRef, StoredRecord)>(), 72);
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
        let mut rebuilt = Held::default();
        for i in held.after(None, &records) {
            rebuilt.push(i);
            rebuilt.push(i);
        }
        assert!(rebuilt.refs(&records).eq(held.refs(&records)));
        assert!(rebuilt.blocks.iter().all(|b| b.len() <= BLOCK));
    }
}

//! Where every stored command is, per account: what lets the command service recognise a retry
//! however late it comes (R24, exactly-once across restarts), kept compact (issue 14).
//!
//! Why a fingerprint and not the id: the command service remembers one entry per stored command
//! for ever, so at a million commands each byte of an entry is a megabyte of every instance's
//! memory and of its snapshot. An entry here is 16 bytes: a 64-bit [`fingerprint`] of the
//! command id and the commit's position, in one vector sorted by fingerprint (no hash table's
//! empty slots), with the latest entries in a small map until they are merged in.
//!
//! Why that is still exactly-once: a fingerprint only says where the command *may* be stored.
//! Two ids can share one, so the index never decides alone. Every stored command keeps its own
//! entry, even one whose fingerprint another already has (so a retry of either finds it), and a
//! hit is only a candidate: the command service reads the commit at that position and takes it
//! for the first try only when it holds this very command id in this account
//! ([`StoredCommands::candidates`]). A new command whose fingerprint matches another's costs one
//! read, and is decided as new. A command id is a key only within its account (R1): each account
//! has its own index.
//!
//! The fingerprint is this module's own function, written out below rather than a library
//! hasher's, because snapshots store it: it must never change without a snapshot format bump.

use std::collections::HashMap;

use crate::ids::{AccountId, CommandId};
use crate::store::Position;

/// One stored command: its id's [`fingerprint`] and its commit's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoredCommand {
    pub fingerprint: u64,
    pub position: Position,
}

/// The 64-bit fingerprint of a command id: both halves of its 128 bits, each mixed by the
/// SplitMix64 finalizer (a bijection that spreads every input bit over the output), so ids that
/// differ anywhere, such as time-ordered UUIDs of one millisecond, get unrelated fingerprints.
pub fn fingerprint(id: &CommandId) -> u64 {
    let bits = id.0.as_u128();
    let (high, low) = ((bits >> 64) as u64, bits as u64);
    mix(high ^ mix(low))
}

/// Another command id with the same [`fingerprint`] as `id`: a collision made on purpose, for
/// the tests that a shared fingerprint is never taken for a retry (R24).
pub fn sharing_fingerprint(id: &CommandId) -> CommandId {
    let bits = id.0.as_u128();
    let (high, low) = ((bits >> 64) as u64, bits as u64);
    let other_low = low.wrapping_add(1);
    let other_high = high ^ mix(low) ^ mix(other_low);
    CommandId(uuid::Uuid::from_u128(
        (u128::from(other_high) << 64) | u128::from(other_low),
    ))
}

/// The SplitMix64 finalizer.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// One account's stored commands.
#[derive(Debug, Clone, Default)]
struct AccountCommands {
    /// Sorted by fingerprint, then position; exactly as long as it needs to be.
    merged: Vec<StoredCommand>,
    /// The entries since the last merge, by fingerprint.
    recent: HashMap<u64, Position>,
}

/// The recent entries are merged in once they are this many, or an eighth of the merged ones:
/// few enough that the map stays small beside the vector, and merges rare enough that all of
/// them together copy about nine entries for each one stored. (A merge of a million entries
/// takes a few milliseconds, under the model's write lock, once per 125,000 commands.)
const MERGE_AT_LEAST: usize = 1024;

impl AccountCommands {
    fn insert(&mut self, entry: StoredCommand) {
        // A second command with the same fingerprint: the first goes to the vector, so that
        // both keep their entries.
        if self.recent.contains_key(&entry.fingerprint) {
            self.merge();
        }
        self.recent.insert(entry.fingerprint, entry.position);
        if self.recent.len() >= MERGE_AT_LEAST.max(self.merged.len() / 8) {
            self.merge();
        }
    }

    /// Moves the recent entries into the sorted vector, allocated to its exact length.
    fn merge(&mut self) {
        let old = self.merged.len();
        let mut merged = Vec::with_capacity(old + self.recent.len());
        merged.extend_from_slice(&self.merged);
        merged.extend(
            self.recent
                .drain()
                .map(|(fingerprint, position)| StoredCommand {
                    fingerprint,
                    position,
                }),
        );
        merged[old..].sort_unstable();
        // Two sorted runs: the stable sort finds them and merges them in one pass.
        merged.sort();
        self.merged = merged;
        self.recent.shrink_to(MERGE_AT_LEAST);
    }

    fn candidates(&self, fingerprint: u64) -> impl Iterator<Item = Position> + '_ {
        let start = self.merged.partition_point(|e| e.fingerprint < fingerprint);
        let merged = self.merged[start..]
            .iter()
            .take_while(move |e| e.fingerprint == fingerprint)
            .map(|e| e.position);
        merged.chain(self.recent.get(&fingerprint).copied())
    }

    /// Every entry, sorted.
    fn sorted(&self) -> Vec<StoredCommand> {
        let mut all = self.merged.clone();
        all.extend(self.recent.iter().map(|(f, p)| StoredCommand {
            fingerprint: *f,
            position: *p,
        }));
        all.sort_unstable();
        all
    }

    fn len(&self) -> usize {
        self.merged.len() + self.recent.len()
    }
}

/// Every stored command, per account (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct StoredCommands {
    accounts: HashMap<AccountId, AccountCommands>,
}

impl PartialEq for StoredCommands {
    /// The same entries, however far each side has merged them.
    fn eq(&self, other: &Self) -> bool {
        self.accounts.len() == other.accounts.len()
            && self.accounts.iter().all(|(account, mine)| {
                other
                    .accounts
                    .get(account)
                    .is_some_and(|theirs| mine.sorted() == theirs.sorted())
            })
    }
}

impl Eq for StoredCommands {}

/// One account's entries in a snapshot, sorted by fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountCommandsSnapshot {
    pub account: AccountId,
    pub stored: Vec<StoredCommand>,
}

impl StoredCommands {
    /// Remembers that command `id` of `account` is stored at `position`.
    pub fn insert(&mut self, account: &AccountId, id: &CommandId, position: Position) {
        let entry = StoredCommand {
            fingerprint: fingerprint(id),
            position,
        };
        match self.accounts.get_mut(account) {
            Some(commands) => commands.insert(entry),
            None => {
                let mut commands = AccountCommands::default();
                commands.insert(entry);
                self.accounts.insert(account.clone(), commands);
            }
        }
    }

    /// The positions where command `id` of `account` may be stored, in no particular order:
    /// every stored command with its fingerprint. Only the commit at a position says whether
    /// it is this command (see the module doc); none means it was never stored.
    pub fn candidates(&self, account: &AccountId, id: &CommandId) -> Vec<Position> {
        match self.accounts.get(account) {
            Some(commands) => commands.candidates(fingerprint(id)).collect(),
            None => Vec::new(),
        }
    }

    /// How many commands are stored, in all accounts.
    pub fn len(&self) -> usize {
        self.accounts.values().map(AccountCommands::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries of each account, accounts and entries sorted: a snapshot's section.
    pub fn to_snapshot(&self) -> Vec<AccountCommandsSnapshot> {
        let mut accounts: Vec<_> = self
            .accounts
            .iter()
            .map(|(account, commands)| AccountCommandsSnapshot {
                account: account.clone(),
                stored: commands.sorted(),
            })
            .collect();
        accounts.sort_by(|a, b| a.account.cmp(&b.account));
        accounts
    }

    /// The index of a snapshot's section (its entries sorted if they were not).
    pub fn from_snapshot(accounts: Vec<AccountCommandsSnapshot>) -> Self {
        let accounts = accounts
            .into_iter()
            .map(|mut a| {
                a.stored.sort_unstable();
                a.stored.shrink_to_fit();
                let commands = AccountCommands {
                    merged: a.stored,
                    recent: HashMap::new(),
                };
                (a.account, commands)
            })
            .collect();
        Self { accounts }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn acme() -> AccountId {
        "acme".parse().unwrap()
    }

    fn id(n: u128) -> CommandId {
        CommandId(uuid::Uuid::from_u128(n))
    }

    /// The fingerprint is stored in snapshots: a change to it must be a snapshot format bump,
    /// and this pins it.
    #[test]
    fn the_fingerprint_is_fixed() {
        assert_eq!(fingerprint(&id(0)), 0);
        assert_eq!(fingerprint(&id(1)), 0x7ab4_0e09_0f36_3a7d);
        assert_eq!(fingerprint(&id(1 << 64)), 0x5692_161d_100b_05e5);
    }

    /// R24: every stored command is found, before and after its entry is merged, among many.
    #[test]
    fn every_stored_command_is_a_candidate_at_its_position() {
        let mut commands = StoredCommands::default();
        let ids: Vec<CommandId> = (0..5000).map(|_| CommandId::new()).collect();
        for (at, id) in ids.iter().enumerate() {
            commands.insert(&acme(), id, Position(at as u64 + 1));
            assert_eq!(commands.candidates(&acme(), id), [Position(at as u64 + 1)]);
        }
        for (at, id) in ids.iter().enumerate() {
            assert_eq!(commands.candidates(&acme(), id), [Position(at as u64 + 1)]);
        }
        assert_eq!(commands.len(), 5000);
        assert!(commands.candidates(&acme(), &CommandId::new()).is_empty());
    }

    /// R1: a command id is a key only within its account.
    #[test]
    fn another_accounts_command_is_no_candidate() {
        let mut commands = StoredCommands::default();
        let same = CommandId::new();
        commands.insert(&acme(), &same, Position(1));
        let globex: AccountId = "globex".parse().unwrap();
        assert!(commands.candidates(&globex, &same).is_empty());
    }

    /// Two stored commands whose ids share a fingerprint both stay candidates, in the recent
    /// map and once merged: a retry of either finds its commit (R24).
    #[test]
    fn commands_sharing_a_fingerprint_keep_both_entries() {
        let first = CommandId::new();
        let second = sharing_fingerprint(&first);
        assert_ne!(first, second);
        assert_eq!(fingerprint(&first), fingerprint(&second));
        let mut commands = StoredCommands::default();
        commands.insert(&acme(), &first, Position(1));
        commands.insert(&acme(), &second, Position(2));
        let mut found = commands.candidates(&acme(), &first);
        found.sort();
        assert_eq!(found, [Position(1), Position(2)]);
        let back = StoredCommands::from_snapshot(commands.to_snapshot());
        assert_eq!(back, commands);
        let mut found = back.candidates(&acme(), &second);
        found.sort();
        assert_eq!(found, [Position(1), Position(2)]);
    }

    #[test]
    fn a_snapshot_section_gives_back_the_same_index() {
        let mut commands = StoredCommands::default();
        for at in 1..=3000 {
            commands.insert(&acme(), &CommandId::new(), Position(at));
        }
        let section = commands.to_snapshot();
        assert!(section[0].stored.is_sorted());
        assert_eq!(StoredCommands::from_snapshot(section), commands);
    }
}

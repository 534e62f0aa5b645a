//! Partitions of the accounts (issue 15's groundwork): an account belongs to one of a fixed number
//! of partitions, by the same hash NATS's subject mapping computes for `{{partition(P, n)}}`,
//! so the server can route `followers.cmd.<account>.<command>` to a partition's subjects and
//! the services can tell which partition a history subject belongs to, and both agree.
//!
//! The hash is 32-bit FNV-1a of the account id's bytes, modulo the number of partitions: what
//! nats-server does for a mapping function over one token (over several, it hashes their bytes
//! concatenated). `tests/tests/partitions.rs` checks the agreement against a real server for
//! many ids.

use std::fmt;

use crate::ids::AccountId;

/// How many partitions the history has: fixed for the stream's life (changing it moves
/// accounts between partitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartitionCount(u16);

/// One partition, `0..count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition(pub u16);

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A partition count of zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the number of partitions must be at least 1")]
pub struct NoPartitions;

impl PartitionCount {
    pub fn new(count: u16) -> Result<Self, NoPartitions> {
        if count == 0 {
            Err(NoPartitions)
        } else {
            Ok(Self(count))
        }
    }

    pub fn get(self) -> u16 {
        self.0
    }

    /// The partition of `account`.
    pub fn of(self, account: &AccountId) -> Partition {
        let hash = fnv1a32(account.as_str().as_bytes());
        // The remainder is below `self.0`, a u16.
        Partition(u16::try_from(hash % u32::from(self.0)).unwrap_or(0))
    }
}

/// 32-bit FNV-1a (<http://www.isthe.com/chongo/tech/comp/fnv/>).
fn fnv1a32(bytes: &[u8]) -> u32 {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u32::from(b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_values() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn every_account_falls_in_one_partition_below_the_count() {
        let count = PartitionCount::new(8).unwrap();
        let mut seen = [0u32; 8];
        for n in 0..1000 {
            let account = AccountId::new(format!("acct-{n}")).unwrap();
            let p = count.of(&account);
            assert_eq!(p, count.of(&account), "deterministic");
            seen[usize::from(p.0)] += 1;
        }
        assert!(
            seen.iter().all(|&n| n > 60),
            "spread over every partition: {seen:?}"
        );
        assert_eq!(PartitionCount::new(0), Err(NoPartitions));
    }
}

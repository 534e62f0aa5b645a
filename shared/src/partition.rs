//! Partitions of the accounts (issue 15's groundwork): an account belongs to one of a fixed number
//! of partitions, by the same hash NATS's subject mapping computes for `{{partition(P, n)}}`,
//! so the server can route `followers.cmd.<account>.<command>` to a partition's subjects and
//! the services can tell which partition a history subject belongs to, and both agree.
//!
//! The hash is 32-bit FNV-1a of the account id's bytes, modulo the number of partitions: what
//! nats-server does for a mapping function over one token (over several, it hashes their bytes
//! concatenated). `tests/tests/partitions.rs` checks the agreement against a real server for
//! many ids.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

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

impl fmt::Display for PartitionCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for PartitionCount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n: u16 = s
            .parse()
            .map_err(|_| format!("`{s}` is not a number of partitions (1 to 65535)"))?;
        Self::new(n).map_err(|e| e.to_string())
    }
}

/// The partitions an instance serves (`--partitions 0-31,40`): all of them, or a set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PartitionSet {
    #[default]
    All,
    Only(BTreeSet<u16>),
}

impl PartitionSet {
    pub fn contains(&self, p: Partition) -> bool {
        match self {
            Self::All => true,
            Self::Only(set) => set.contains(&p.0),
        }
    }

    /// Whether this set, of a history of `count` partitions, is every partition.
    pub fn covers(&self, count: PartitionCount) -> bool {
        match self {
            Self::All => true,
            Self::Only(set) => (0..count.0).all(|p| set.contains(&p)),
        }
    }

    /// The partitions of a history of `count` this set names, or the first it names that the
    /// history does not have.
    pub fn within(&self, count: PartitionCount) -> Result<Vec<Partition>, Partition> {
        match self {
            Self::All => Ok((0..count.0).map(Partition).collect()),
            Self::Only(set) => set
                .iter()
                .map(|&p| {
                    if p < count.0 {
                        Ok(Partition(p))
                    } else {
                        Err(Partition(p))
                    }
                })
                .collect(),
        }
    }
}

impl fmt::Display for PartitionSet {
    /// As `--partitions` reads it: `all`, or ranges such as `0-3,6`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self::Only(set) = self else {
            return f.write_str("all");
        };
        let mut ranges: Vec<(u16, u16)> = Vec::new();
        for &p in set {
            match ranges.last_mut() {
                Some((_, end)) if u32::from(*end) + 1 == u32::from(p) => *end = p,
                _ => ranges.push((p, p)),
            }
        }
        let shown: Vec<String> = ranges
            .iter()
            .map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        f.write_str(&shown.join(","))
    }
}

impl FromStr for PartitionSet {
    type Err = String;

    /// `all`, or a comma-separated list of partitions and ranges: `0-31`, `2,5,7-9`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "all" {
            return Ok(Self::All);
        }
        let number = |t: &str| {
            t.trim()
                .parse::<u16>()
                .map_err(|_| format!("`{t}` is not a partition number in `{s}`"))
        };
        let mut set = BTreeSet::new();
        for part in s.split(',') {
            let (from, to) = match part.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => (number(part)?, number(part)?),
            };
            if from > to {
                return Err(format!("the range `{part}` ends before it starts"));
            }
            set.extend(from..=to);
        }
        Ok(Self::Only(set))
    }
}

/// How a history is laid out, and which of its partitions one instance serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partitions {
    /// `None`: a history without partitions (one subject space, the layout before issue 15).
    pub count: Option<PartitionCount>,
    pub owned: PartitionSet,
}

impl Partitions {
    /// Every account of a history without partitions.
    pub fn whole() -> Self {
        Self::default()
    }

    /// The partition of `account`, in a partitioned history.
    pub fn of(&self, account: &AccountId) -> Option<Partition> {
        self.count.map(|c| c.of(account))
    }

    /// Whether this instance serves `account`.
    pub fn owns(&self, account: &AccountId) -> bool {
        self.of(account).is_none_or(|p| self.owned.contains(p))
    }

    /// Whether this instance serves every account.
    pub fn owns_all(&self) -> bool {
        self.count.is_none_or(|c| self.owned.covers(c))
    }

    /// The partitions served, in a partitioned history (empty without partitions).
    pub fn served(&self) -> Vec<Partition> {
        self.count
            .map(|c| self.owned.within(c).unwrap_or_default())
            .unwrap_or_default()
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

    #[test]
    fn a_partition_list_reads_ranges_and_shows_them_again() {
        let set: PartitionSet = "0-3, 6,8-9".parse().unwrap();
        assert_eq!(set.to_string(), "0-3,6,8-9");
        assert!(set.contains(Partition(2)) && !set.contains(Partition(4)));
        let eight = PartitionCount::new(8).unwrap();
        assert_eq!(
            set.within(eight),
            Err(Partition(8)),
            "9 is past 8 partitions"
        );
        assert!(!set.covers(eight));
        assert!("0-7".parse::<PartitionSet>().unwrap().covers(eight));
        assert_eq!("all".parse::<PartitionSet>(), Ok(PartitionSet::All));
        for bad in ["", "x", "3-1", "1,,2", "70000"] {
            assert!(bad.parse::<PartitionSet>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_instance_owns_the_accounts_of_its_partitions_only() {
        let count = PartitionCount::new(2).unwrap();
        let half = Partitions {
            count: Some(count),
            owned: PartitionSet::Only([0].into()),
        };
        let (mut mine, mut theirs) = (0, 0);
        for n in 0..100 {
            let account = AccountId::new(format!("a{n}")).unwrap();
            if half.owns(&account) {
                assert_eq!(count.of(&account), Partition(0));
                mine += 1;
            } else {
                theirs += 1;
            }
        }
        assert!(mine > 20 && theirs > 20, "{mine} / {theirs}");
        assert!(Partitions::whole().owns_all() && !half.owns_all());
        assert_eq!(half.served(), vec![Partition(0)]);
    }
}

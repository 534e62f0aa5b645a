//! NATS subjects. Every id is a single subject token (see [`crate::ids`]).
//!
//! - commands: `{prefix}.cmd.{account}.{command}`, e.g. `followers.cmd.acme.add_followers`
//! - queries:  `{prefix}.query.{account}.{query}`, e.g. `followers.query.acme.check_access`
//!
//! In a partitioned history (issue 15, docs/scaling.md) the server's subject mapping adds the
//! account's partition after the kind: `{prefix}.cmd.{partition}.{account}.{command}`. Callers
//! never write that form; the services subscribe to it for the partitions they serve.
//!
//! The account and the command come before any record id, so an operator can grant a client
//! `followers.cmd.acme.add_followers` (one account, one kind of command), `followers.cmd.acme.>`
//! (one account) or `followers.cmd.*.change_owner` (one command everywhere).

use crate::partition::{Partition, PartitionCount};

/// The default subject prefix.
pub const DEFAULT_PREFIX: &str = "followers";

pub fn command(prefix: &str, account: &str, command: &str) -> String {
    format!("{prefix}.cmd.{account}.{command}")
}

pub fn query(prefix: &str, account: &str, query: &str) -> String {
    format!("{prefix}.query.{account}.{query}")
}

/// A request subject as the server delivers it to a partition's subscribers.
pub fn partitioned(
    prefix: &str,
    kind: &str,
    partition: Partition,
    account: &str,
    name: &str,
) -> String {
    format!("{prefix}.{kind}.{partition}.{account}.{name}")
}

/// What a service subscribes to for one partition's requests named `name` (`*` for all).
pub fn partition_filter(prefix: &str, kind: &str, partition: Partition, name: &str) -> String {
    format!("{prefix}.{kind}.{partition}.*.{name}")
}

/// The server's subject mapping that puts each request in its account's partition (for the
/// `mappings` block of a nats-server account; docs/scaling.md).
pub fn partition_mapping(prefix: &str, kind: &str, count: PartitionCount) -> (String, String) {
    (
        format!("{prefix}.{kind}.*.*"),
        format!(
            "{prefix}.{kind}.{{{{partition({count},1)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}"
        ),
    )
}

/// Splits `{prefix}.{kind}.{account}.{name}`, or its partitioned form
/// `{prefix}.{kind}.{partition}.{account}.{name}`, into `(account, name)` if it has that shape.
/// The partition token is routing only: who serves an account is decided from the account.
pub fn split<'a>(prefix: &str, kind: &str, subject: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let rest = rest.strip_prefix(kind)?.strip_prefix('.')?;
    let mut tokens = rest.split('.');
    let (first, second) = (tokens.next()?, tokens.next()?);
    match (tokens.next(), tokens.next()) {
        (None, _) => Some((first, second)),
        (Some(name), None) if first.parse::<u16>().is_ok() => Some((second, name)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partitioned_subject_names_the_same_account_and_request() {
        let count = PartitionCount::new(8).unwrap();
        let s = partitioned("followers", "cmd", Partition(3), "acme", "add_followers");
        assert_eq!(s, "followers.cmd.3.acme.add_followers");
        assert_eq!(
            split("followers", "cmd", &s),
            Some(("acme", "add_followers"))
        );
        assert_eq!(
            split("followers", "cmd", "followers.cmd.x.acme.add_followers"),
            None
        );
        assert_eq!(split("followers", "cmd", "followers.cmd.1.2.3.4"), None);
        let (from, to) = partition_mapping("followers", "query", count);
        assert_eq!(from, "followers.query.*.*");
        assert_eq!(
            to,
            "followers.query.{{partition(8,1)}}.{{wildcard(1)}}.{{wildcard(2)}}"
        );
    }

    #[test]
    fn subjects_round_trip() {
        let s = command("followers", "acme", "add_followers");
        assert_eq!(
            split("followers", "cmd", &s),
            Some(("acme", "add_followers"))
        );
        assert_eq!(split("followers", "query", &s), None);
        assert_eq!(split("followers", "cmd", "followers.cmd.acme.x.y"), None);
        assert_eq!(split("followers", "cmd", "followersx.cmd.acme.x"), None);
    }
}

//! NATS subjects. Every id is a single subject token (see [`crate::ids`]).
//!
//! - commands: `{prefix}.cmd.{account}.{command}`, e.g. `followers.cmd.acme.add_followers`
//! - queries:  `{prefix}.query.{account}.{query}`, e.g. `followers.query.acme.check_access`
//!
//! The account and the command come before any record id, so an operator can grant a client
//! `followers.cmd.acme.add_followers` (one account, one kind of command), `followers.cmd.acme.>`
//! (one account) or `followers.cmd.*.change_owner` (one command everywhere).

/// The default subject prefix.
pub const DEFAULT_PREFIX: &str = "followers";

pub fn command(prefix: &str, account: &str, command: &str) -> String {
    format!("{prefix}.cmd.{account}.{command}")
}

pub fn query(prefix: &str, account: &str, query: &str) -> String {
    format!("{prefix}.query.{account}.{query}")
}

/// Splits `{prefix}.{kind}.{account}.{name}` into `(account, name)` if it has that shape.
pub fn split<'a>(prefix: &str, kind: &str, subject: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let rest = rest.strip_prefix(kind)?.strip_prefix('.')?;
    let (account, name) = rest.split_once('.')?;
    (!name.contains('.')).then_some((account, name))
}

#[cfg(test)]
mod tests {
    use super::*;

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

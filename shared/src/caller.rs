//! Who sent a command, as the NATS server vouches for it, and which callers may act as which
//! actors for which accounts.
//!
//! The actor a command names is only a claim of its sender. A caller that reaches the services
//! through a service import with `share: true` is stamped by nats-server: the request carries a
//! `Nats-Request-Info` header naming the caller's NATS account and user, and the server replaces
//! any such header the caller wrote itself. The command service reads that header into a
//! [`Caller`], checks it against the [`CallerPolicy`] (for example: the workflow engine may act
//! only as `workflow` actors; a tenant's back end only in its own account), and records the
//! caller in every event it appends, so the history says which service sent each command and
//! not only which actor it claimed.
//!
//! The header is trustworthy only when it came through an import: inside the services' own NATS
//! account a client-written header arrives unchanged. So no caller may be a user of that
//! account, and the policy refuses a command that carries no header at all.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::AccountId;
use crate::model::Actor;

/// The name of the header nats-server adds to requests that arrive through a shared import.
pub const REQUEST_INFO_HEADER: &str = "Nats-Request-Info";

/// The sender of a command: its NATS account and user, as the server names them (in a
/// configuration-file setup the account's name and the user's name or nkey; in operator mode
/// their public keys).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Caller {
    pub account: String,
    pub user: String,
}

/// The parts of the server's `Nats-Request-Info` header that name the caller. The server writes
/// it; its other fields (round-trip time, host, client library...) are not needed here.
#[derive(Deserialize)]
struct RequestInfo {
    acc: String,
    #[serde(default)]
    user: String,
}

impl Caller {
    /// The caller named by a `Nats-Request-Info` header, if the header is the server's JSON.
    pub fn from_request_info(header: &[u8]) -> Option<Caller> {
        let info: RequestInfo = serde_json::from_slice(header).ok()?;
        (!info.acc.is_empty()).then_some(Caller {
            account: info.acc,
            user: info.user,
        })
    }
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.user.is_empty() {
            write!(f, "NATS account {}", self.account)
        } else {
            write!(f, "user {} of NATS account {}", self.user, self.account)
        }
    }
}

/// Whether a nats-server of this version (`2.15.1`, `v2.12.6-beta`) can be trusted with the
/// `Nats-Request-Info` header: 2.11.15, 2.12.6 and newer carry the fixes for spoofed headers.
pub fn server_stamps_callers(version: &str) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let v = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    match (v.0, v.1) {
        (2, 11) => v.2 >= 15,
        (2, 12) => v.2 >= 6,
        _ => v >= (2, 13, 0),
    }
}

/// An actor's kind, as the policy names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    User,
    Workflow,
    System,
}

impl ActorKind {
    pub fn of(actor: &Actor) -> ActorKind {
        match actor {
            Actor::User { .. } => ActorKind::User,
            Actor::Workflow { .. } => ActorKind::Workflow,
            Actor::System => ActorKind::System,
        }
    }
}

/// Which followers accounts a caller may send commands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Accounts {
    /// `"*"`: every account (the workflow engine, an operator's import job).
    Every(Every),
    /// These accounts only.
    Only(Vec<AccountId>),
}

/// The string `"*"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Every {
    #[serde(rename = "*")]
    Every,
}

impl Accounts {
    fn contain(&self, account: &AccountId) -> bool {
        match self {
            Accounts::Every(_) => true,
            Accounts::Only(list) => list.contains(account),
        }
    }
}

/// What one caller may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerGrant {
    /// The caller's NATS account, as the server names it.
    pub nats_account: String,
    /// One user of that account; absent: every user of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_user: Option<String>,
    /// The followers accounts it may send commands for.
    pub accounts: Accounts,
    /// The actor kinds it may act as.
    pub actors: Vec<ActorKind>,
}

/// Which callers may act as which actors, for which accounts. A caller no grant names may send
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerPolicy {
    pub callers: Vec<CallerGrant>,
}

/// Why the policy refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallerRefusal {
    #[error(
        "the command carries no Nats-Request-Info header: callers must reach the service through \
         a service import with `share: true`"
    )]
    Unidentified,
    #[error("{0} is not named in the caller policy")]
    Unknown(Caller),
    #[error("{caller} may not send commands for account `{account}`")]
    Account { caller: Caller, account: AccountId },
    #[error("{caller} may not act as {actor}")]
    ActorKind { caller: Caller, actor: Actor },
}

impl CallerPolicy {
    /// Whether `caller` may send a command for `account` as `actor`: the first grant naming the
    /// caller (its user, or its whole NATS account) decides.
    pub fn permits(
        &self,
        caller: Option<&Caller>,
        account: &AccountId,
        actor: &Actor,
    ) -> Result<(), CallerRefusal> {
        let caller = caller.ok_or(CallerRefusal::Unidentified)?;
        let grant = self
            .callers
            .iter()
            .find(|g| g.names(caller))
            .ok_or_else(|| CallerRefusal::Unknown(caller.clone()))?;
        if !grant.accounts.contain(account) {
            return Err(CallerRefusal::Account {
                caller: caller.clone(),
                account: account.clone(),
            });
        }
        if !grant.actors.contains(&ActorKind::of(actor)) {
            return Err(CallerRefusal::ActorKind {
                caller: caller.clone(),
                actor: actor.clone(),
            });
        }
        Ok(())
    }
}

impl CallerGrant {
    fn names(&self, caller: &Caller) -> bool {
        self.nats_account == caller.account
            && self.nats_user.as_ref().is_none_or(|u| *u == caller.user)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn policy() -> CallerPolicy {
        serde_json::from_str(
            r#"{"callers": [
                {"nats_account": "ACME", "accounts": ["acme"], "actors": ["user", "system"]},
                {"nats_account": "WORKFLOWS", "accounts": "*", "actors": ["workflow"]},
                {"nats_account": "OPS", "nats_user": "importer", "accounts": "*", "actors": ["system"]}
            ]}"#,
        )
        .unwrap()
    }

    fn caller(account: &str, user: &str) -> Caller {
        Caller {
            account: account.to_owned(),
            user: user.to_owned(),
        }
    }

    fn account(a: &str) -> AccountId {
        serde_json::from_value(serde_json::json!(a)).unwrap()
    }

    fn workflow() -> Actor {
        serde_json::from_value(serde_json::json!({"kind": "workflow", "workflow": "w1"})).unwrap()
    }

    #[test]
    fn a_tenant_back_end_acts_only_in_its_own_account() {
        let p = policy();
        let acme = caller("ACME", "UABC");
        assert_eq!(
            p.permits(Some(&acme), &account("acme"), &Actor::System),
            Ok(())
        );
        assert!(matches!(
            p.permits(Some(&acme), &account("globex"), &Actor::System),
            Err(CallerRefusal::Account { .. })
        ));
    }

    #[test]
    fn the_workflow_engine_acts_only_as_workflows_but_in_every_account() {
        let p = policy();
        let engine = caller("WORKFLOWS", "U1");
        assert_eq!(
            p.permits(Some(&engine), &account("globex"), &workflow()),
            Ok(())
        );
        assert!(matches!(
            p.permits(Some(&engine), &account("globex"), &Actor::System),
            Err(CallerRefusal::ActorKind { .. })
        ));
    }

    #[test]
    fn unknown_unidentified_and_other_users_are_refused() {
        let p = policy();
        let a = account("acme");
        assert_eq!(
            p.permits(None, &a, &Actor::System),
            Err(CallerRefusal::Unidentified)
        );
        assert!(matches!(
            p.permits(Some(&caller("GLOBEX", "U2")), &a, &Actor::System),
            Err(CallerRefusal::Unknown(_))
        ));
        assert!(matches!(
            p.permits(Some(&caller("OPS", "someone-else")), &a, &Actor::System),
            Err(CallerRefusal::Unknown(_))
        ));
        assert_eq!(
            p.permits(Some(&caller("OPS", "importer")), &a, &Actor::System),
            Ok(())
        );
    }

    #[test]
    fn the_servers_header_names_the_caller() {
        let header = br#"{"acc":"ACME","rtt":"1.2ms","start":"2026-11-26T03:00:00Z","host":"127.0.0.1","id":7,"user":"UABC","lang":"rust","ver":"0.45","server":"n1","kind":"Client","client_type":"nats"}"#;
        assert_eq!(
            Caller::from_request_info(header),
            Some(caller("ACME", "UABC"))
        );
        assert_eq!(Caller::from_request_info(b"not json"), None);
        assert_eq!(Caller::from_request_info(br#"{"acc":""}"#), None);
    }

    #[test]
    fn only_servers_with_the_spoofing_fixes_are_trusted_to_stamp_callers() {
        for trusted in ["2.11.15", "2.12.6", "v2.13.0", "2.15.1", "3.0.0"] {
            assert!(server_stamps_callers(trusted), "{trusted}");
        }
        for untrusted in ["2.11.14", "2.12.5", "2.10.29", "", "garbage"] {
            assert!(!server_stamps_callers(untrusted), "{untrusted}");
        }
    }

    #[test]
    fn a_policy_with_an_unknown_field_or_actor_kind_is_refused() {
        assert!(
            serde_json::from_str::<CallerPolicy>(r#"{"callers": [], "default": "allow"}"#).is_err()
        );
        assert!(
            serde_json::from_str::<CallerPolicy>(
                r#"{"callers": [{"nats_account": "A", "accounts": "*", "actors": ["robot"]}]}"#
            )
            .is_err()
        );
        assert!(
            serde_json::from_str::<CallerPolicy>(
                r#"{"callers": [{"nats_account": "A", "accounts": "all", "actors": []}]}"#
            )
            .is_err()
        );
    }
}

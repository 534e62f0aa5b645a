//! How to get access that was denied: what would grant it and who could (R19-R21 read for a
//! person who was refused).
//!
//! A denial's reason says why; a person also needs to know what to ask for and whom. What
//! would grant the access follows from the reason, the action and the record alone
//! ([`grants`], one pure function beside the rule it reads); who could grant it comes from the
//! account: the record's owner, who may add followers and pass the record on (R5, R15), and the
//! account's active admins, who may do anything (R20). Hints are data (codes, user ids, names)
//! with a sentence made from them, so a page can render its own words.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::access::{AccessDecision, Action, Reason, RecordAccess};
use crate::ids::UserId;
use crate::model::{AccountSettings, RecordRef};
use crate::read_model::AccountEntry;

/// The most admins a hint names; more are summed up as "or another admin".
pub const MAX_ADMINS_NAMED: usize = 5;

/// Something that would grant a denied access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// Being added as a follower of the record (R15, R20), by its owner or an admin.
    AddFollower,
    /// Being added as a follower of the opportunity's contact, while contact access includes
    /// opportunities (R20), by the contact's owner or an admin.
    AddContactFollower,
    /// A data scope of `all` (R2, R20), from an admin.
    DataScopeAll,
    /// Becoming the record's owner (R5), from its owner or an admin.
    BecomeOwner,
    /// Being reactivated (R3), by an admin.
    ReactivateMember,
    /// Being registered as a member of the account (R1), by an admin.
    RegisterMember,
}

impl Grant {
    /// Whether the record's owner can grant it (else only an admin can).
    fn owner_can_grant(self) -> bool {
        matches!(self, Grant::AddFollower | Grant::BecomeOwner)
    }

    fn phrase(self) -> &'static str {
        match self {
            Grant::AddFollower => "add you as a follower of the record",
            Grant::AddContactFollower => "add you as a follower of its contact",
            Grant::DataScopeAll => "give you data scope `all` (an admin only)",
            Grant::BecomeOwner => "make you the owner",
            Grant::ReactivateMember => "reactivate you",
            Grant::RegisterMember => "register you as a member of the account",
        }
    }
}

/// What would grant `action` on `record` to a user denied with `reason`, most direct first;
/// empty when nothing a person can ask for would (an unknown record).
pub fn grants(
    reason: Reason,
    action: Action,
    record: &RecordRef,
    access: Option<&RecordAccess<'_>>,
    settings: &AccountSettings,
) -> Vec<Grant> {
    let unassigned = access.is_some_and(|a| a.record.owner.is_none());
    match reason {
        Reason::NoMembership => vec![Grant::RegisterMember],
        Reason::Inactive => vec![Grant::ReactivateMember],
        Reason::OwnerChangeNotAllowed => vec![Grant::BecomeOwner],
        Reason::NotAssigned if action == Action::ChangeOwner && unassigned => {
            vec![Grant::BecomeOwner, Grant::DataScopeAll]
        }
        Reason::NotAssigned if action == Action::ChangeOwner => vec![Grant::BecomeOwner],
        Reason::NotAssigned => {
            let through_contact = settings.contact_access_includes_opportunities
                && matches!(record, RecordRef::Opportunity(_))
                && access.is_some_and(|a| a.contact.is_some());
            let mut grants = vec![Grant::AddFollower];
            if through_contact {
                grants.push(Grant::AddContactFollower);
            }
            grants.push(Grant::DataScopeAll);
            grants
        }
        _ => Vec::new(),
    }
}

/// A member who could grant access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Granter {
    pub user: UserId,
    pub name: String,
}

/// How to get a denied access: what would grant it, who could, and a sentence saying so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccessHint {
    /// What would grant the access, most direct first.
    pub grants: Vec<Grant>,
    /// The record's owner, when they can grant one of `grants` (`add_follower`,
    /// `become_owner`) and are an active member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Granter>,
    /// The account's active admins, who can grant any of them: at most five, in user order.
    pub admins: Vec<Granter>,
    /// `admins` lists only the first five.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub more_admins: bool,
    /// The hint as a sentence, e.g. "ask Bob Example (owner) or an admin (Ann Example) to add
    /// you as a follower of the record, or to give you data scope `all` (an admin only)".
    pub message: String,
}

/// The hint for `decision` of `action` on `record` in the account `entry`; `None` when the
/// access was allowed, or when nothing would grant it.
pub fn hint(
    entry: &AccountEntry,
    action: Action,
    record: &RecordRef,
    decision: AccessDecision,
) -> Option<AccessHint> {
    if decision.allowed {
        return None;
    }
    let access = crate::read_model::record_access(entry, record);
    let settings = entry.state.settings;
    let grants = grants(decision.reason, action, record, access.as_ref(), &settings);
    if grants.is_empty() {
        return None;
    }
    let granter = |user: &UserId| {
        let member = entry.state.member(user).filter(|m| m.active)?;
        Some(Granter {
            user: user.clone(),
            name: member.name.clone(),
        })
    };
    let owner = access
        .and_then(|a| a.record.owner)
        .filter(|_| grants.iter().any(|g| g.owner_can_grant()))
        .and_then(granter);
    let all_admins = entry.broad.admins();
    let admins: Vec<Granter> = all_admins
        .iter()
        .take(MAX_ADMINS_NAMED)
        .filter_map(granter)
        .collect();
    let more_admins = all_admins.len() > MAX_ADMINS_NAMED;
    let message = sentence(&grants, owner.as_ref(), &admins, more_admins);
    Some(AccessHint {
        grants,
        owner,
        admins,
        more_admins,
        message,
    })
}

/// "ask Bob Example (owner) or an admin (Ann Example) to add you as a follower of the record,
/// or to give you data scope `all` (an admin only)".
fn sentence(grants: &[Grant], owner: Option<&Granter>, admins: &[Granter], more: bool) -> String {
    let mut names: Vec<&str> = admins.iter().map(|a| a.name.as_str()).collect();
    if more {
        names.push("another admin");
    }
    let admin = match names.as_slice() {
        [] => "an admin".to_owned(),
        names => format!("an admin ({})", names.join(", ")),
    };
    let who = match owner {
        Some(o) => format!("{} (owner) or {admin}", o.name),
        None => admin,
    };
    let what: Vec<&str> = grants.iter().map(|g| g.phrase()).collect();
    format!("ask {who} to {}", what.join(", or to "))
}

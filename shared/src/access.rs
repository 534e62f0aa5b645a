//! The access rule (R19-R21): one pure function, used by the command side to authorize user
//! actors and by the read side to answer checks, so the two can never disagree.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::UserId;
use crate::model::{AccountSettings, DataScope, Follower, Membership, Role};
use crate::records::{Names, StoredFollower};

/// What a user wants to do to a record (R19).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    View,
    /// Update fields, add notes, create tasks.
    Edit,
    ManageFollowers,
    ChangeOwner,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::View,
        Action::Edit,
        Action::ManageFollowers,
        Action::ChangeOwner,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::View => "view",
            Action::Edit => "edit",
            Action::ManageFollowers => "manage_followers",
            Action::ChangeOwner => "change_owner",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a decision was made (R21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    // allowed because
    Admin,
    AllData,
    Owner,
    Follower,
    ContactOwner,
    ContactFollower,
    // denied because
    NoMembership,
    Inactive,
    NotAssigned,
    OwnerChangeNotAllowed,
    UnknownRecord,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Admin => "admin",
            Reason::AllData => "all_data",
            Reason::Owner => "owner",
            Reason::Follower => "follower",
            Reason::ContactOwner => "contact_owner",
            Reason::ContactFollower => "contact_follower",
            Reason::NoMembership => "no_membership",
            Reason::Inactive => "inactive",
            Reason::NotAssigned => "not_assigned",
            Reason::OwnerChangeNotAllowed => "owner_change_not_allowed",
            Reason::UnknownRecord => "unknown_record",
        }
    }

    /// A sentence for a denial, used in error replies.
    pub fn explain(self) -> &'static str {
        match self {
            Reason::NoMembership => "the user has no membership in this account",
            Reason::Inactive => "the user is deactivated",
            Reason::NotAssigned => {
                "the user's data scope is only_assigned and they neither own nor follow the record"
            }
            Reason::OwnerChangeNotAllowed => {
                "only an admin or the current owner may change the owner (R5)"
            }
            Reason::UnknownRecord => "the record does not exist",
            _ => "access is allowed",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decision and its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccessDecision {
    pub allowed: bool,
    pub reason: Reason,
}

impl AccessDecision {
    fn allow(reason: Reason) -> Self {
        Self {
            allowed: true,
            reason,
        }
    }
    fn deny(reason: Reason) -> Self {
        Self {
            allowed: false,
            reason,
        }
    }
}

/// Who owns and follows one record.
#[derive(Debug, Clone, Copy)]
pub struct Holders<'a> {
    pub owner: Option<&'a UserId>,
    pub followers: FollowerList<'a>,
}

/// A record's followers: as the deciders hold them, or as the read model stores them, with
/// users by number ([`crate::records`]).
#[derive(Debug, Clone, Copy)]
pub enum FollowerList<'a> {
    Listed(&'a [Follower]),
    Numbered {
        followers: &'a [StoredFollower],
        names: &'a Names,
    },
}

impl<'a> From<&'a [Follower]> for FollowerList<'a> {
    fn from(followers: &'a [Follower]) -> Self {
        FollowerList::Listed(followers)
    }
}

impl<'a> From<&'a Vec<Follower>> for FollowerList<'a> {
    fn from(followers: &'a Vec<Follower>) -> Self {
        FollowerList::Listed(followers)
    }
}

impl<'a> FollowerList<'a> {
    /// The followers' users, in list order.
    pub fn users(self) -> impl Iterator<Item = &'a UserId> + use<'a> {
        let (listed, numbered, names) = match self {
            FollowerList::Listed(l) => (l, &[][..], None),
            FollowerList::Numbered { followers, names } => (&[][..], followers, Some(names)),
        };
        let numbered = numbered
            .iter()
            .filter_map(move |f| names.and_then(|n| n.user(f.user())));
        listed.iter().map(|f| &f.user).chain(numbered)
    }
}

impl<'a> Holders<'a> {
    /// Everyone who holds the record: its owner, then its followers.
    pub fn users(&self) -> impl Iterator<Item = &'a UserId> + use<'a> {
        self.owner.into_iter().chain(self.followers.users())
    }

    fn follows(&self, user: &UserId) -> bool {
        match self.followers {
            FollowerList::Listed(l) => l.iter().any(|f| &f.user == user),
            FollowerList::Numbered { followers, names } => {
                followers.iter().any(|f| names.user(f.user()) == Some(user))
            }
        }
    }
}

/// What the rule needs to know about the record: its holders and, for an opportunity, its
/// contact's holders.
#[derive(Debug, Clone, Copy)]
pub struct RecordAccess<'a> {
    pub record: Holders<'a>,
    pub contact: Option<Holders<'a>>,
}

/// How `user` relates to the record, most direct first.
fn relation(user: &UserId, r: &RecordAccess<'_>, settings: &AccountSettings) -> Option<Reason> {
    if r.record.owner == Some(user) {
        return Some(Reason::Owner);
    }
    if r.record.follows(user) {
        return Some(Reason::Follower);
    }
    if settings.contact_access_includes_opportunities
        && let Some(contact) = &r.contact
    {
        if contact.owner == Some(user) {
            return Some(Reason::ContactOwner);
        }
        if contact.follows(user) {
            return Some(Reason::ContactFollower);
        }
    }
    None
}

/// Decides whether `user` (with `membership` in the record's account, if any) may do `action` to
/// the record (`None`: it does not exist), following R20 in order.
pub fn decide_access(
    user: &UserId,
    membership: Option<&Membership>,
    settings: &AccountSettings,
    record: Option<&RecordAccess<'_>>,
    action: Action,
) -> AccessDecision {
    let Some(member) = membership else {
        return AccessDecision::deny(Reason::NoMembership);
    };
    if !member.active {
        return AccessDecision::deny(Reason::Inactive);
    }
    let Some(record) = record else {
        return AccessDecision::deny(Reason::UnknownRecord);
    };
    if member.role == Role::Admin {
        return AccessDecision::allow(Reason::Admin);
    }
    let relation = relation(user, record, settings);
    if action == Action::ChangeOwner {
        // R5: the current owner; or anyone with scope `all` when the record is unassigned.
        return match (relation, member.data_scope) {
            (Some(Reason::Owner), _) => AccessDecision::allow(Reason::Owner),
            (_, DataScope::All) if record.record.owner.is_none() => {
                AccessDecision::allow(Reason::AllData)
            }
            (Some(_), _) | (None, DataScope::All) => {
                AccessDecision::deny(Reason::OwnerChangeNotAllowed)
            }
            (None, DataScope::OnlyAssigned) => AccessDecision::deny(Reason::NotAssigned),
        };
    }
    match (member.data_scope, relation) {
        (DataScope::All, _) => AccessDecision::allow(Reason::AllData),
        (DataScope::OnlyAssigned, Some(reason)) => AccessDecision::allow(reason),
        (DataScope::OnlyAssigned, None) => AccessDecision::deny(Reason::NotAssigned),
    }
}

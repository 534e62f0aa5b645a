//! The nouns of the rules (docs/rules.md): actors, memberships, account settings, records and follower entries.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{ContactId, EventId, OpportunityId, UserId, WorkflowId};

/// Who issued a command (R22): a user, a workflow of the CRM, or the system itself (the follower
/// sync, an import, an operator).
///
/// On the wire `{"kind": "user", "user": "u-1"}`. It is read through [`ActorFields`], a plain
/// struct, rather than as an internally tagged enum: serde reads those from any JSON value, an
/// array included, so `["user", "u-1"]` would pass as a user (see `wire::strict`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", try_from = "ActorFields")]
pub enum Actor {
    User { user: UserId },
    Workflow { workflow: WorkflowId },
    System,
}

/// An actor as its JSON object has it; [`Actor`] checks that the fields fit the kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActorFields {
    kind: ActorKind,
    #[serde(default)]
    user: Option<UserId>,
    #[serde(default)]
    workflow: Option<WorkflowId>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ActorKind {
    User,
    Workflow,
    System,
}

impl TryFrom<ActorFields> for Actor {
    type Error = &'static str;

    fn try_from(f: ActorFields) -> Result<Self, Self::Error> {
        match (f.kind, f.user, f.workflow) {
            (ActorKind::User, Some(user), None) => Ok(Actor::User { user }),
            (ActorKind::Workflow, None, Some(workflow)) => Ok(Actor::Workflow { workflow }),
            (ActorKind::System, None, None) => Ok(Actor::System),
            (ActorKind::User, ..) => Err("a `user` actor has exactly the field `user`"),
            (ActorKind::Workflow, ..) => Err("a `workflow` actor has exactly the field `workflow`"),
            (ActorKind::System, ..) => Err("a `system` actor has no other field"),
        }
    }
}

/// What `Deserialize` accepts (through [`ActorFields`]): `kind` and exactly the field of that
/// kind; the other kind's field may only be `null` (an absent `Option`).
impl JsonSchema for Actor {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Actor".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let user = generator.subschema_for::<UserId>();
        let workflow = generator.subschema_for::<WorkflowId>();
        let kind = |kind: &str, field: Option<&str>| {
            let mut properties = serde_json::Map::new();
            properties.insert("kind".into(), serde_json::json!({"const": kind}));
            for (name, schema) in [("user", &user), ("workflow", &workflow)] {
                let value = if field == Some(name) {
                    schema.clone().to_value()
                } else {
                    serde_json::json!({"type": "null"})
                };
                properties.insert(name.into(), value);
            }
            let required: Vec<&str> = std::iter::once("kind").chain(field).collect();
            serde_json::json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            })
        };
        schemars::json_schema!({
            "description": "Who issued a command: a user, a workflow, or the system.",
            "oneOf": [
                kind("user", Some("user")),
                kind("workflow", Some("workflow")),
                kind("system", None),
            ],
        })
    }
}

impl Actor {
    pub fn user(&self) -> Option<&UserId> {
        match self {
            Actor::User { user } => Some(user),
            _ => None,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User { user } => write!(f, "user {user}"),
            Actor::Workflow { workflow } => write!(f, "workflow {workflow}"),
            Actor::System => f.write_str("system"),
        }
    }
}

/// A member's role in one account (R2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    User,
}

/// A member's data scope (R2): everything in the account, or only what is assigned to them
/// (the "Only Assigned Data" permission).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DataScope {
    All,
    OnlyAssigned,
}

/// A user's membership in one account (R2, R3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub name: String,
    pub email: String,
    pub role: Role,
    pub data_scope: DataScope,
    pub active: bool,
}

/// The account's ownership and access settings (R7-R9, R20). Defaults are the rules' (docs/rules.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    /// R7: "Allow different owners for contacts and its opportunities". Off: owners are coupled.
    #[serde(default)]
    pub allow_different_owners: bool,
    /// R8: "Sync Contact Follower with Opportunity Owner" (has effect only when decoupled).
    #[serde(default)]
    pub sync_contact_follower_with_opportunity_owner: bool,
    /// R9: "Sync Opportunity Follower with Contact Owner" (has effect only when decoupled).
    #[serde(default)]
    pub sync_opportunity_follower_with_contact_owner: bool,
    /// R20: "contact access includes linked opportunities" (on by default).
    #[serde(default = "yes")]
    pub contact_access_includes_opportunities: bool,
}

fn yes() -> bool {
    true
}

impl Default for AccountSettings {
    fn default() -> Self {
        Self {
            allow_different_owners: false,
            sync_contact_follower_with_opportunity_owner: false,
            sync_opportunity_follower_with_contact_owner: false,
            contact_access_includes_opportunities: true,
        }
    }
}

impl AccountSettings {
    /// R7 off: an opportunity's owner always equals its contact's owner.
    pub fn owners_coupled(&self) -> bool {
        !self.allow_different_owners
    }

    /// R8 in effect.
    pub fn syncs_contact_follower_with_opportunity_owner(&self) -> bool {
        self.allow_different_owners && self.sync_contact_follower_with_opportunity_owner
    }

    /// R9 in effect.
    pub fn syncs_opportunity_follower_with_contact_owner(&self) -> bool {
        self.allow_different_owners && self.sync_opportunity_follower_with_contact_owner
    }
}

/// A change to some of the settings; absent fields keep their value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_different_owners: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_contact_follower_with_opportunity_owner: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_opportunity_follower_with_contact_owner: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_access_includes_opportunities: Option<bool>,
}

impl SettingsChange {
    pub fn apply_to(&self, mut s: AccountSettings) -> AccountSettings {
        if let Some(v) = self.allow_different_owners {
            s.allow_different_owners = v;
        }
        if let Some(v) = self.sync_contact_follower_with_opportunity_owner {
            s.sync_contact_follower_with_opportunity_owner = v;
        }
        if let Some(v) = self.sync_opportunity_follower_with_contact_owner {
            s.sync_opportunity_follower_with_contact_owner = v;
        }
        if let Some(v) = self.contact_access_includes_opportunities {
            s.contact_access_includes_opportunities = v;
        }
        s
    }
}

/// The two kinds of record that have owners and followers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Contact,
    Opportunity,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Contact => "contact",
            RecordKind::Opportunity => "opportunity",
        }
    }
}

/// A contact or an opportunity, by id. On the wire: `{"kind": "contact", "id": "c-1"}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "kind",
    content = "id",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum RecordRef {
    Contact(ContactId),
    Opportunity(OpportunityId),
}

impl RecordRef {
    pub fn kind(&self) -> RecordKind {
        match self {
            RecordRef::Contact(_) => RecordKind::Contact,
            RecordRef::Opportunity(_) => RecordKind::Opportunity,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            RecordRef::Contact(c) => c.as_str(),
            RecordRef::Opportunity(o) => o.as_str(),
        }
    }
}

impl fmt::Display for RecordRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind().as_str(), self.id())
    }
}

impl fmt::Debug for RecordRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind().as_str(), self.id())
    }
}

/// How a follower came to follow a record (R8, R9, R18).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum AddedHow {
    /// By a user, on the record's form or detail page.
    Manual,
    /// By a workflow action (R17).
    Workflow { workflow: WorkflowId },
    /// By the owner sync (R8, R9), because `from` changed its owner to this user.
    OwnerSync { from: RecordRef },
    /// By the system (an import or an operator).
    System,
}

impl AddedHow {
    /// How a plain add by `actor` is recorded.
    pub fn for_actor(actor: &crate::model::Actor) -> Self {
        match actor {
            Actor::User { .. } => AddedHow::Manual,
            Actor::Workflow { workflow } => AddedHow::Workflow {
                workflow: workflow.clone(),
            },
            Actor::System => AddedHow::System,
        }
    }
}

/// One follower of a record, with what R18 asks to show about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Follower {
    pub user: UserId,
    pub added_at: DateTime<Utc>,
    /// Shared: the read model keeps each actor and each way of adding once per account (issue
    /// 14), as most followers of an account were added by a few actors the same way.
    pub added_by: Arc<Actor>,
    #[serde(flatten)]
    pub how: Arc<AddedHow>,
    /// When the system removes the follower (issue 17.4): a `follower_expired` event at that
    /// time. `None`: until removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    /// The event that set `until`: the expiry's command id and cause derive from it, so an
    /// `until` set again to the same time (by a later event) is a new expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_set_by: Option<EventId>,
}

/// Why the owner sync left a user alone (R10). Recorded in the history, never silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The user already owns the record.
    AlreadyOwner,
    /// The user already follows the record.
    AlreadyFollower,
    /// The user is deactivated (R3).
    Inactive,
    /// The user has no membership in the account (R1).
    NotMember,
    /// The record already has the maximum number of followers (R11).
    FollowerLimitReached,
    /// Removal only: the follower was not added by this owner sync (R8, R9), so it stays.
    NotAddedBySync,
}

/// The most followers a contact or an opportunity may have (R11).
pub const MAX_FOLLOWERS: usize = 10;

//! Events: the facts of the history (R22). Never rewritten; read back with their schema version.
//!
//! On the wire an event is one flat JSON object: the schema version `v`, the `type`, the `meta`
//! block and the type's own fields, for example
//! `{"v":1,"type":"followers_added","meta":{...},"record":{"kind":"contact","id":"c1"},"followers":[...]}`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::caller::Caller;
use crate::ids::{AccountId, CommandId, ContactId, EventId, OpportunityId, UserId};
use crate::model::{AccountSettings, Actor, AddedHow, DataScope, RecordRef, Role, SkipReason};

/// The newest schema version this code writes and reads. Readers accept every version up to
/// this one and upcast older ones; a newer version is refused rather than misread.
///
/// Each event is written with the lowest version that can read it ([`EventBody::schema`]):
/// 1 for everything a reader of version 1 reads in full; 2 for what followers until a date
/// (issue 17.4) added (`follower_until_changed`, `follower_expired`, and a `followers_added`
/// that gives an `until`), so that a reader of version 1 refuses those, never reads a follower
/// with an `until` as one without.
pub const EVENT_SCHEMA: u16 = 2;

/// Who, when, and why (R22): carried by every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EventMeta {
    pub event_id: EventId,
    /// The command that produced this event.
    pub command_id: CommandId,
    /// The event that triggered the command, for reactions of the follower sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation: Option<EventId>,
    /// Groups everything that followed from one outside request.
    pub correlation: Uuid,
    pub actor: Actor,
    /// Who sent the command, as the NATS server named it (only where the command service
    /// checks callers; see [`crate::caller`]). Absent for the follower sync's commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<Caller>,
    pub at: DateTime<Utc>,
}

/// One event: its schema version, metadata and what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    pub v: u16,
    pub meta: EventMeta,
    #[serde(flatten)]
    pub body: EventBody,
}

/// Whether the owner sync was adding or removing a follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncAction {
    Add,
    Remove,
}

/// A follower added by one event, and how (R18).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AddedFollower {
    pub user: UserId,
    #[serde(flatten)]
    pub how: AddedHow,
    /// When the system removes this follower (issue 17.4); absent: until removed. Events
    /// written before `until` existed have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    // --- the account stream: settings and memberships ---
    AccountOpened {
        account: AccountId,
        name: String,
        settings: AccountSettings,
    },
    MemberRegistered {
        user: UserId,
        name: String,
        email: String,
        role: Role,
        data_scope: DataScope,
    },
    MemberRoleChanged {
        user: UserId,
        role: Role,
    },
    MemberDataScopeChanged {
        user: UserId,
        data_scope: DataScope,
    },
    MemberDeactivated {
        user: UserId,
    },
    MemberReactivated {
        user: UserId,
    },
    /// The settings as they are after the change.
    SettingsChanged {
        settings: AccountSettings,
    },

    // --- record streams: one per contact and per opportunity ---
    ContactCreated {
        contact: ContactId,
        owner: Option<UserId>,
    },
    /// An opportunity, linked to exactly one contact for its whole life (R4).
    OpportunityCreated {
        opportunity: OpportunityId,
        contact: ContactId,
        owner: Option<UserId>,
    },
    OwnerChanged {
        record: RecordRef,
        from: Option<UserId>,
        to: Option<UserId>,
        /// Set when the change mirrors an owner change of the linked record because owners are
        /// coupled (R7).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        coupled_with: Option<RecordRef>,
    },
    FollowersAdded {
        record: RecordRef,
        followers: Vec<AddedFollower>,
    },
    FollowersRemoved {
        record: RecordRef,
        users: Vec<UserId>,
        /// Set when the owner sync removed them because `from` changed owner (R8, R9).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner_sync_from: Option<RecordRef>,
    },
    /// A follower's `until` was set, moved or cleared (`None`) by `change_follower_until`
    /// (issue 17.4).
    FollowerUntilChanged {
        record: RecordRef,
        user: UserId,
        until: Option<DateTime<Utc>>,
    },
    /// The system removed a follower because its `until` came (issue 17.4): once per expiry,
    /// whichever instance of the command service saw it due.
    FollowerExpired {
        record: RecordRef,
        user: UserId,
        until: DateTime<Utc>,
    },
    /// The owner sync left a user alone, and why (R10).
    FollowerSyncSkipped {
        record: RecordRef,
        user: UserId,
        action: SyncAction,
        reason: SkipReason,
        trigger: RecordRef,
    },
}

impl EventBody {
    /// The lowest schema version that reads this event in full: what it is written with.
    pub fn schema(&self) -> u16 {
        match self {
            EventBody::FollowerUntilChanged { .. } | EventBody::FollowerExpired { .. } => 2,
            EventBody::FollowersAdded { followers, .. }
                if followers.iter().any(|f| f.until.is_some()) =>
            {
                2
            }
            _ => 1,
        }
    }

    /// The event's `type` tag, as written in JSON.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventBody::AccountOpened { .. } => "account_opened",
            EventBody::MemberRegistered { .. } => "member_registered",
            EventBody::MemberRoleChanged { .. } => "member_role_changed",
            EventBody::MemberDataScopeChanged { .. } => "member_data_scope_changed",
            EventBody::MemberDeactivated { .. } => "member_deactivated",
            EventBody::MemberReactivated { .. } => "member_reactivated",
            EventBody::SettingsChanged { .. } => "settings_changed",
            EventBody::ContactCreated { .. } => "contact_created",
            EventBody::OpportunityCreated { .. } => "opportunity_created",
            EventBody::OwnerChanged { .. } => "owner_changed",
            EventBody::FollowersAdded { .. } => "followers_added",
            EventBody::FollowersRemoved { .. } => "followers_removed",
            EventBody::FollowerUntilChanged { .. } => "follower_until_changed",
            EventBody::FollowerExpired { .. } => "follower_expired",
            EventBody::FollowerSyncSkipped { .. } => "follower_sync_skipped",
        }
    }
}

/// Why stored bytes could not be read as events.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("stored data is not a valid commit: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "event schema version {found} is newer than this program understands ({EVENT_SCHEMA}); upgrade it"
    )]
    NewerSchema { found: u16 },
    /// The data is stored where no commit belongs: under a name (a NATS subject, an
    /// EventStoreDB stream) that names no followers stream, or with a type or a stream of its
    /// own that does not match where it is stored.
    #[error("stored data is not where a commit belongs: {0}")]
    Misplaced(String),
}

impl Event {
    /// Checks the schema version after deserializing. Version 2 only added fields and types that
    /// version 1 events never have (17.4), so there is nothing to upcast yet; a future version
    /// that changes a body's shape would convert older bodies here.
    pub fn check_schema(&self) -> Result<(), DecodeError> {
        if self.v > EVENT_SCHEMA {
            return Err(DecodeError::NewerSchema { found: self.v });
        }
        Ok(())
    }
}

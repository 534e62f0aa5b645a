//! Commands: what a caller (or the follower sync) asks to change.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::caller::Caller;
use crate::event::{EVENT_SCHEMA, Event, EventBody, EventMeta, SyncAction};
use crate::ids::{AccountId, CommandId, ContactId, EventId, OpportunityId, UserId};
use crate::model::{Actor, DataScope, RecordRef, Role, SettingsChange};

/// Who sent a command, when, and as part of what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMeta {
    pub command_id: CommandId,
    pub actor: Actor,
    /// Who sent it, as the NATS server named it; `None` for the follower sync's commands and
    /// where callers are not checked.
    pub caller: Option<Caller>,
    pub correlation: Uuid,
    /// For commands of the follower sync: the event that triggered them.
    pub causation: Option<EventId>,
    /// When the service received the command; the time its events carry.
    pub at: DateTime<Utc>,
}

impl CommandMeta {
    /// The `index`-th event of this command's commit.
    pub fn event(&self, index: usize, body: EventBody) -> Event {
        Event {
            v: EVENT_SCHEMA,
            meta: EventMeta {
                event_id: EventId::derive(self.command_id, index),
                command_id: self.command_id,
                causation: self.causation,
                correlation: self.correlation,
                actor: self.actor.clone(),
                caller: self.caller.clone(),
                at: self.at,
            },
            body,
        }
    }

    /// Wraps event bodies into events, numbered in order.
    pub fn events(&self, bodies: Vec<EventBody>) -> Vec<Event> {
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, b)| self.event(i, b))
            .collect()
    }
}

/// A command for one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub account: AccountId,
    pub meta: CommandMeta,
    pub body: CommandBody,
}

/// What is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    // --- the account: settings and memberships ---
    OpenAccount {
        name: String,
        settings: SettingsChange,
    },
    RegisterMember {
        user: UserId,
        name: String,
        email: String,
        role: Role,
        data_scope: DataScope,
    },
    ChangeMemberRole {
        user: UserId,
        role: Role,
    },
    ChangeMemberDataScope {
        user: UserId,
        data_scope: DataScope,
    },
    DeactivateMember {
        user: UserId,
    },
    ReactivateMember {
        user: UserId,
    },
    ChangeSettings(SettingsChange),

    // --- records ---
    CreateContact {
        contact: ContactId,
        owner: Option<UserId>,
        followers: Vec<UserId>,
    },
    /// `owner: None` takes the contact's owner (R6).
    CreateOpportunity {
        opportunity: OpportunityId,
        contact: ContactId,
        owner: Option<UserId>,
        followers: Vec<UserId>,
    },
    /// `owner: None` unassigns the record (R4).
    ChangeOwner {
        record: RecordRef,
        owner: Option<UserId>,
    },
    /// `record: None` only from a workflow without record context: nothing happens (R17).
    AddFollowers {
        record: Option<RecordRef>,
        users: Vec<UserId>,
    },
    RemoveFollowers {
        record: Option<RecordRef>,
        users: Vec<UserId>,
    },

    // --- issued by the follower sync only, never accepted from the wire ---
    /// Mirror the linked record's new owner because owners are coupled (R7).
    AlignOwner {
        record: RecordRef,
        owner: Option<UserId>,
        with: RecordRef,
    },
    /// Add or remove one follower because `trigger` changed its owner (R8, R9, R10).
    SyncFollower {
        record: RecordRef,
        user: UserId,
        action: SyncAction,
        trigger: RecordRef,
    },
}

/// Which aggregate decides a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Account,
    Record(RecordRef),
    /// A workflow command without record context: nothing to do (R17).
    Nothing,
}

impl CommandBody {
    pub fn target(&self) -> Target {
        use CommandBody::*;
        match self {
            OpenAccount { .. }
            | RegisterMember { .. }
            | ChangeMemberRole { .. }
            | ChangeMemberDataScope { .. }
            | DeactivateMember { .. }
            | ReactivateMember { .. }
            | ChangeSettings(_) => Target::Account,
            CreateContact { contact, .. } => Target::Record(RecordRef::Contact(contact.clone())),
            CreateOpportunity { opportunity, .. } => {
                Target::Record(RecordRef::Opportunity(opportunity.clone()))
            }
            ChangeOwner { record, .. }
            | AlignOwner { record, .. }
            | SyncFollower { record, .. } => Target::Record(record.clone()),
            AddFollowers { record, .. } | RemoveFollowers { record, .. } => match record {
                Some(r) => Target::Record(r.clone()),
                None => Target::Nothing,
            },
        }
    }

    /// The command's name on the wire (the last token of its subject).
    pub fn name(&self) -> &'static str {
        use CommandBody::*;
        match self {
            OpenAccount { .. } => "open_account",
            RegisterMember { .. } => "register_member",
            ChangeMemberRole { .. } => "change_member_role",
            ChangeMemberDataScope { .. } => "change_member_data_scope",
            DeactivateMember { .. } => "deactivate_member",
            ReactivateMember { .. } => "reactivate_member",
            ChangeSettings(_) => "change_settings",
            CreateContact { .. } => "create_contact",
            CreateOpportunity { .. } => "create_opportunity",
            ChangeOwner { .. } => "change_owner",
            AddFollowers { .. } => "add_followers",
            RemoveFollowers { .. } => "remove_followers",
            AlignOwner { .. } => "align_owner",
            SyncFollower { .. } => "sync_follower",
        }
    }
}

//! Commands: what a caller (or the follower sync) asks to change.
//!
//! Each aggregate has its own command enum, so a decider is only ever given its own commands
//! and no routing can go wrong at run time:
//! - [`AccountCommand`]: the account's settings and memberships (decided by [`crate::account`]);
//! - [`RecordCommand`]: contacts, opportunities, owners and followers (decided by
//!   [`crate::record`]);
//! - [`SyncCommand`]: the follower sync's reactions (R7-R10), also decided by
//!   [`crate::record`]. It has no `Deserialize`: the wire parser can never produce one.
//!
//! Each variant wraps a named payload struct. The payloads of the first two are read straight
//! from the wire, through the strict policy ([`crate::wire::strict`]): unknown fields are
//! refused (`deny_unknown_fields`) and every field is a validated newtype ([`crate::ids`],
//! [`crate::bounded`]), so a payload that exists is well formed.
//!
//! Every command's name (the last token of its subject) is written once, in the
//! `commands!` table below, which gives both `name()` and the parsing by name.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::bounded::{SomeUsers, Text, Users};
use crate::caller::Caller;
use crate::event::{Event, EventBody, EventMeta, SyncAction};
use crate::ids::{AccountId, CommandId, ContactId, EventId, OpportunityId, UserId};
use crate::model::{Actor, DataScope, RecordRef, Role, SettingsChange};
use crate::wire::strict::{self, StrictError};

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
            v: body.schema(),
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
    /// Decide it as for real, but append nothing and remember nothing: the reply says what it
    /// would do (docs/protocol.md, section 3.17).
    pub dry_run: bool,
}

/// What is asked, and so which decider decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandBody {
    Account(AccountCommand),
    Record(RecordCommand),
    /// Issued by the follower sync only, never accepted from the wire.
    Sync(SyncCommand),
}

/// Declares a command enum whose variants each wrap one payload struct, with each command's
/// name written once: `name()` and `NAMES` come from it, and with `wire`, the parsing by name.
macro_rules! commands {
    (@enum $(#[$m:meta])* $enum:ident { $($(#[$vm:meta])* $name:literal => $variant:ident($payload:ty),)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $enum {
            $($(#[$vm])* $variant($payload),)*
        }

        impl $enum {
            /// Every name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// The command's name on the wire (the last token of its subject).
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $name,)*
                }
            }
        }
    };
    (wire $($rest:tt)*) => {
        commands!(@enum $($rest)*);
        commands!(@parse $($rest)*);
    };
    (internal $($rest:tt)*) => {
        commands!(@enum $($rest)*);
    };
    (@parse $(#[$m:meta])* $enum:ident { $($(#[$vm:meta])* $name:literal => $variant:ident($payload:ty),)* }) => {
        impl $enum {
            /// Reads the command named `name` from a request's own fields, strictly; `None`
            /// when `name` is not one of these commands.
            pub fn from_wire(name: &str, fields: &Value) -> Option<Result<Self, StrictError>> {
                match name {
                    $($name => Some(strict::from_value::<$payload>("", fields).map(Self::$variant)),)*
                    _ => None,
                }
            }

            /// The JSON Schema of the fields of the command named `name` (a root schema, with
            /// its definitions); `None` when `name` is not one of these commands.
            pub fn payload_schema(
                name: &str,
                generator: &mut schemars::SchemaGenerator,
            ) -> Option<schemars::Schema> {
                match name {
                    $($name => Some(generator.root_schema_for::<$payload>()),)*
                    _ => None,
                }
            }
        }
    };
}

commands!(wire
    /// The account's commands (R2, R3, R7-R9, R20): from the system or an active admin.
    AccountCommand {
        "open_account" => OpenAccount(OpenAccount),
        "register_member" => RegisterMember(RegisterMember),
        "change_member_role" => ChangeMemberRole(ChangeMemberRole),
        "change_member_data_scope" => ChangeMemberDataScope(ChangeMemberDataScope),
        "deactivate_member" => DeactivateMember(DeactivateMember),
        "reactivate_member" => ReactivateMember(ReactivateMember),
        "change_settings" => ChangeSettings(ChangeSettings),
    }
);

commands!(wire
    /// The records' commands (R4-R18), from users and workflows (and the system).
    RecordCommand {
        "create_contact" => CreateContact(CreateContact),
        "create_opportunity" => CreateOpportunity(CreateOpportunity),
        "change_owner" => ChangeOwner(ChangeOwner),
        "add_followers" => AddFollowers(AddFollowers),
        "remove_followers" => RemoveFollowers(RemoveFollowers),
        "change_follower_until" => ChangeFollowerUntil(ChangeFollowerUntil),
    }
);

commands!(internal
    /// The system's own commands: the follower sync's reactions (R7-R10) and the expiry of a
    /// follower whose `until` came (issue 17.4). Not `Deserialize`: no request can name one.
    SyncCommand {
        "align_owner" => AlignOwner(AlignOwner),
        "sync_follower" => SyncFollower(SyncFollower),
        "expire_follower" => ExpireFollower(ExpireFollower),
    }
);

// ----- the account's payloads -----

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAccount {
    pub name: Text,
    #[serde(default)]
    pub settings: SettingsChange,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterMember {
    pub user: UserId,
    pub name: Text,
    pub email: Text,
    pub role: Role,
    pub data_scope: DataScope,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeMemberRole {
    pub user: UserId,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeMemberDataScope {
    pub user: UserId,
    pub data_scope: DataScope,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeactivateMember {
    pub user: UserId,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReactivateMember {
    pub user: UserId,
}

/// On the wire, the settings' own fields, each optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct ChangeSettings {
    pub change: SettingsChange,
}

// ----- the records' payloads -----

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateContact {
    pub contact: ContactId,
    #[serde(default)]
    pub owner: Option<UserId>,
    #[serde(default)]
    pub followers: Users,
}

/// `owner: None` takes the contact's owner (R6).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOpportunity {
    pub opportunity: OpportunityId,
    pub contact: ContactId,
    #[serde(default)]
    pub owner: Option<UserId>,
    #[serde(default)]
    pub followers: Users,
}

/// `owner: None` unassigns the record (R4). On the wire `owner` is required: a user, or `null`
/// to unassign, so that a forgotten field never unassigns a record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = owner_required)]
pub struct ChangeOwner {
    pub record: RecordRef,
    #[serde(deserialize_with = "required")]
    pub owner: Option<UserId>,
}

/// An `Option` field that must be present, even if `null` (serde makes a missing `Option`
/// field `None` unless the field has its own `deserialize_with`).
fn required<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    T::deserialize(d)
}

/// The schema of [`ChangeOwner`]: `owner` is required, as [`required`] makes it, and may be
/// `null`.
fn owner_required(schema: &mut schemars::Schema) {
    if let Some(serde_json::Value::Array(required)) = schema.get_mut("required")
        && !required.iter().any(|r| r == "owner")
    {
        required.push("owner".into());
    }
}

/// `record: None` only from a workflow without record context: nothing happens (R17).
///
/// `until` (issue 17.4): for some of `users`, when the system removes them again. Each key must
/// be one of `users`, each time in the future when the command is decided. A user who already
/// follows keeps their entry, `until` included (`change_follower_until` changes it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddFollowers {
    #[serde(default)]
    pub record: Option<RecordRef>,
    pub users: SomeUsers,
    #[serde(default)]
    pub until: BTreeMap<UserId, DateTime<Utc>>,
}

/// Sets, moves or clears (`until: null`) when the system removes one follower (issue 17.4).
/// On the wire `until` is required, so that a forgotten field never clears it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = until_required)]
pub struct ChangeFollowerUntil {
    pub record: RecordRef,
    pub user: UserId,
    #[serde(deserialize_with = "required")]
    pub until: Option<DateTime<Utc>>,
}

/// The schema of [`ChangeFollowerUntil`]: `until` is required and may be `null`.
fn until_required(schema: &mut schemars::Schema) {
    if let Some(serde_json::Value::Array(required)) = schema.get_mut("required")
        && !required.iter().any(|r| r == "until")
    {
        required.push("until".into());
    }
}

/// `record: None` only from a workflow without record context: nothing happens (R17).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveFollowers {
    #[serde(default)]
    pub record: Option<RecordRef>,
    pub users: SomeUsers,
}

// ----- the follower sync's payloads -----

/// Mirror the linked record's new owner because owners are coupled (R7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlignOwner {
    pub record: RecordRef,
    pub owner: Option<UserId>,
    pub with: RecordRef,
}

/// Add or remove one follower because `trigger` changed its owner (R8, R9, R10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFollower {
    pub record: RecordRef,
    pub user: UserId,
    pub action: SyncAction,
    pub trigger: RecordRef,
}

/// Remove `user` from `record` because its `until` came (issue 17.4): the expiry scheduler's
/// command, with an id derived from the event that set the `until` and the three fields
/// ([`crate::expiry::command_id`]). Nothing
/// happens unless `user` still follows with this very `until`, and it is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpireFollower {
    pub record: RecordRef,
    pub user: UserId,
    pub until: DateTime<Utc>,
}

/// Every command name a request may carry: the account's, then the records'.
pub const COMMAND_NAMES: [&str; AccountCommand::NAMES.len() + RecordCommand::NAMES.len()] =
    concat(AccountCommand::NAMES, RecordCommand::NAMES);

const fn concat<const N: usize>(a: &[&'static str], b: &[&'static str]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < a.len() {
        out[i] = a[i];
        i += 1;
    }
    let mut j = 0;
    while j < b.len() {
        out[i + j] = b[j];
        j += 1;
    }
    out
}

impl RecordCommand {
    /// The record the command is about; `None` for a follower command without record (R17).
    pub fn record(&self) -> Option<RecordRef> {
        match self {
            RecordCommand::CreateContact(c) => Some(RecordRef::Contact(c.contact.clone())),
            RecordCommand::CreateOpportunity(c) => {
                Some(RecordRef::Opportunity(c.opportunity.clone()))
            }
            RecordCommand::ChangeOwner(c) => Some(c.record.clone()),
            RecordCommand::AddFollowers(c) => c.record.clone(),
            RecordCommand::RemoveFollowers(c) => c.record.clone(),
            RecordCommand::ChangeFollowerUntil(c) => Some(c.record.clone()),
        }
    }
}

impl SyncCommand {
    /// The record the reaction changes.
    pub fn record(&self) -> &RecordRef {
        match self {
            SyncCommand::AlignOwner(c) => &c.record,
            SyncCommand::SyncFollower(c) => &c.record,
            SyncCommand::ExpireFollower(c) => &c.record,
        }
    }
}

/// Which stream a command is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Account,
    Record(RecordRef),
    /// A follower command without record context: nothing to do (R17).
    Nothing,
}

impl CommandBody {
    pub fn target(&self) -> Target {
        match self {
            CommandBody::Account(_) => Target::Account,
            CommandBody::Record(c) => c.record().map_or(Target::Nothing, Target::Record),
            CommandBody::Sync(c) => Target::Record(c.record().clone()),
        }
    }

    /// The command's name on the wire (the last token of its subject).
    pub fn name(&self) -> &'static str {
        match self {
            CommandBody::Account(c) => c.name(),
            CommandBody::Record(c) => c.name(),
            CommandBody::Sync(c) => c.name(),
        }
    }
}

impl From<AccountCommand> for CommandBody {
    fn from(c: AccountCommand) -> Self {
        CommandBody::Account(c)
    }
}

impl From<RecordCommand> for CommandBody {
    fn from(c: RecordCommand) -> Self {
        CommandBody::Record(c)
    }
}

impl From<SyncCommand> for CommandBody {
    fn from(c: SyncCommand) -> Self {
        CommandBody::Sync(c)
    }
}

/// `From` each payload into its command enum and into [`CommandBody`], so a test or the sync
/// can write `AddFollowers { .. }.into()`.
macro_rules! payload_into {
    ($enum:ident: $($variant:ident),*) => {$(
        impl From<$variant> for $enum {
            fn from(p: $variant) -> Self {
                $enum::$variant(p)
            }
        }
        impl From<$variant> for CommandBody {
            fn from(p: $variant) -> Self {
                CommandBody::from($enum::$variant(p))
            }
        }
    )*};
}

payload_into!(AccountCommand: OpenAccount, RegisterMember, ChangeMemberRole,
    ChangeMemberDataScope, DeactivateMember, ReactivateMember, ChangeSettings);
payload_into!(RecordCommand: CreateContact, CreateOpportunity, ChangeOwner, AddFollowers,
    RemoveFollowers, ChangeFollowerUntil);
payload_into!(SyncCommand: AlignOwner, SyncFollower, ExpireFollower);

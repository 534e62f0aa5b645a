//! Command requests and replies.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{ErrorBody, MAX_TEXT_LEN, MAX_USERS_PER_COMMAND, strict};
use crate::command::{Command, CommandBody, CommandMeta};
use crate::error::ErrorCode;
use crate::event::{Event, EventBody};
use crate::ids::{AccountId, CommandId, ContactId, OpportunityId, UserId};
use crate::model::{Actor, DataScope, RecordRef, Role, SettingsChange};
use crate::store::Position;

/// What a successful command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Events were appended.
    Applied,
    /// The command was valid but changed nothing (R12, R14); nothing was appended.
    Unchanged,
    /// A workflow command without record context: nothing to do (R17).
    NoRecord,
}

/// The reply to every command: `ok` tells which of the optional parts are present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandReply {
    pub ok: bool,
    /// Echoed from the request when it could be read.
    pub command_id: Option<CommandId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The position of the commit in the history: a consistency token that queries can wait
    /// for. For `unchanged` and `no_record`, the position the decision was made at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// The events appended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
    /// `add_followers`: who was added, and who already followed (R12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added: Option<Vec<UserId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub already_following: Option<Vec<UserId>>,
    /// `remove_followers`: who was removed, and who did not follow (R14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<Vec<UserId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_following: Option<Vec<UserId>>,
    /// True when this reply repeats the reply to an earlier try of the same command (R24).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl CommandReply {
    fn empty(ok: bool, command_id: Option<CommandId>) -> Self {
        Self {
            ok,
            command_id,
            outcome: None,
            position: None,
            events: Vec::new(),
            added: None,
            already_following: None,
            removed: None,
            not_following: None,
            replayed: false,
            error: None,
        }
    }

    pub fn failure(command_id: Option<CommandId>, error: ErrorBody) -> Self {
        Self {
            error: Some(error),
            ..Self::empty(false, command_id)
        }
    }

    /// The reply to `cmd` whose decision appended `events` (none: unchanged) at `position`.
    pub fn success(cmd: &Command, events: Vec<Event>, position: Position) -> Self {
        let outcome = if events.is_empty() {
            if cmd.body.target() == crate::command::Target::Nothing {
                Outcome::NoRecord
            } else {
                Outcome::Unchanged
            }
        } else {
            Outcome::Applied
        };
        let mut reply = Self {
            outcome: Some(outcome),
            position: Some(position),
            ..Self::empty(true, Some(cmd.meta.command_id))
        };
        match &cmd.body {
            _ if outcome == Outcome::NoRecord => {}
            CommandBody::AddFollowers { users, .. } => {
                let added: Vec<UserId> = events
                    .iter()
                    .filter_map(|e| match &e.body {
                        EventBody::FollowersAdded { followers, .. } => Some(followers),
                        _ => None,
                    })
                    .flatten()
                    .map(|f| f.user.clone())
                    .collect();
                reply.already_following = Some(distinct_except(users, &added));
                reply.added = Some(added);
            }
            CommandBody::RemoveFollowers { users, .. } => {
                let removed: Vec<UserId> = events
                    .iter()
                    .filter_map(|e| match &e.body {
                        EventBody::FollowersRemoved { users, .. } => Some(users),
                        _ => None,
                    })
                    .flatten()
                    .cloned()
                    .collect();
                reply.not_following = Some(distinct_except(users, &removed));
                reply.removed = Some(removed);
            }
            _ => {}
        }
        reply.events = events;
        reply
    }
}

fn distinct_except(users: &[UserId], except: &[UserId]) -> Vec<UserId> {
    let mut out: Vec<UserId> = Vec::new();
    for u in users {
        if !except.contains(u) && !out.contains(u) {
            out.push(u.clone());
        }
    }
    out
}

/// Parses the body of a request for command `name` in `account`. The fields `command_id`
/// (UUID) and `actor` are common to all commands, `correlation_id` (UUID) is optional; the rest
/// are the command's own. On failure, returns the command id too when it could be read, so the
/// error reply can echo it.
pub fn parse_command(
    account: &str,
    name: &str,
    body: &[u8],
    at: DateTime<Utc>,
) -> Result<Command, (Option<CommandId>, ErrorBody)> {
    let malformed = |msg: String| ErrorBody::new(ErrorCode::MalformedRequest, msg);
    let mut fields: Map<String, Value> = strict::from_slice(body).map_err(|e| {
        (
            None,
            malformed(format!("the request is not a valid JSON object: {e}")),
        )
    })?;
    let command_id: CommandId = take(&mut fields, "command_id")
        .and_then(|v| v.ok_or_else(|| "`command_id` is required (a UUID)".to_owned()))
        .and_then(not_nil)
        .map_err(|e| (None, malformed(e)))?;
    let id = Some(command_id);
    let account = AccountId::new(account).map_err(|e| (id, malformed(e.to_string())))?;
    let actor: Actor = take(&mut fields, "actor")
        .and_then(|v| {
            v.ok_or_else(|| {
                "`actor` is required, e.g. {\"kind\": \"user\", \"user\": \"u-1\"}".to_owned()
            })
        })
        .map_err(|e| (id, malformed(e)))?;
    let correlation: Option<Uuid> =
        take(&mut fields, "correlation_id").map_err(|e| (id, malformed(e)))?;
    let body = command_body(name, &actor, Value::Object(fields)).map_err(|e| (id, e))?;
    Ok(Command {
        account,
        meta: CommandMeta {
            command_id,
            correlation: correlation.unwrap_or(command_id.0),
            actor,
            caller: None,
            causation: None,
            at,
        },
        body,
    })
}

/// The nil UUID names no command: a client that sends it has not set the id (R24).
fn not_nil(id: CommandId) -> Result<CommandId, String> {
    if id.0.is_nil() {
        Err("`command_id` must not be the nil UUID; send a fresh UUID per command".to_owned())
    } else {
        Ok(id)
    }
}

fn take<T: DeserializeOwned>(
    fields: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<T>, String> {
    match fields.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => strict::from_value(key, &v)
            .map(Some)
            .map_err(|e| format!("`{}` is invalid: {}", e.path, e.message)),
    }
}

fn fields<T: DeserializeOwned>(name: &str, rest: Value) -> Result<T, ErrorBody> {
    strict::from_value("", &rest).map_err(|e| {
        ErrorBody::new(
            ErrorCode::MalformedRequest,
            format!("invalid `{name}` request: {e}"),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenAccount {
    name: String,
    #[serde(default)]
    settings: SettingsChange,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterMember {
    user: UserId,
    name: String,
    email: String,
    role: Role,
    data_scope: DataScope,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberRole {
    user: UserId,
    role: Role,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberScope {
    user: UserId,
    data_scope: DataScope,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Member {
    user: UserId,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateContact {
    contact: ContactId,
    #[serde(default)]
    owner: Option<UserId>,
    #[serde(default)]
    followers: Vec<UserId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOpportunity {
    opportunity: OpportunityId,
    contact: ContactId,
    #[serde(default)]
    owner: Option<UserId>,
    #[serde(default)]
    followers: Vec<UserId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeOwner {
    record: RecordRef,
    /// Required: a user, or `null` to unassign. Absent (`None`) is an error, so that a forgotten
    /// field never unassigns a record.
    #[serde(default, deserialize_with = "present")]
    owner: Option<Option<UserId>>,
}

/// Marks a field as present, even when its value is `null`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Followers {
    #[serde(default)]
    record: Option<RecordRef>,
    users: Vec<UserId>,
}

/// Free text (a name, an e-mail): 1 to [`MAX_TEXT_LEN`] characters, none of them a control
/// character (a NUL or a line break would corrupt logs, exports and the screens that show it).
fn text(field: &str, value: String) -> Result<String, ErrorBody> {
    let n = value.chars().count();
    if n == 0 || n > MAX_TEXT_LEN {
        return Err(ErrorBody::new(
            ErrorCode::MalformedRequest,
            format!("`{field}` must have 1 to {MAX_TEXT_LEN} characters, not {n}"),
        ));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(ErrorBody::new(
            ErrorCode::MalformedRequest,
            format!(
                "`{field}` must not contain control characters; found U+{:04X}",
                u32::from(c)
            ),
        ));
    }
    Ok(value)
}

fn users(list: Vec<UserId>, field: &str) -> Result<Vec<UserId>, ErrorBody> {
    if list.len() > MAX_USERS_PER_COMMAND {
        return Err(ErrorBody::new(
            ErrorCode::MalformedRequest,
            format!(
                "`{field}` names {} users; at most {MAX_USERS_PER_COMMAND} are accepted",
                list.len()
            ),
        ));
    }
    Ok(list)
}

/// R17: only a workflow may omit the record (and then nothing happens).
fn followers_command(name: &str, actor: &Actor, rest: Value) -> Result<Followers, ErrorBody> {
    let f: Followers = fields(name, rest)?;
    if f.users.is_empty() {
        return Err(ErrorBody::new(
            ErrorCode::MalformedRequest,
            format!("`{name}` needs at least one user in `users`"),
        ));
    }
    if f.record.is_none() && !matches!(actor, Actor::Workflow { .. }) {
        return Err(ErrorBody::new(
            ErrorCode::MalformedRequest,
            format!("`{name}` needs a `record`; only a workflow may send it without one (R17)"),
        ));
    }
    Ok(Followers {
        record: f.record,
        users: users(f.users, "users")?,
    })
}

fn command_body(name: &str, actor: &Actor, rest: Value) -> Result<CommandBody, ErrorBody> {
    Ok(match name {
        "open_account" => {
            let r: OpenAccount = fields(name, rest)?;
            CommandBody::OpenAccount {
                name: text("name", r.name)?,
                settings: r.settings,
            }
        }
        "register_member" => {
            let r: RegisterMember = fields(name, rest)?;
            CommandBody::RegisterMember {
                user: r.user,
                name: text("name", r.name)?,
                email: text("email", r.email)?,
                role: r.role,
                data_scope: r.data_scope,
            }
        }
        "change_member_role" => {
            let r: MemberRole = fields(name, rest)?;
            CommandBody::ChangeMemberRole {
                user: r.user,
                role: r.role,
            }
        }
        "change_member_data_scope" => {
            let r: MemberScope = fields(name, rest)?;
            CommandBody::ChangeMemberDataScope {
                user: r.user,
                data_scope: r.data_scope,
            }
        }
        "deactivate_member" => CommandBody::DeactivateMember {
            user: fields::<Member>(name, rest)?.user,
        },
        "reactivate_member" => CommandBody::ReactivateMember {
            user: fields::<Member>(name, rest)?.user,
        },
        "change_settings" => CommandBody::ChangeSettings(fields(name, rest)?),
        "create_contact" => {
            let r: CreateContact = fields(name, rest)?;
            CommandBody::CreateContact {
                contact: r.contact,
                owner: r.owner,
                followers: users(r.followers, "followers")?,
            }
        }
        "create_opportunity" => {
            let r: CreateOpportunity = fields(name, rest)?;
            CommandBody::CreateOpportunity {
                opportunity: r.opportunity,
                contact: r.contact,
                owner: r.owner,
                followers: users(r.followers, "followers")?,
            }
        }
        "change_owner" => {
            let r: ChangeOwner = fields(name, rest)?;
            let Some(owner) = r.owner else {
                return Err(ErrorBody::new(
                    ErrorCode::MalformedRequest,
                    "`change_owner` needs `owner`: a user id, or null to unassign the record",
                ));
            };
            CommandBody::ChangeOwner {
                record: r.record,
                owner,
            }
        }
        "add_followers" => {
            let r = followers_command(name, actor, rest)?;
            CommandBody::AddFollowers {
                record: r.record,
                users: r.users,
            }
        }
        "remove_followers" => {
            let r = followers_command(name, actor, rest)?;
            CommandBody::RemoveFollowers {
                record: r.record,
                users: r.users,
            }
        }
        other => {
            return Err(ErrorBody::new(
                ErrorCode::UnknownCommand,
                format!(
                    "`{}` is not a command; see docs/protocol.md for the list",
                    other.chars().take(64).collect::<String>()
                ),
            ));
        }
    })
}

/// Every command name accepted on the wire.
pub const COMMAND_NAMES: [&str; 12] = [
    "open_account",
    "register_member",
    "change_member_role",
    "change_member_data_scope",
    "deactivate_member",
    "reactivate_member",
    "change_settings",
    "create_contact",
    "create_opportunity",
    "change_owner",
    "add_followers",
    "remove_followers",
];

//! Command requests and replies.
//!
//! A request's common fields (`command_id`, `actor`, `correlation_id`) are read here; the rest
//! is read by the command's name straight into its payload ([`AccountCommand::from_wire`],
//! [`RecordCommand::from_wire`]), under the strict policy ([`strict`]).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{ErrorBody, strict};
use crate::command::{
    AccountCommand, AddFollowers, Command, CommandBody, CommandMeta, RecordCommand, RemoveFollowers,
};
use crate::error::ErrorCode;
use crate::event::{Event, EventBody};
use crate::ids::{AccountId, CommandId, UserId};
use crate::model::Actor;
use crate::preview::AccessPreview;
use crate::record;
use crate::store::Position;

/// What a successful command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommandReply {
    pub ok: bool,
    /// Echoed from the request when it could be read.
    pub command_id: Option<CommandId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The position of the commit in the history: a consistency token that queries can wait
    /// for. For `unchanged` and `no_record`, and for a dry run that is no replay, the position
    /// the decision was made at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// The events appended (for a dry run, the events it would append).
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
    /// A dry run of `change_settings`, `change_owner` or a member command: the access changes
    /// it would cause ([`crate::preview`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_changes: Option<AccessPreview>,
    /// True when the request was a dry run: nothing was appended, the events are those the
    /// command would append, and `position` is the one it was decided at.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
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
            access_changes: None,
            dry_run: false,
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
            dry_run: cmd.dry_run,
            ..Self::empty(true, Some(cmd.meta.command_id))
        };
        match &cmd.body {
            _ if outcome == Outcome::NoRecord => {}
            CommandBody::Record(RecordCommand::AddFollowers(AddFollowers { users, .. })) => {
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
            CommandBody::Record(RecordCommand::RemoveFollowers(RemoveFollowers {
                users, ..
            })) => {
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
    let dry_run = dry_run(&mut fields).map_err(|e| (id, malformed(e)))?;
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
        dry_run,
    })
}

/// `dry_run`: a JSON boolean, `false` when absent. Anything else (`null`, `"true"`, `1`) is
/// refused rather than read either way: a request meant as a dry run must never be carried out.
fn dry_run(fields: &mut Map<String, Value>) -> Result<bool, String> {
    match fields.remove("dry_run") {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(other) => Err(format!(
            "`dry_run` is invalid: expected true or false, got {}",
            kind_of(&other)
        )),
    }
}

/// What a JSON value is, for an error message (never the value itself, which may be large).
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
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

/// Reads the command's own fields by its name. Only account and record commands have names a
/// request can use; the follower sync's ([`crate::command::SyncCommand`]) are not readable.
fn command_body(name: &str, actor: &Actor, rest: Value) -> Result<CommandBody, ErrorBody> {
    let read = AccountCommand::from_wire(name, &rest)
        .map(|r| r.map(CommandBody::Account))
        .or_else(|| RecordCommand::from_wire(name, &rest).map(|r| r.map(CommandBody::Record)));
    let Some(read) = read else {
        return Err(ErrorBody::new(
            ErrorCode::UnknownCommand,
            format!(
                "`{}` is not a command; see docs/protocol.md for the list",
                name.chars().take(64).collect::<String>()
            ),
        ));
    };
    let body = read.map_err(|e| {
        ErrorBody::new(
            ErrorCode::MalformedRequest,
            format!("invalid `{name}` request: {e}"),
        )
    })?;
    // R17 is the domain's (`record::without_record`); it is also checked here, so that such a
    // request is refused as malformed before it is decided (and its reply remembered).
    if let CommandBody::Record(cmd) = &body {
        record::without_record(actor, cmd).map_err(|e| ErrorBody::from(&e))?;
        record::until_of_users(cmd).map_err(|e| ErrorBody::from(&e))?;
    }
    Ok(body)
}

//! Errors with stable codes (R24). The code is the contract; the sentence is for people.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::access::{Action, Reason};
use crate::ids::{AccountId, UserId};
use crate::model::{Actor, MAX_FOLLOWERS, RecordRef};

/// Every error code a reply may carry. Codes never change meaning; new ones may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is not valid JSON, misses a field, has an unknown field or a bad value.
    MalformedRequest,
    /// The request is larger than the service accepts.
    RequestTooLarge,
    /// The subject names no known command or query.
    UnknownCommand,
    UnknownAccount,
    AccountExists,
    /// A user named by the command has no membership in the account.
    UnknownUser,
    MemberExists,
    /// A deactivated user cannot become an owner or a follower (R3).
    InactiveUser,
    UnknownRecord,
    RecordExists,
    /// More than 10 followers (R11, R13).
    FollowerLimit,
    /// The actor may not do this (R5, R15, R20).
    AccessDenied,
    /// Owners of a contact and its opportunities are coupled (R7).
    OwnersCoupled,
    /// A follower's `until` is not in the future (issue 17.4).
    UntilPassed,
    /// `change_follower_until` names a user who does not follow the record (issue 17.4).
    NotFollower,
    /// Too many concurrent writers to the same record; retry with the same command id.
    Conflict,
    /// The service is overloaded or shutting down; retry with the same command id.
    Unavailable,
    /// The event store could not be reached or failed; retry with the same command id.
    StoreUnavailable,
    /// A query waited for a position that the read model did not reach in time.
    Timeout,
    /// The caller policy does not let this NATS caller send this command: its account, or the
    /// actor kind it claims (see docs/operations.md, "Security"). Nothing was appended.
    CallerNotAllowed,
    /// HTTP only: no bearer token, or one that is malformed, expired, not yet valid, or not
    /// signed by a configured key (status 401).
    Unauthenticated,
    /// HTTP only: a valid bearer token that does not grant the account the request names
    /// (status 403).
    Forbidden,
    /// A query `at_position` (or `at_time`) would replay more of the account's history than one
    /// query may (docs/protocol.md, "Past moments"); ask about an earlier moment, or use the
    /// audit tool.
    TooMuchHistory,
    /// A bug: please report it. Nothing was appended.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedRequest => "malformed_request",
            ErrorCode::RequestTooLarge => "request_too_large",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::UnknownAccount => "unknown_account",
            ErrorCode::AccountExists => "account_exists",
            ErrorCode::UnknownUser => "unknown_user",
            ErrorCode::MemberExists => "member_exists",
            ErrorCode::InactiveUser => "inactive_user",
            ErrorCode::UnknownRecord => "unknown_record",
            ErrorCode::RecordExists => "record_exists",
            ErrorCode::FollowerLimit => "follower_limit",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::OwnersCoupled => "owners_coupled",
            ErrorCode::UntilPassed => "until_passed",
            ErrorCode::NotFollower => "not_follower",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::CallerNotAllowed => "caller_not_allowed",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooMuchHistory => "too_much_history",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A command broke a rule. Deciding it appended nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("account `{0}` does not exist; open it first")]
    UnknownAccount(AccountId),
    #[error("account `{0}` is already open")]
    AccountExists(AccountId),
    #[error("user `{user}` is not a member of account `{account}`; register the membership first")]
    UnknownUser { account: AccountId, user: UserId },
    #[error("user `{0}` is already a member of this account")]
    MemberExists(UserId),
    #[error(
        "user `{0}` is deactivated and cannot become an owner or a follower (R3); reactivate them first"
    )]
    InactiveUser(UserId),
    #[error("{0} does not exist in this account")]
    UnknownRecord(RecordRef),
    #[error("{0} already exists")]
    RecordExists(RecordRef),
    #[error(
        "{record} has {current} of {MAX_FOLLOWERS} followers; adding {adding} would exceed the limit, \
         so nothing was added ({free} places free)"
    )]
    FollowerLimit {
        record: RecordRef,
        current: usize,
        adding: usize,
        free: usize,
    },
    #[error("{actor} may not {action} {record}: {}", reason.explain())]
    AccessDenied {
        actor: Actor,
        action: Action,
        record: RecordRef,
        reason: Reason,
    },
    #[error("{actor} may not {what}: {why}")]
    NotPermitted {
        actor: Actor,
        what: &'static str,
        why: &'static str,
    },
    #[error(
        "owners of contacts and their opportunities are coupled in this account (R7): the opportunity's \
         owner must be the contact's owner ({contact_owner}); omit the owner or turn on \
         allow_different_owners"
    )]
    OwnersCoupled { contact_owner: String },
    /// R17: a follower command without a record; only a workflow may send one (and then
    /// nothing happens). The wire parser refuses it too, as a malformed request.
    #[error("`{command}` needs a `record`; only a workflow may send it without one (R17)")]
    RecordRequired { command: &'static str },
    /// Issue 17.4: an `until` must lie in the future when the command is decided.
    #[error(
        "the `until` of `{user}` ({until}) is not in the future; give a later time, or none to follow until removed"
    )]
    UntilPassed { user: UserId, until: DateTime<Utc> },
    /// Issue 17.4: `add_followers` gives an `until` to a user it does not add. The wire parser
    /// refuses it too, as a malformed request.
    #[error(
        "`until` names `{0}`, who is not in `users`; give an `until` only to a user being added"
    )]
    UntilWithoutUser(UserId),
    /// Issue 17.4: only a follower's `until` can be changed.
    #[error(
        "`{user}` does not follow {record}; add them with `add_followers` (which takes an `until`)"
    )]
    NotFollower { record: RecordRef, user: UserId },
}

impl DomainError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DomainError::UnknownAccount(_) => ErrorCode::UnknownAccount,
            DomainError::AccountExists(_) => ErrorCode::AccountExists,
            DomainError::UnknownUser { .. } => ErrorCode::UnknownUser,
            DomainError::MemberExists(_) => ErrorCode::MemberExists,
            DomainError::InactiveUser(_) => ErrorCode::InactiveUser,
            DomainError::UnknownRecord(_) => ErrorCode::UnknownRecord,
            DomainError::RecordExists(_) => ErrorCode::RecordExists,
            DomainError::FollowerLimit { .. } => ErrorCode::FollowerLimit,
            DomainError::AccessDenied { .. } | DomainError::NotPermitted { .. } => {
                ErrorCode::AccessDenied
            }
            DomainError::OwnersCoupled { .. } => ErrorCode::OwnersCoupled,
            DomainError::RecordRequired { .. } | DomainError::UntilWithoutUser(_) => {
                ErrorCode::MalformedRequest
            }
            DomainError::UntilPassed { .. } => ErrorCode::UntilPassed,
            DomainError::NotFollower { .. } => ErrorCode::NotFollower,
        }
    }
}

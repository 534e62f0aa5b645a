//! Query requests and answers, the same over NATS and HTTP.
//!
//! Every query may carry `min_position`, the `position` of a command reply: the answer then
//! reflects at least that commit (read-your-writes), or the query fails with `timeout`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{ErrorBody, strict};
use crate::access::{Action, Reason};
use crate::error::ErrorCode;
use crate::event::Event;
use crate::hint::AccessHint;
use crate::ids::{EventId, OpportunityId, UserId};
use crate::model::{AccountSettings, Actor, AddedHow, DataScope, RecordRef, Role};
use crate::read_model::Relation;
use crate::store::Position;

/// `check_access`: may `user` do `action` to `record`?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckAccess {
    pub user: UserId,
    pub action: Action,
    pub record: RecordRef,
    /// Also say, for a denial, what would grant the access and who could ([`AccessHint`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hint: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_position: Option<Position>,
    /// Answer as of this position of the history: as the live model answered right after the
    /// commit at it (docs/protocol.md, "Past moments").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_position: Option<Position>,
    /// Answer as of this time (RFC 3339): as of the account's last commit stored at or before
    /// it, whose position the reply gives. Not together with `at_position`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_time: Option<DateTime<Utc>>,
}

/// One check of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessCheck {
    pub user: UserId,
    pub action: Action,
    pub record: RecordRef,
}

/// `check_access_batch`: several checks in one request, answered in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckAccessBatch {
    /// At most 1000 ([`MAX_BATCH_CHECKS`](super::MAX_BATCH_CHECKS)); more are refused as
    /// `malformed_request` when the query is answered.
    #[schemars(length(max = super::MAX_BATCH_CHECKS))]
    pub checks: Vec<AccessCheck>,
    /// Also say, for each denial, what would grant the access and who could.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hint: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_position: Option<Position>,
    /// Answer as of this position of the history: as the live model answered right after the
    /// commit at it (docs/protocol.md, "Past moments").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_position: Option<Position>,
    /// Answer as of this time (RFC 3339): as of the account's last commit stored at or before
    /// it, whose position the reply gives. Not together with `at_position`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_time: Option<DateTime<Utc>>,
}

/// A decision and its reason (R21), and for a denial, how to get the access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccessAnswer {
    pub allowed: bool,
    pub reason: Reason,
    /// Asked for with `hint`, with a denial that something would lift: what would grant the
    /// access, and who could.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<AccessHint>,
}

/// `followers`: the owner and followers of a record (R18).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FollowersQuery {
    pub record: RecordRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_position: Option<Position>,
    /// Answer as of this position of the history: as the live model answered right after the
    /// commit at it (docs/protocol.md, "Past moments").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_position: Option<Position>,
    /// Answer as of this time (RFC 3339): as of the account's last commit stored at or before
    /// it, whose position the reply gives. Not together with `at_position`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_time: Option<DateTime<Utc>>,
}

/// A user as shown in lists: their name and whether they are active (R3, R18).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserView {
    pub user: UserId,
    pub name: Option<String>,
    pub active: bool,
}

/// One follower with how and when they were added (R18).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FollowerView {
    pub user: UserId,
    pub name: Option<String>,
    pub active: bool,
    pub added_at: DateTime<Utc>,
    pub added_by: Actor,
    #[serde(flatten)]
    pub how: AddedHow,
    /// When the system removes this follower (issue 17.4); absent: until removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FollowersAnswer {
    pub record: RecordRef,
    /// For an opportunity: its contact (R4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<crate::ids::ContactId>,
    pub owner: Option<UserView>,
    pub followers: Vec<FollowerView>,
}

/// `records_of_user`: the records a user owns or follows, a page at a time, in record order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordsOfUser {
    pub user: UserId,
    /// The `next` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<RecordRef>,
    /// Page size, 1 to 1000; 100 when absent. Another is refused as `malformed_request` when
    /// the query is answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_position: Option<Position>,
    /// Answer as of this position of the history: as the live model answered right after the
    /// commit at it (docs/protocol.md, "Past moments").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_position: Option<Position>,
    /// Answer as of this time (RFC 3339): as of the account's last commit stored at or before
    /// it, whose position the reply gives. Not together with `at_position`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HeldRecord {
    pub record: RecordRef,
    pub relation: Relation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RecordsOfUserAnswer {
    pub user: UserId,
    pub records: Vec<HeldRecord>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<RecordRef>,
}

/// `who_can_access`: every member who may do `action` to `record`, with the reason, a page at
/// a time, in user order (R19-R21 asked the other way round).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WhoCanAccess {
    pub record: RecordRef,
    pub action: Action,
    /// The `next` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<UserId>,
    /// Page size, 1 to 1000; 100 when absent. Another is refused as `malformed_request` when
    /// the query is answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_position: Option<Position>,
    /// Answer as of this position of the history: as the live model answered right after the
    /// commit at it (docs/protocol.md, "Past moments").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_position: Option<Position>,
    /// Answer as of this time (RFC 3339): as of the account's last commit stored at or before
    /// it, whose position the reply gives. Not together with `at_position`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_time: Option<DateTime<Utc>>,
}

/// A member allowed an action, and why (the reason `check_access` gives them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GranteeView {
    pub user: UserId,
    pub name: String,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WhoCanAccessAnswer {
    pub record: RecordRef,
    pub action: Action,
    pub users: Vec<GranteeView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<UserId>,
}

/// `accessible_records`: what `user` may do `action` to, with the reason, a page at a time, in
/// record order (R19-R21 asked for one user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessibleRecords {
    pub user: UserId,
    pub action: Action,
    /// The `next` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<RecordRef>,
    /// Page size, 1 to 1000; 100 when absent. Another is refused as `malformed_request` when
    /// the query is answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_position: Option<Position>,
    /// Answer as of this position of the history: as the live model answered right after the
    /// commit at it (docs/protocol.md, "Past moments").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_position: Option<Position>,
    /// Answer as of this time (RFC 3339): as of the account's last commit stored at or before
    /// it, whose position the reply gives. Not together with `at_position`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_time: Option<DateTime<Utc>>,
}

/// A record a user may act on, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReachableRecord {
    pub record: RecordRef,
    pub reason: Reason,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccessibleRecordsAnswer {
    pub user: UserId,
    pub action: Action,
    /// The user may do `action` to every record of the account, for this reason (`admin`, or
    /// `all_data` except for `change_owner`); `records` is then empty.
    pub every_record: Option<Reason>,
    /// `change_owner` with data scope `all`: every unassigned record too (R5), for this reason,
    /// besides the records listed.
    pub unassigned_records: Option<Reason>,
    pub records: Vec<ReachableRecord>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<RecordRef>,
}

/// `contact_opportunities`: the opportunities linked to a contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactOpportunities {
    pub contact: crate::ids::ContactId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_position: Option<Position>,
    /// Answer as of this position of the history: as the live model answered right after the
    /// commit at it (docs/protocol.md, "Past moments").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_position: Option<Position>,
    /// Answer as of this time (RFC 3339): as of the account's last commit stored at or before
    /// it, whose position the reply gives. Not together with `at_position`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LinkedOpportunity {
    pub opportunity: OpportunityId,
    pub owner: Option<UserId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ContactOpportunitiesAnswer {
    pub contact: crate::ids::ContactId,
    pub owner: Option<UserId>,
    pub opportunities: Vec<LinkedOpportunity>,
}

/// `account`: the account's settings and memberships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_position: Option<Position>,
    /// Answer as of this position of the history: as the live model answered right after the
    /// commit at it (docs/protocol.md, "Past moments").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_position: Option<Position>,
    /// Answer as of this time (RFC 3339): as of the account's last commit stored at or before
    /// it, whose position the reply gives. Not together with `at_position`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MemberView {
    pub user: UserId,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub data_scope: DataScope,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccountAnswer {
    pub account: crate::ids::AccountId,
    pub name: String,
    pub settings: AccountSettings,
    pub members: Vec<MemberView>,
}

/// `record_history`: a record's events in history order, with their position, time, actor and,
/// for the follower sync's reactions, the event that caused them; a page of commits at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordHistory {
    pub record: RecordRef,
    /// The `next` of the previous page: the events of commits after this position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Position>,
    /// Commits per page, 1 to 1000; 100 when absent. A commit's events are never split across
    /// pages. Another is refused as `malformed_request` when the query is answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_position: Option<Position>,
}

/// `changes`: the access changes of the account after a position, in order, a page at a time
/// (see [`crate::change`] for what counts and what the filters keep).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Changes {
    /// The position to resume after: the `next` of the previous page, or the `position` of the
    /// last change seen; 0 (the default) for the account's whole history.
    #[serde(default, skip_serializing_if = "is_start")]
    pub after: Position,
    /// Only the changes that may affect access to this record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordRef>,
    /// Only the changes that may affect this user's access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    /// Page size, 1 to 1000; 100 when absent. Another is refused as `malformed_request` when
    /// the query is answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<usize>,
    /// When there is no change after `after` yet, wait up to this many milliseconds (at most
    /// the service's `max_wait`) for one before answering an empty page (a long poll).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_position: Option<Position>,
}

/// The event that caused another (its `meta.causation`): for a reaction of the follower sync,
/// the owner change it followed; for a `follower_expired`, the event that set the `until`; and
/// where that is stored, when it is found in the record the reaction names or the record itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EventCause {
    pub event_id: EventId,
    /// The position of the commit that holds the causing event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// The record whose stream holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordRef>,
    /// Its `type`, e.g. `owner_changed`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
}

/// One event of a record's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryEvent {
    /// The position of the commit that holds it: ask other queries `at_position` this to see
    /// the record as it was right after it.
    pub position: Position,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    /// The event's `type`, e.g. `owner_changed`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// For a reaction of the follower sync, or an expiry: the event that caused it
    /// (`event.meta.causation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<EventCause>,
    /// The event as stored: its schema version, `meta` and its own fields.
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RecordHistoryAnswer {
    pub record: RecordRef,
    pub events: Vec<HistoryEvent>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<Position>,
}

fn is_start(p: &Position) -> bool {
    *p == Position(0)
}

/// One access change: a stored event and the position of its commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Change {
    pub position: Position,
    pub event: crate::event::Event,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChangesAnswer {
    pub changes: Vec<Change>,
    /// Pass as `after` for the next page: the position of the last commit read, which may be
    /// past the last change listed when later commits changed nothing the filters keep.
    pub next: Position,
}

/// Every query answer: `ok`, the read model's position when it answered, and the answer or the
/// error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "QueryReply_{T}")]
pub struct QueryReply<T> {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl<T> QueryReply<T> {
    pub fn answer(position: Position, answer: T) -> Self {
        Self {
            ok: true,
            position: Some(position),
            answer: Some(answer),
            error: None,
        }
    }

    pub fn failure(error: ErrorBody) -> Self {
        Self {
            ok: false,
            position: None,
            answer: None,
            error: Some(error),
        }
    }
}

/// A query's request type, read straight from the wire: its name and its variant of [`Query`].
pub trait QueryRequest: DeserializeOwned + Into<Query> {
    /// The query's wire name: the subject's last token over NATS.
    const NAME: &'static str;

    /// Reads the request from a JSON body strictly; an empty body is an empty object.
    fn from_body(body: &[u8]) -> Result<Query, ErrorBody> {
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            b"{}".as_slice()
        } else {
            body
        };
        strict::from_slice::<Self>(body)
            .map(Into::into)
            .map_err(invalid::<Self>)
    }
}

/// The `malformed_request` error of a `T` query that could not be read.
pub fn invalid<T: QueryRequest>(e: strict::StrictError) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::MalformedRequest,
        format!("invalid `{}` query: {e}", T::NAME),
    )
}

/// Declares [`Query`] and its names once: each query's wire name beside its request type.
macro_rules! queries {
    ($($(#[$doc:meta])* $name:literal => $variant:ident($ty:ty),)*) => {
        /// A query, read strictly from its name (the subject's last token or the HTTP route)
        /// and its request.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Query {
            $($(#[$doc])* $variant($ty),)*
        }

        $(
            impl QueryRequest for $ty {
                const NAME: &'static str = $name;
            }

            impl From<$ty> for Query {
                fn from(q: $ty) -> Query {
                    Query::$variant(q)
                }
            }
        )*

        impl Query {
            /// Every query name, as the wire spells it.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// Reads query `name` from its JSON body; an empty body is an empty object. Errors
            /// are `unknown_command` for a name that is no query, else `malformed_request`
            /// naming the field.
            pub fn parse(name: &str, body: &[u8]) -> Result<Query, ErrorBody> {
                match name {
                    $($name => <$ty>::from_body(body),)*
                    other => Err(ErrorBody::new(
                        ErrorCode::UnknownCommand,
                        format!(
                            "`{}` is not a query; see docs/protocol.md for the list",
                            other.chars().take(64).collect::<String>()
                        ),
                    )),
                }
            }

            /// The JSON Schema of the request of the query named `name` (a root schema, with
            /// its definitions); `None` when `name` is no query.
            pub fn request_schema(
                name: &str,
                generator: &mut schemars::SchemaGenerator,
            ) -> Option<schemars::Schema> {
                match name {
                    $($name => Some(generator.root_schema_for::<$ty>()),)*
                    _ => None,
                }
            }

            /// The query's request as JSON, as [`Query::parse`] reads it back: what an instance
            /// sends when it asks another instance (a partition it does not serve).
            pub fn to_body(&self) -> Vec<u8> {
                match self {
                    $(Query::$variant(q) => crate::json::to_vec(q),)*
                }
            }

            /// The query's wire name.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Query::$variant(_) => $name,)*
                }
            }

            /// The position the answer must reflect (read-your-writes), if any.
            pub fn min_position(&self) -> Option<Position> {
                match self {
                    $(Query::$variant(q) => q.min_position,)*
                }
            }
        }
    };
}

queries! {
    "check_access" => CheckAccess(CheckAccess),
    "check_access_batch" => CheckAccessBatch(CheckAccessBatch),
    "followers" => Followers(FollowersQuery),
    "records_of_user" => RecordsOfUser(RecordsOfUser),
    "who_can_access" => WhoCanAccess(WhoCanAccess),
    "accessible_records" => AccessibleRecords(AccessibleRecords),
    "contact_opportunities" => ContactOpportunities(ContactOpportunities),
    "account" => Account(AccountQuery),
    "changes" => Changes(Changes),
    "record_history" => RecordHistory(RecordHistory),
}

impl Query {
    /// The past moment to answer as of, if any (docs/protocol.md, "Past moments"):
    /// `at_position` and `at_time` as given. `record_history` and `changes` have none: they
    /// list the past themselves.
    pub fn past(&self) -> (Option<Position>, Option<DateTime<Utc>>) {
        match self {
            Query::CheckAccess(q) => (q.at_position, q.at_time),
            Query::CheckAccessBatch(q) => (q.at_position, q.at_time),
            Query::Followers(q) => (q.at_position, q.at_time),
            Query::RecordsOfUser(q) => (q.at_position, q.at_time),
            Query::WhoCanAccess(q) => (q.at_position, q.at_time),
            Query::AccessibleRecords(q) => (q.at_position, q.at_time),
            Query::ContactOpportunities(q) => (q.at_position, q.at_time),
            Query::Account(q) => (q.at_position, q.at_time),
            Query::RecordHistory(_) | Query::Changes(_) => (None, None),
        }
    }
}

//! What can go wrong with a request, each variant saying what to do about it.

use followers_shared::access::Reason;
use followers_shared::error::ErrorCode;
use followers_shared::ids::CommandId;
use followers_shared::store::StoreError;
use followers_shared::wire::ErrorBody;

/// Why a command or a query did not get its answer.
///
/// A refusal ([`Error::Refused`]) is the service's considered reply, with a stable code; every
/// other variant means the request did not get one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service refused the request: `code` says which rule it breaks (or `malformed_request`,
    /// `caller_not_allowed`, `timeout` for a query's `min_position`...). Nothing was appended.
    /// Sending the same request again gets the same refusal: change the request, or show the
    /// message to the person who asked. `malformed_request` from this client is a bug: report it.
    #[error("refused ({}): {message}", code.as_str())]
    Refused {
        code: ErrorCode,
        message: String,
        /// With `follower_limit`: how many followers could still be added.
        free_places: Option<usize>,
        /// With `access_denied`: the access rule's reason (R21).
        reason: Option<Reason>,
        /// The command's id (commands only).
        command_id: Option<CommandId>,
    },
    /// Every attempt the retry policy allowed timed out, found no service, or was told to retry
    /// (`unavailable`, `store_unavailable`, `conflict`); `last` is the last one's. A command may
    /// or may not have been applied: send it again later with the same id
    /// ([`crate::CommandRequest::command_id`] with [`Error::command_id`]), which is safe (R24).
    #[error("gave up after {attempts} attempt(s)")]
    GaveUp {
        attempts: u32,
        command_id: Option<CommandId>,
        #[source]
        last: Transient,
    },
    /// NATS refused to carry the request (connection closed, no permission to publish, payload
    /// over the server's limit): not retried. Check the connection and its permissions.
    #[error("NATS could not carry the request")]
    Nats {
        command_id: Option<CommandId>,
        #[source]
        source: async_nats::RequestError,
    },
    /// The reply is not what docs/protocol.md describes: this client and the service disagree
    /// about the protocol. Report it; do not retry.
    #[error("the service's reply could not be read: {what}")]
    UnexpectedReply {
        what: String,
        #[source]
        source: Option<serde_json::Error>,
    },
    /// The request could not be written as JSON: a bug in this client. Report it.
    #[error("the request could not be encoded")]
    Encode(#[source] serde_json::Error),
    /// [`crate::Client::connect`] could not reach or authenticate to NATS: check the flags
    /// (`--nats-url`, credentials) and that a server runs; the message says which.
    #[error("could not connect to NATS")]
    Connect(#[source] StoreError),
}

impl Error {
    /// The refusal's stable code; `None` when the request got no considered reply.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The id of the command this error is about: send it again with this id.
    pub fn command_id(&self) -> Option<CommandId> {
        match self {
            Error::Refused { command_id, .. }
            | Error::GaveUp { command_id, .. }
            | Error::Nats { command_id, .. } => *command_id,
            _ => None,
        }
    }

    pub(crate) fn refused(body: ErrorBody, command_id: Option<CommandId>) -> Self {
        Error::Refused {
            code: body.code,
            message: body.message,
            free_places: body.free_places,
            reason: body.reason,
            command_id,
        }
    }
}

/// Why one attempt got no answer; the policy tries again while it allows.
#[derive(Debug, thiserror::Error)]
pub enum Transient {
    /// No reply within the attempt's time.
    #[error("no reply in time")]
    TimedOut,
    /// No service listens on the subject (not started, restarting, or no permission to see it).
    #[error("no service answered the subject")]
    NoResponders,
    /// The service asked to be asked again: `unavailable` (overloaded, starting, shutting down),
    /// `store_unavailable` or `conflict`.
    #[error("the service said `{}`: {message}", code.as_str())]
    Retry { code: ErrorCode, message: String },
}

impl Transient {
    /// Whether a reply with this code asks to be sent again (with the same command id).
    pub fn asks_again(code: ErrorCode) -> bool {
        matches!(
            code,
            ErrorCode::Unavailable | ErrorCode::StoreUnavailable | ErrorCode::Conflict
        )
    }
}

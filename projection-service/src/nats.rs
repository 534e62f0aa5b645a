//! Queries over NATS request-reply, on `{prefix}.query.*.*`: the projection's side of the
//! request loop ([`followers_runtime::serve`]).
//!
//! Each query is admitted into the shared [`Budget`](crate::queries::Budget) before anything is
//! spent on it: one that does not fit is answered `unavailable` from the loop at once, so a
//! flood of queries costs neither tasks nor memory. One answered from memory at once is answered
//! in the loop; only one that waits gets a task ([`followers_runtime::serve`]).

use std::sync::Arc;

use bytes::Bytes;
use followers_runtime::Responder;
use followers_shared::error::ErrorCode;
use followers_shared::wire::{ErrorBody, Query, QueryReply, subject};
use followers_store::trace;
use tracing::Instrument;

use crate::queries::{Admission, Queries};

/// Queries as NATS requests.
#[derive(Debug)]
pub struct NatsQueries {
    pub queries: Arc<Queries>,
    pub prefix: String,
    pub max_request_bytes: usize,
}

impl Responder for NatsQueries {
    type Ticket = Admission;

    fn admit(&self, bytes: usize) -> Result<Admission, Bytes> {
        let limit = self.max_request_bytes;
        if bytes > limit {
            return Err(failure(ErrorBody::new(
                ErrorCode::RequestTooLarge,
                format!("the query has {bytes} bytes; at most {limit} are accepted"),
            )));
        }
        self.queries
            .admit(bytes)
            .map_err(|refused| refused.body.into())
    }

    async fn respond(&self, admitted: Admission, request: &async_nats::Message) -> Bytes {
        match subject::split(&self.prefix, "query", &request.subject) {
            Some((account, name)) => {
                let query = Query::parse(name, &request.payload);
                let answering = self.queries.answer_read(account, query);
                let span = trace::request_span(
                    "query request",
                    &request.subject,
                    request.headers.as_ref(),
                );
                let answer = answering.instrument(span).await;
                drop(admitted);
                answer.body.into()
            }
            None => failure(ErrorBody::new(
                ErrorCode::UnknownCommand,
                "queries are sent to {prefix}.query.{account}.{query}",
            )),
        }
    }
}

fn failure(error: ErrorBody) -> Bytes {
    followers_shared::json::to_vec(&QueryReply::<()>::failure(error)).into()
}

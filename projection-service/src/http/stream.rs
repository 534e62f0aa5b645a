//! `GET /v1/accounts/{account}/changes`: the feed of access changes as Server-Sent Events
//! ([`crate::feed`]). The route reads its fields as every `GET` query does (`after`, `user`,
//! the record as `record_kind` and `record_id`, `min_position`); `after` may come instead as
//! the `Last-Event-ID` header a browser's `EventSource` sends when it reconnects. `limit` and
//! `wait_ms` belong to the page query over NATS and are refused here.
//!
//! Each change is an event `change` whose `id` is its position and whose `data` is the change
//! as JSON; the stream ends with one event `end` whose `code` is `slow_consumer`, `closing` or
//! `unavailable` (see [`crate::feed::Ending`]). A comment is sent every 15 s while nothing happens, so proxies do
//! not close an idle stream.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use followers_shared::error::ErrorCode;
use followers_shared::wire::{Changes, ErrorBody, Query};
use futures::StreamExt;

use super::{Ask, HttpState, respond};
use crate::feed::FeedEvent;

/// How often an idle stream sends a comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(super) async fn changes(
    State(s): State<HttpState>,
    headers: HeaderMap,
    asked: Ask<Changes>,
) -> Response {
    let mut fields = asked.fields;
    if let Some(last) = headers.get("last-event-id") {
        let last = String::from_utf8_lossy(last.as_bytes()).into_owned();
        fields = fields.number_unless_given("after", last);
    }
    let query = match fields.read::<Changes>() {
        Ok(Query::Changes(q)) if q.limit.is_some() || q.wait_ms.is_some() => Err(ErrorBody::new(
            ErrorCode::MalformedRequest,
            "`limit` and `wait_ms` are for the page query over NATS; a stream sends every \
                 change as it comes",
        )),
        Ok(Query::Changes(q)) => Ok(q),
        Ok(_) => unreachable_query(),
        Err(e) => Err(e),
    };
    match s.queries.open_stream(&asked.account, query).await {
        Ok(feed) => {
            let events = feed.map(|e| Ok::<_, Infallible>(sse_event(&e)));
            Sse::new(events)
                .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
                .into_response()
        }
        Err(answer) => respond(answer),
    }
}

/// `Fields::read::<Changes>` gives only `Query::Changes`.
fn unreachable_query() -> Result<Changes, ErrorBody> {
    Err(ErrorBody::new(
        ErrorCode::MalformedRequest,
        "the request is not a `changes` query",
    ))
}

fn sse_event(e: &FeedEvent) -> Event {
    match e {
        FeedEvent::Change(change) => Event::default()
            .event("change")
            .id(change.position.0.to_string())
            .data(String::from_utf8_lossy(&followers_shared::json::to_vec(
                change,
            ))),
        FeedEvent::End(end) => Event::default().event("end").data(String::from_utf8_lossy(
            &followers_shared::json::to_vec(end),
        )),
    }
}

//! What each query route's documentation says beyond its types: its operation id, summary,
//! errors and examples (see [`super::openapi`]). The examples are checked against the schemas
//! by the tests, so a renamed field or value cannot stay in them.

use aide::openapi::ReferenceOr;
use aide::transform::TransformOperation;
use serde_json::{Value, json};

use super::openapi::{BODY_ERRORS, CHECK_ERRORS, GET_ERRORS, event_stream, query};
use followers_shared::wire::{
    AccessAnswer, AccessibleRecordsAnswer, AccountAnswer, Change, ContactOpportunitiesAnswer,
    FollowersAnswer, RecordHistoryAnswer, RecordsOfUserAnswer, WhoCanAccessAnswer,
};

/// The reply envelope of an answer, as in every example.
fn reply(answer: Value) -> Value {
    json!({"ok": true, "position": 42, "answer": answer})
}

pub fn account(op: TransformOperation<'_>) -> TransformOperation<'_> {
    let settings = json!({
        "allow_different_owners": true,
        "sync_contact_follower_with_opportunity_owner": false,
        "sync_opportunity_follower_with_contact_owner": false,
        "contact_access_includes_opportunities": true
    });
    let answer = json!({"account": "globex", "name": "Globex", "settings": settings,
        "members": []});
    query::<AccountAnswer>(
        op,
        "account",
        "The account's name, settings and members (query `account`).",
        GET_ERRORS,
        reply(answer),
    )
}

pub fn check_access(op: TransformOperation<'_>) -> TransformOperation<'_> {
    query::<AccessAnswer>(
        op,
        "checkAccess",
        "May a user do an action to a record, and why (query `check_access`, R19 to R21).",
        CHECK_ERRORS,
        reply(json!({"allowed": true, "reason": "contact_owner"})),
    )
    .description(
        "Always answers for well-formed input: an unknown account or user is `no_membership`, \
         an unknown record `unknown_record` (allowed: false).",
    )
}

pub fn check_access_batch(op: TransformOperation<'_>) -> TransformOperation<'_> {
    let answers = json!([
        {"allowed": true, "reason": "follower"},
        {"allowed": false, "reason": "not_assigned"}
    ]);
    let body = json!({
        "checks": [
            {"user": "bob", "action": "edit", "record": {"kind": "contact", "id": "c1"}},
            {"user": "fay", "action": "view", "record": {"kind": "opportunity", "id": "o2"}}
        ],
        "min_position": 42
    });
    let mut op = query::<Vec<AccessAnswer>>(
        op,
        "checkAccessBatch",
        "Several access checks in one request, answered in order (query \
         `check_access_batch`).",
        BODY_ERRORS,
        reply(answers),
    )
    .description(
        "The body is the same JSON as over NATS; the URL's query string is ignored (put \
         `min_position` in the body).",
    );
    if let Some(ReferenceOr::Item(request)) = &mut op.inner_mut().request_body {
        for media in request.content.values_mut() {
            media.example = Some(body.clone());
        }
    }
    op
}

pub fn followers(op: TransformOperation<'_>) -> TransformOperation<'_> {
    let answer = json!({
        "record": {"kind": "contact", "id": "c1"},
        "owner": {"user": "cid", "name": "Cid Example", "active": true},
        "followers": [
            {"user": "dee", "name": "Dee Example", "active": true,
             "added_at": "2026-11-24T19:48:39.491131585Z",
             "added_by": {"kind": "user", "user": "ann"}, "how": "manual"},
            {"user": "bob", "name": "Bob Example", "active": true,
             "added_at": "2026-11-24T19:48:40.514199925Z", "added_by": {"kind": "system"},
             "how": "owner_sync", "from": {"kind": "opportunity", "id": "o2"}}
        ]
    });
    query::<FollowersAnswer>(
        op,
        "followers",
        "A record's owner and followers, with names, active flags, when and how they were \
         added (query `followers`, R18).",
        GET_ERRORS,
        reply(answer),
    )
}

pub fn records_of_user(op: TransformOperation<'_>) -> TransformOperation<'_> {
    let answer = json!({
        "user": "dee",
        "records": [{"record": {"kind": "contact", "id": "c1"}, "relation": "follower"}],
        "next": {"kind": "contact", "id": "c1"}
    });
    query::<RecordsOfUserAnswer>(
        op,
        "recordsOfUser",
        "The records a user owns or follows, a page at a time (query `records_of_user`).",
        GET_ERRORS,
        reply(answer),
    )
}

pub fn who_can_access(op: TransformOperation<'_>) -> TransformOperation<'_> {
    let answer = json!({
        "record": {"kind": "opportunity", "id": "o1"},
        "action": "edit",
        "users": [
            {"user": "ann", "name": "Ann Example", "reason": "admin"},
            {"user": "cid", "name": "Cid Example", "reason": "contact_owner"}
        ],
        "next": "cid"
    });
    query::<WhoCanAccessAnswer>(
        op,
        "whoCanAccess",
        "Every member who may do an action to a record, with the reason, a page at a time in \
         user order (query `who_can_access`, R19 to R21).",
        GET_ERRORS,
        reply(answer),
    )
}

pub fn accessible_records(op: TransformOperation<'_>) -> TransformOperation<'_> {
    let answer = json!({
        "user": "bob",
        "action": "edit",
        "every_record": null,
        "unassigned_records": null,
        "records": [
            {"record": {"kind": "contact", "id": "c1"}, "reason": "follower"},
            {"record": {"kind": "opportunity", "id": "o1"}, "reason": "contact_follower"}
        ],
        "next": null
    });
    query::<AccessibleRecordsAnswer>(
        op,
        "accessibleRecords",
        "What a user may do an action to, with the reason, a page at a time in record order \
         (query `accessible_records`, R19 to R21).",
        GET_ERRORS,
        reply(answer),
    )
}

pub fn contact_opportunities(op: TransformOperation<'_>) -> TransformOperation<'_> {
    let answer = json!({
        "contact": "c1",
        "owner": "cid",
        "opportunities": [
            {"opportunity": "o1", "owner": "dee"},
            {"opportunity": "o2", "owner": "bob"}
        ]
    });
    query::<ContactOpportunitiesAnswer>(
        op,
        "contactOpportunities",
        "The opportunities linked to a contact, with their owners (query \
         `contact_opportunities`).",
        GET_ERRORS,
        reply(answer),
    )
}

pub fn record_history(op: TransformOperation<'_>) -> TransformOperation<'_> {
    let meta = |event: &str, command: &str, actor: Value, at: &str| {
        json!({"event_id": event, "command_id": command,
            "correlation": "019abc00-0000-7000-8000-000000000001", "actor": actor, "at": at})
    };
    let mut synced = meta(
        "019abc00-0000-7000-8000-000000000031",
        "019abc00-0000-7000-8000-000000000030",
        json!({"kind": "system"}),
        "2026-11-24T19:48:40.514199925Z",
    );
    synced["causation"] = json!("019abc00-0000-7000-8000-000000000021");
    let answer = json!({
        "record": {"kind": "contact", "id": "c1"},
        "events": [
            {"position": 41, "at": "2026-11-24T19:48:40.514199925Z", "actor": {"kind": "system"},
             "type": "followers_added",
             "cause": {"event_id": "019abc00-0000-7000-8000-000000000021", "position": 40,
                       "record": {"kind": "opportunity", "id": "o2"}, "type": "owner_changed"},
             "event": {"v": 1, "type": "followers_added", "meta": synced,
                       "record": {"kind": "contact", "id": "c1"},
                       "followers": [{"user": "bob", "how": "owner_sync",
                                      "from": {"kind": "opportunity", "id": "o2"}}]}}
        ],
        "next": 41
    });
    query::<RecordHistoryAnswer>(
        op,
        "recordHistory",
        "A record's events in history order, with position, time, actor and, for the follower \
         sync's reactions, the owner change that caused them; a page of commits at a time \
         (query `record_history`).",
        GET_ERRORS,
        reply(answer),
    )
    .description(
        "Each event's `position` can be given as `at_position` to the other queries to see the \
         record as it was right after it. `after` is the `next` of the previous page.",
    )
}

pub fn changes(op: TransformOperation<'_>) -> TransformOperation<'_> {
    let change = json!({
        "position": 42,
        "event": {
            "v": 1,
            "type": "owner_changed",
            "meta": {
                "event_id": "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6b",
                "command_id": "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6c",
                "correlation": "0192b3a4-5c6d-7e8f-9a0b-1c2d3e4f5a6d",
                "actor": {"kind": "user", "user": "ann"},
                "at": "2026-11-26T10:00:00Z"
            },
            "record": {"kind": "contact", "id": "c1"},
            "from": "bob",
            "to": "cid"
        }
    });
    event_stream::<Change>(
        op,
        "changes",
        "The account's access changes after a position, live, as Server-Sent Events \
         (the HTTP side of query `changes`). Resume with `after` (or the `Last-Event-ID` \
         header) set to the last position seen.",
        GET_ERRORS,
        change,
    )
}

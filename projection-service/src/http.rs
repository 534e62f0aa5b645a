//! Queries over HTTP with JSON, for dashboards. Each route builds the same query body a NATS
//! client would send and answers it through [`Queries::answer`], so both give the same answers.
//! Also health, readiness, Prometheus metrics and the OpenAPI description.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use followers_shared::error::ErrorCode;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Map, Value, json};

use crate::queries::{Answer, Queries};

#[derive(Debug, Clone)]
pub struct HttpState {
    pub queries: Arc<Queries>,
    pub ready: Arc<AtomicBool>,
    pub metrics: Option<PrometheusHandle>,
}

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

pub fn router(state: HttpState, max_request_bytes: usize) -> Router {
    Router::new()
        .route("/v1/accounts/{account}", get(account))
        .route("/v1/accounts/{account}/access", get(check_access))
        .route(
            "/v1/accounts/{account}/access/batch",
            post(check_access_batch),
        )
        .route(
            "/v1/accounts/{account}/records/{kind}/{id}/followers",
            get(followers),
        )
        .route(
            "/v1/accounts/{account}/users/{user}/records",
            get(records_of_user),
        )
        .route(
            "/v1/accounts/{account}/contacts/{contact}/opportunities",
            get(contact_opportunities),
        )
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .with_state(state)
}

fn respond(answer: Answer) -> Response {
    let status = match answer.error {
        None => StatusCode::OK,
        Some(ErrorCode::MalformedRequest) => StatusCode::BAD_REQUEST,
        Some(ErrorCode::RequestTooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
        Some(ErrorCode::UnknownAccount | ErrorCode::UnknownRecord | ErrorCode::UnknownCommand) => {
            StatusCode::NOT_FOUND
        }
        Some(ErrorCode::Timeout) => StatusCode::GATEWAY_TIMEOUT,
        Some(ErrorCode::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
        Some(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        answer.body,
    )
        .into_response()
}

/// Moves `min_position` and `limit` (numbers) into a JSON body with the fields taken from the
/// path (`fixed`); any other parameter is passed through, so the query's strict parsing rejects
/// it by name. A parameter never overrides a field taken from the path.
fn body(mut params: HashMap<String, String>, fixed: Map<String, Value>) -> Vec<u8> {
    params.retain(|k, _| !fixed.contains_key(k));
    let mut out = fixed;
    if let Some(p) = params.remove("min_position") {
        out.insert(
            "min_position".into(),
            p.parse::<u64>().map_or(Value::String(p), |n| json!(n)),
        );
    }
    if let Some(l) = params.remove("limit") {
        out.insert(
            "limit".into(),
            l.parse::<u64>().map_or(Value::String(l), |n| json!(n)),
        );
    }
    for (k, v) in params {
        out.insert(k, Value::String(v));
    }
    serde_json::to_vec(&out).unwrap_or_default()
}

async fn account(
    State(s): State<HttpState>,
    Path(account): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    respond(
        s.queries
            .answer(&account, "account", &body(params, Map::new()))
            .await,
    )
}

async fn check_access(
    State(s): State<HttpState>,
    Path(account): Path<String>,
    Query(mut params): Query<HashMap<String, String>>,
) -> Response {
    let mut fixed = Map::new();
    let kind = params.remove("kind");
    let id = params.remove("id");
    if kind.is_some() || id.is_some() {
        fixed.insert("record".into(), json!({"kind": kind, "id": id}));
    }
    respond(
        s.queries
            .answer(&account, "check_access", &body(params, fixed))
            .await,
    )
}

async fn check_access_batch(
    State(s): State<HttpState>,
    Path(account): Path<String>,
    payload: Bytes,
) -> Response {
    respond(
        s.queries
            .answer(&account, "check_access_batch", &payload)
            .await,
    )
}

async fn followers(
    State(s): State<HttpState>,
    Path((account, kind, id)): Path<(String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let mut fixed = Map::new();
    fixed.insert("record".into(), json!({"kind": kind, "id": id}));
    respond(
        s.queries
            .answer(&account, "followers", &body(params, fixed))
            .await,
    )
}

async fn records_of_user(
    State(s): State<HttpState>,
    Path((account, user)): Path<(String, String)>,
    Query(mut params): Query<HashMap<String, String>>,
) -> Response {
    let mut fixed = Map::new();
    fixed.insert("user".into(), json!(user));
    let kind = params.remove("after_kind");
    let id = params.remove("after_id");
    if kind.is_some() || id.is_some() {
        fixed.insert("after".into(), json!({"kind": kind, "id": id}));
    }
    respond(
        s.queries
            .answer(&account, "records_of_user", &body(params, fixed))
            .await,
    )
}

async fn contact_opportunities(
    State(s): State<HttpState>,
    Path((account, contact)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let mut fixed = Map::new();
    fixed.insert("contact".into(), json!(contact));
    respond(
        s.queries
            .answer(&account, "contact_opportunities", &body(params, fixed))
            .await,
    )
}

async fn ready(State(s): State<HttpState>) -> Response {
    let position = s.queries.model.position().0;
    if s.ready.load(Ordering::Acquire) {
        (
            StatusCode::OK,
            axum::Json(json!({"ready": true, "position": position})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"ready": false, "position": position})),
        )
            .into_response()
    }
}

async fn metrics(State(s): State<HttpState>) -> Response {
    let (commits, events, corrupt) = s.queries.model.counts();
    metrics::gauge!("followers_commits_applied").set(commits as f64);
    metrics::gauge!("followers_events_applied").set(events as f64);
    metrics::gauge!("followers_commits_unreadable").set(corrupt as f64);
    metrics::gauge!("followers_position").set(s.queries.model.position().0 as f64);
    match &s.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are not enabled in this process",
        )
            .into_response(),
    }
}

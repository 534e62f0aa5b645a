//! Queries over HTTP with JSON, for dashboards. Each route reads its path and query string
//! straight into the query's request type (the `fields` module; the batch route reads its JSON
//! body as NATS does) and answers it through [`Queries::answer_read`], so both transports read
//! the same fields in the same words, give the same answers and share one budget. Also health,
//! readiness and Prometheus metrics (the routes both services share,
//! [`followers_runtime::http::health_routes`]) and the OpenAPI description, generated from these
//! routes and the wire types ([`openapi`]).
//!
//! The server is the bounded one both services share ([`followers_runtime::http::serve`]); the
//! body timeout and size limit are applied where a body is read ([`read_body`]).
//!
//! Around the routes ([`router`]): an access log of every request (method, path, status,
//! latency; never a header or a body), the CORS allow-list for browser dashboards, and the
//! bearer-token check on the `/v1` query routes ([`crate::auth`]). `/health`, `/ready` and
//! `/openapi.json` stay open: probes and tools must reach them without a token, and they say
//! nothing about any account. `/metrics` is served here too unless it has an address of its
//! own ([`metrics_router`]).

use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use aide::generate::GenContext;
use aide::openapi::{Operation, ReferenceOr};
use aide::operation::{OperationInput, add_parameters};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use followers_runtime::http::{Health, health_routes, metrics_routes};
pub use followers_runtime::http::{HttpLimits, serve};
use followers_shared::error::ErrorCode;
use followers_shared::wire::{
    AccessibleRecords, AccountQuery, Changes, CheckAccess, CheckAccessBatch, ContactOpportunities,
    ErrorBody, FollowersQuery, QueryReply, QueryRequest, RecordHistory, RecordsOfUser,
    WhoCanAccess,
};
use futures::StreamExt;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::{Authenticator, TokenError};
use crate::queries::{Answer, Queries};
use fields::Fields;
use openapi::{HttpQuery, Shape};

mod docs;
mod fields;
pub mod openapi;
mod stream;
mod ui;

/// The target of the access log's lines, to filter them (`FOLLOWERS_LOG`).
pub const ACCESS_LOG: &str = "followers_projection_service::access";

#[derive(Debug, Clone)]
pub struct HttpState {
    pub queries: Arc<Queries>,
    /// Readiness and metrics, shared with the command service.
    pub health: Health,
}

/// What guards the HTTP API besides its limits (docs/operations.md, "HTTP API security").
#[derive(Debug, Clone, Default)]
pub struct HttpSecurity {
    /// Verifies the bearer token of every `/v1` request; none: no token is needed.
    pub auth: Option<Arc<Authenticator>>,
    /// Origins whose browser pages may call the API; none: no CORS headers at all.
    pub cors_origins: Vec<HeaderValue>,
    /// Serve `/metrics` on this address (false when it has one of its own).
    pub serve_metrics: bool,
    /// Serve the access explorer page at `/ui/` (`--ui`): files without data, open like
    /// `/openapi.json`; the page reads `/v1` with the user's token.
    pub ui: bool,
}

/// The HTTP API: the query routes (behind the bearer-token check when configured), health,
/// readiness, the OpenAPI description and, unless it is served elsewhere, the metrics; within
/// CORS and the access log.
pub fn router(state: HttpState, limits: HttpLimits, security: &HttpSecurity) -> Router {
    let health = health_routes(state.health.clone(), security.serve_metrics);
    let (routes, document) = openapi::finish(api_routes(security.auth.clone()));
    let document = Bytes::from(document);
    let mut app = routes
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], document) }
            }),
        )
        .layer(Extension(limits))
        .with_state(state)
        .merge(health);
    if security.ui {
        app = app.merge(ui::routes());
    }
    if !security.cors_origins.is_empty() {
        app = app
            .layer(cors(&security.cors_origins))
            .layer(middleware::from_fn(cors_only_for_allowed_origins));
    }
    app.layer(middleware::from_fn(access_log))
}

/// Answers a query in the caller's trace when its request carries a W3C `traceparent`
/// (docs/operations.md, "Traces"), as over NATS.
async fn traced(request: axum::extract::Request, next: middleware::Next) -> Response {
    let headers = request.headers();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let span =
        followers_store::trace::request_span_with("query request", request.uri().path(), header);
    next.run(request).instrument(span).await
}

/// `/metrics` alone, for its own address (`--metrics-addr`).
pub fn metrics_router(state: HttpState) -> Router {
    metrics_routes(state.health).layer(middleware::from_fn(access_log))
}

/// The `/v1` routes, each registered with its documentation (every one names its account,
/// which the token must grant), and the documentation of the open routes served beside them.
fn api_routes(auth: Option<Arc<Authenticator>>) -> ApiRouter<HttpState> {
    openapi::prepare();
    let routes = ApiRouter::new()
        .api_route(
            "/v1/accounts/{account}",
            get_with(query::<AccountQuery>, docs::account),
        )
        .api_route(
            "/v1/accounts/{account}/access",
            get_with(query::<CheckAccess>, docs::check_access),
        )
        .api_route(
            "/v1/accounts/{account}/access/batch",
            post_with(check_access_batch, docs::check_access_batch),
        )
        .api_route(
            "/v1/accounts/{account}/records/{kind}/{id}/followers",
            get_with(query::<FollowersQuery>, docs::followers),
        )
        .api_route(
            "/v1/accounts/{account}/records/{kind}/{id}/history",
            get_with(query::<RecordHistory>, docs::record_history),
        )
        .api_route(
            "/v1/accounts/{account}/records/{kind}/{id}/access",
            get_with(query::<WhoCanAccess>, docs::who_can_access),
        )
        .api_route(
            "/v1/accounts/{account}/users/{user}/records",
            get_with(query::<RecordsOfUser>, docs::records_of_user),
        )
        .api_route(
            "/v1/accounts/{account}/users/{user}/access",
            get_with(query::<AccessibleRecords>, docs::accessible_records),
        )
        .api_route(
            "/v1/accounts/{account}/contacts/{contact}/opportunities",
            get_with(query::<ContactOpportunities>, docs::contact_opportunities),
        )
        .api_route(
            "/v1/accounts/{account}/changes",
            get_with(stream::changes, docs::changes),
        );
    let routes = match auth {
        Some(auth) => routes.route_layer(middleware::from_fn_with_state(auth, require_token)),
        None => routes,
    };
    openapi::operations(routes.route_layer(middleware::from_fn(traced)))
}

impl HttpQuery for AccountQuery {
    const SHAPE: Shape = Shape {
        path: &[],
        path_record: None,
        param_record: None,
        numbers: &[],
    };
}

impl HttpQuery for CheckAccess {
    const SHAPE: Shape = Shape {
        path: &[],
        path_record: None,
        param_record: Some(("record", "kind", "id")),
        numbers: &[],
    };
}

impl HttpQuery for FollowersQuery {
    const SHAPE: Shape = Shape {
        path: &[],
        path_record: Some("record"),
        param_record: None,
        numbers: &[],
    };
}

impl HttpQuery for WhoCanAccess {
    const SHAPE: Shape = Shape {
        path: &[],
        path_record: Some("record"),
        param_record: None,
        numbers: &[],
    };
}

impl HttpQuery for RecordsOfUser {
    const SHAPE: Shape = Shape {
        path: &["user"],
        path_record: None,
        param_record: Some(("after", "after_kind", "after_id")),
        numbers: &[],
    };
}

impl HttpQuery for AccessibleRecords {
    const SHAPE: Shape = Shape {
        path: &["user"],
        path_record: None,
        param_record: Some(("after", "after_kind", "after_id")),
        numbers: &[],
    };
}

impl HttpQuery for RecordHistory {
    const SHAPE: Shape = Shape {
        path: &[],
        path_record: Some("record"),
        param_record: None,
        numbers: &["after"],
    };
}

impl HttpQuery for Changes {
    const SHAPE: Shape = Shape {
        path: &[],
        path_record: None,
        param_record: Some(("record", "record_kind", "record_id")),
        numbers: &["after", "wait_ms"],
    };
}

impl HttpQuery for ContactOpportunities {
    const SHAPE: Shape = Shape {
        path: &["contact"],
        path_record: None,
        param_record: None,
        numbers: &[],
    };
}

/// A `/v1` request goes on only with a valid token (else 401) that grants its account (else
/// 403). The token is checked before anything else, so a caller without one learns nothing,
/// not even whether the account exists.
async fn require_token(
    State(auth): State<Arc<Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    let grant = match auth.authenticate(request.headers()) {
        Ok(grant) => grant,
        Err(e) => return unauthenticated(&e),
    };
    let (mut parts, body) = request.into_parts();
    let params = match RawPathParams::from_request_parts(&mut parts, &()).await {
        Ok(params) => params,
        Err(rejection) => return rejection.into_response(),
    };
    let account = params
        .iter()
        .find_map(|(name, value)| (name == "account").then_some(value));
    match account {
        Some(account) if grant.allows(account) => {}
        _ => return forbidden(account.unwrap_or_default()),
    }
    next.run(Request::from_parts(parts, body)).await
}

/// RFC 6750: a 401 names the scheme, and says `invalid_token` when a token was sent.
fn unauthenticated(e: &TokenError) -> Response {
    let challenge = if e.had_token() {
        r#"Bearer realm="followers", error="invalid_token""#
    } else {
        r#"Bearer realm="followers""#
    };
    let mut response = failure(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthenticated,
        e.to_string(),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

fn forbidden(account: &str) -> Response {
    let shown: String = account.chars().take(64).collect();
    let mut response = failure(
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
        format!("the bearer token does not grant reading account `{shown}`"),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer realm="followers", error="insufficient_scope""#),
    );
    response
}

/// The usual error envelope with `status`.
fn failure(status: StatusCode, code: ErrorCode, message: String) -> Response {
    let reply = QueryReply::<()>::failure(ErrorBody::new(code, message));
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        followers_shared::json::to_vec(&reply),
    )
        .into_response()
}

/// Browsers may call the API from these origins, with a bearer token, reading the headers
/// that explain a refusal.
fn cors(origins: &[HeaderValue]) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::RETRY_AFTER, header::WWW_AUTHENTICATE])
        .max_age(Duration::from_secs(600))
}

/// The CORS headers a response may carry only together with `Access-Control-Allow-Origin`.
const CORS_ALLOW_HEADERS: [HeaderName; 5] = [
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
];

/// `CorsLayer` answers every preflight with the allowed methods and headers, naming the origin
/// only when it is on the list; for any other origin we send none of them, so a page elsewhere
/// learns nothing of what the API accepts.
async fn cors_only_for_allowed_origins(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        for name in CORS_ALLOW_HEADERS {
            headers.remove(name);
        }
    }
    response
}

/// One line per request at info level: method, path (without the query string: parameters
/// are query content), status and the time to the response's head. Never a header, so never a
/// token.
async fn access_log(request: Request, next: Next) -> Response {
    if !tracing::enabled!(target: ACCESS_LOG, tracing::Level::INFO) {
        return next.run(request).await;
    }
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    tracing::info!(
        target: ACCESS_LOG,
        %method,
        %path,
        status = response.status().as_u16(),
        latency_us,
        "HTTP request"
    );
    response
}

/// Why a request body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body has more than {limit} bytes; at most {limit} are accepted")]
    TooLarge { limit: usize },
    #[error("the request body did not arrive within {0} ms; send it with the headers")]
    TimedOut(u128),
    #[error("the request body could not be read: {0}")]
    Unreadable(axum::Error),
}

impl BodyError {
    fn respond(&self) -> Response {
        let (status, code) = match self {
            BodyError::TooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::RequestTooLarge)
            }
            BodyError::TimedOut(_) => (StatusCode::REQUEST_TIMEOUT, ErrorCode::Timeout),
            BodyError::Unreadable(_) => (StatusCode::BAD_REQUEST, ErrorCode::MalformedRequest),
        };
        let reply = QueryReply::<()>::failure(ErrorBody::new(code, self.to_string()));
        (
            status,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CONNECTION, "close"),
            ],
            followers_shared::json::to_vec(&reply),
        )
            .into_response()
    }
}

/// Reads a whole request body of at most `limits.max_request_bytes`, within
/// `limits.body_timeout` (the whole body, however it is trickled).
pub async fn read_body(body: Body, limits: &HttpLimits) -> Result<Vec<u8>, BodyError> {
    let limit = limits.max_request_bytes;
    let read = async {
        let mut chunks = body.into_data_stream();
        let mut out = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(BodyError::Unreadable)?;
            if out.len().saturating_add(chunk.len()) > limit {
                return Err(BodyError::TooLarge { limit });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    };
    tokio::time::timeout(limits.body_timeout, read)
        .await
        .unwrap_or(Err(BodyError::TimedOut(limits.body_timeout.as_millis())))
}

/// The declared `Content-Length`, if any and readable.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A route's query parameters, each at most once, as the fields of its query: like a repeated
/// JSON key, a repeated parameter (`?user=ann&user=bob`) is refused with `malformed_request`,
/// never read as one of them.
#[derive(Debug)]
pub struct Params(Fields);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        let malformed = |message: String| {
            let reply =
                QueryReply::<()>::failure(ErrorBody::new(ErrorCode::MalformedRequest, message));
            (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                followers_shared::json::to_vec(&reply),
            )
                .into_response()
        };
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| malformed(format!("the query string cannot be read: {e}")))?;
        let mut seen = HashSet::with_capacity(pairs.len());
        for (key, _) in &pairs {
            if !seen.insert(key.as_str()) {
                let shown: String = key.chars().take(64).collect();
                return Err(malformed(format!(
                    "the query parameter `{shown}` appears more than once"
                )));
            }
        }
        Ok(Params(Fields::params(pairs)))
    }
}

/// Admits a query whose fields come from the path and parameters into the budget, reads it as a
/// `T` and answers it.
async fn ask<T: QueryRequest>(s: &HttpState, account: &str, fields: Fields) -> Response {
    let admitted = match s.queries.admit(fields.bytes()) {
        Ok(admitted) => admitted,
        Err(refused) => return respond(refused),
    };
    let answer = s.queries.answer_read(account, fields.read::<T>()).await;
    drop(admitted);
    respond(answer)
}

fn respond(answer: Answer) -> Response {
    let status = match answer.error {
        None => StatusCode::OK,
        Some(ErrorCode::MalformedRequest | ErrorCode::TooMuchHistory) => StatusCode::BAD_REQUEST,
        Some(ErrorCode::RequestTooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
        Some(ErrorCode::UnknownAccount | ErrorCode::UnknownRecord | ErrorCode::UnknownCommand) => {
            StatusCode::NOT_FOUND
        }
        Some(ErrorCode::Timeout) => StatusCode::GATEWAY_TIMEOUT,
        Some(ErrorCode::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
        Some(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        answer.body,
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

/// A `GET` query route: its fields read as [`HttpQuery::SHAPE`] says, answered.
async fn query<T: HttpQuery>(State(s): State<HttpState>, asked: Ask<T>) -> Response {
    ask::<T>(&s, &asked.account, asked.fields).await
}

/// The account and the fields of query `T` from a request's path and parameters.
#[derive(Debug)]
struct Ask<T> {
    account: String,
    fields: Fields,
    query: PhantomData<T>,
}

impl<T: HttpQuery, S: Send + Sync> FromRequestParts<S> for Ask<T> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        let Path(segments) = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Params(mut fields) = Params::from_request_parts(parts, state).await?;
        let shape = T::SHAPE;
        let (mut account, mut kind, mut id) = (String::new(), None, None);
        for (name, value) in segments {
            match name.as_str() {
                "account" => account = value,
                "kind" if shape.path_record.is_some() => kind = Some(value),
                "id" if shape.path_record.is_some() => id = Some(value),
                field if shape.path.contains(&field) => fields = fields.path(field, value),
                _ => {}
            }
        }
        if let (Some(field), Some(kind), Some(id)) = (shape.path_record, kind, id) {
            fields = fields.path_record(field, kind, id);
        }
        if let Some((field, kind, id)) = shape.param_record {
            fields = fields.param_record(field, kind, id);
        }
        fields = fields.numbers(shape.numbers);
        Ok(Ask {
            account,
            fields,
            query: PhantomData,
        })
    }
}

impl<T: HttpQuery> OperationInput for Ask<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        let parameters = openapi::parameters::<T>(ctx);
        add_parameters(ctx, operation, parameters);
    }
}

/// The `{account}` of a route whose other fields are in its body.
#[derive(Debug)]
struct Account(String);

impl<S: Send + Sync> FromRequestParts<S> for Account {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        let Path(account) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Account(account))
    }
}

impl OperationInput for Account {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        let parameters = openapi::account_parameter(ctx);
        add_parameters(ctx, operation, [parameters]);
    }
}

/// The body of query `T`, read by the route itself (within its limits and budget).
#[derive(Debug)]
struct BodyOf<T>(Body, PhantomData<T>);

impl<T, S: Send + Sync> FromRequest<S> for BodyOf<T> {
    type Rejection = std::convert::Infallible;

    async fn from_request(request: Request, _: &S) -> Result<Self, Self::Rejection> {
        Ok(BodyOf(request.into_body(), PhantomData))
    }
}

impl<T: schemars::JsonSchema> OperationInput for BodyOf<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        let body = openapi::request_body::<T>(ctx);
        operation.request_body = Some(ReferenceOr::Item(body));
    }
}

/// The one route with a body: refused at once when its declared length is too large, admitted
/// into the budget for its declared length (or the largest accepted, when chunked) before the
/// body is read, and read within the body timeout.
async fn check_access_batch(
    State(s): State<HttpState>,
    Extension(limits): Extension<HttpLimits>,
    Account(account): Account,
    headers: HeaderMap,
    BodyOf(payload, _): BodyOf<CheckAccessBatch>,
) -> Response {
    let limit = limits.max_request_bytes;
    let declared = content_length(&headers);
    if declared.is_some_and(|n| n > limit as u64) {
        return BodyError::TooLarge { limit }.respond();
    }
    let held = declared.map_or(limit, |n| usize::try_from(n).unwrap_or(limit));
    let admitted = match s.queries.admit(held) {
        Ok(admitted) => admitted,
        Err(refused) => return respond(refused),
    };
    let payload = match read_body(payload, &limits).await {
        Ok(payload) => payload,
        Err(e) => return e.respond(),
    };
    let query = CheckAccessBatch::from_body(&payload);
    let answer = s.queries.answer_read(&account, query).await;
    drop(admitted);
    respond(answer)
}

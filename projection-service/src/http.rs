//! Queries over HTTP with JSON, for dashboards. Each route reads its path and query string
//! straight into the query's request type (the `fields` module; the batch route reads its JSON
//! body as NATS does) and answers it through [`Queries::answer_read`], so both transports read
//! the same fields in the same words, give the same answers and share one budget. Also health, readiness, Prometheus metrics and the OpenAPI
//! description.
//!
//! [`serve`] is a small accept loop around hyper's HTTP/1 connection, because `axum::serve`
//! has no read timeouts: it bounds open connections, the time to send headers (and to stay
//! idle between requests), and the time a response may wait for the client to read it. The
//! body timeout and size limit are applied where a body is read ([`read_body`]). With TLS the
//! handshake runs in the connection's task, within the header timeout.
//!
//! Around the routes ([`router`]): an access log of every request (method, path, status,
//! latency; never a header or a body), the CORS allow-list for browser dashboards, and the
//! bearer-token check on the `/v1` query routes ([`crate::auth`]). `/health`, `/ready` and
//! `/openapi.json` stay open: probes and tools must reach them without a token, and they say
//! nothing about any account. `/metrics` is served here too unless it has an address of its
//! own ([`metrics_router`]).

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use followers_shared::error::ErrorCode;
use followers_shared::wire::{
    AccountQuery, CheckAccess, CheckAccessBatch, ContactOpportunities, ErrorBody, FollowersQuery,
    QueryReply, QueryRequest, RecordsOfUser,
};
use futures::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::{Authenticator, TokenError};
use crate::queries::{Answer, Queries};
use fields::Fields;

mod fields;

/// The target of the access log's lines, to filter them (`FOLLOWERS_LOG`).
pub const ACCESS_LOG: &str = "followers_projection_service::access";

#[derive(Debug, Clone)]
pub struct HttpState {
    pub queries: Arc<Queries>,
    pub ready: Arc<AtomicBool>,
    pub metrics: Option<PrometheusHandle>,
}

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// The HTTP server's bounds (see docs/operations.md, "Limits and back-pressure").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// The request line and headers must arrive within this; an idle keep-alive connection is
    /// closed after it.
    pub header_timeout: Duration,
    /// A request body must arrive within this, or the request is answered 408.
    pub body_timeout: Duration,
    /// A response write that makes no progress for this long closes the connection.
    pub write_timeout: Duration,
    /// Open connections; beyond it, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// Larger request bodies are answered 413.
    pub max_request_bytes: usize,
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
}

/// The HTTP API: the query routes (behind the bearer-token check when configured), health,
/// readiness, the OpenAPI description and, unless it is served elsewhere, the metrics; within
/// CORS and the access log.
pub fn router(state: HttpState, limits: HttpLimits, security: &HttpSecurity) -> Router {
    let mut app = query_routes(security.auth.clone())
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        );
    if security.serve_metrics {
        app = app.route("/metrics", get(metrics));
    }
    let mut app = app.layer(Extension(limits)).with_state(state);
    if !security.cors_origins.is_empty() {
        app = app
            .layer(cors(&security.cors_origins))
            .layer(middleware::from_fn(cors_only_for_allowed_origins));
    }
    app.layer(middleware::from_fn(access_log))
}

/// `/metrics` alone, for its own address (`--metrics-addr`).
pub fn metrics_router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
        .layer(middleware::from_fn(access_log))
}

/// The `/v1` routes: every one names its account, which the token must grant.
fn query_routes(auth: Option<Arc<Authenticator>>) -> Router<HttpState> {
    let routes = Router::new()
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
        );
    match auth {
        Some(auth) => routes.route_layer(middleware::from_fn_with_state(auth, require_token)),
        None => routes,
    }
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

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown`, then lets the requests in
/// flight finish (each bounded by the limits) and closes every connection.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let places = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connections = TaskTracker::new();
    loop {
        // At the limit, stop accepting: new connections wait in the kernel's listen backlog
        // until an open one closes.
        let place = tokio::select! {
            () = shutdown.cancelled() => break,
            p = places.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let stream = WriteTimeout::new(stream, limits.write_timeout);
        let (http1, app, tls, stop) = (http1.clone(), app.clone(), tls.clone(), shutdown.clone());
        connections.spawn(async move {
            match tls {
                None => serve_connection(&http1, stream, app, peer, stop).await,
                Some(tls) => {
                    if let Some(stream) = handshake(&tls, stream, limits, peer, &stop).await {
                        serve_connection(&http1, stream, app, peer, stop).await;
                    }
                }
            }
            drop(place);
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// The TLS handshake, within the header timeout: a client that never completes it is dropped
/// like one that never sends its headers. `None` when it failed, timed out or shutdown came.
async fn handshake(
    tls: &TlsAcceptor,
    stream: WriteTimeout,
    limits: HttpLimits,
    peer: SocketAddr,
    stop: &CancellationToken,
) -> Option<tokio_rustls::server::TlsStream<WriteTimeout>> {
    let accepted = tokio::select! {
        () = stop.cancelled() => return None,
        accepted = tokio::time::timeout(limits.header_timeout, tls.accept(stream)) => accepted,
    };
    match accepted {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake not completed within the header timeout");
            None
        }
    }
}

/// Serves HTTP/1 on one connection until the client closes it, a limit closes it, or shutdown
/// comes (then the request in flight finishes first).
async fn serve_connection<I>(
    http1: &hyper::server::conn::http1::Builder,
    io: I,
    app: Router,
    peer: SocketAddr,
    stop: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = http1.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    let mut connection = std::pin::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "HTTP connection closed");
    }
}

/// A TCP stream whose writes fail with `TimedOut` once the peer has taken nothing for `limit`,
/// so a client that never reads its response cannot hold a connection forever.
#[derive(Debug)]
struct WriteTimeout {
    stream: TcpStream,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl WriteTimeout {
    fn new(stream: TcpStream, limit: Duration) -> Self {
        Self {
            stream,
            limit,
            stalled: None,
        }
    }

    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stalled = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client read nothing for {} ms", limit.as_millis()),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for WriteTimeout {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteTimeout {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.guard(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.guard(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_flush(cx);
        this.guard(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.guard(cx, polled)
    }
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
        Some(ErrorCode::MalformedRequest) => StatusCode::BAD_REQUEST,
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

async fn account(
    State(s): State<HttpState>,
    Path(account): Path<String>,
    Params(params): Params,
) -> Response {
    ask::<AccountQuery>(&s, &account, params).await
}

async fn check_access(
    State(s): State<HttpState>,
    Path(account): Path<String>,
    Params(params): Params,
) -> Response {
    let fields = params.param_record("record", "kind", "id");
    ask::<CheckAccess>(&s, &account, fields).await
}

/// The one route with a body: refused at once when its declared length is too large, admitted
/// into the budget for its declared length (or the largest accepted, when chunked) before the
/// body is read, and read within the body timeout.
async fn check_access_batch(
    State(s): State<HttpState>,
    Extension(limits): Extension<HttpLimits>,
    Path(account): Path<String>,
    headers: HeaderMap,
    payload: Body,
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

async fn followers(
    State(s): State<HttpState>,
    Path((account, kind, id)): Path<(String, String, String)>,
    Params(params): Params,
) -> Response {
    let fields = params.path_record("record", kind, id);
    ask::<FollowersQuery>(&s, &account, fields).await
}

async fn records_of_user(
    State(s): State<HttpState>,
    Path((account, user)): Path<(String, String)>,
    Params(params): Params,
) -> Response {
    let fields = params
        .path("user", user)
        .param_record("after", "after_kind", "after_id");
    ask::<RecordsOfUser>(&s, &account, fields).await
}

async fn contact_opportunities(
    State(s): State<HttpState>,
    Path((account, contact)): Path<(String, String)>,
    Params(params): Params,
) -> Response {
    let fields = params.path("contact", contact);
    ask::<ContactOpportunities>(&s, &account, fields).await
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

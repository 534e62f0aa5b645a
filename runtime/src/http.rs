//! The HTTP pieces both services share, written once: a small bounded server ([`serve`]) and
//! the routes every instance answers for its operators ([`health_routes`]): `/health`, `/ready`
//! and, when asked, `/metrics` from the process-wide Prometheus recorder
//! ([`crate::metrics::recorder`]).
//!
//! [`serve`] is a small accept loop around hyper's HTTP/1 connection, because `axum::serve`
//! has no read timeouts: it bounds open connections, the time to send headers (and to stay
//! idle between requests), and the time a response may wait for the client to read it. With
//! TLS the handshake runs in the connection's task, within the header timeout.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use followers_store::LiveModel;
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

/// What the operator's routes report about one service instance.
#[derive(Clone)]
pub struct Health {
    /// The instance's live model: its position, and whether it is rebuilding.
    pub model: LiveModel,
    /// Set once the history is loaded at start and requests are served; a service may clear it
    /// while it cannot serve.
    pub serving: Arc<AtomicBool>,
    /// The process-wide recorder; none: `/metrics` answers 404.
    pub metrics: Option<PrometheusHandle>,
    /// Sets the service's own gauges just before `/metrics` is rendered.
    pub on_scrape: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("position", &self.model.position())
            .field("serving", &self.serving)
            .field("metrics", &self.metrics.is_some())
            .field("on_scrape", &self.on_scrape.is_some())
            .finish()
    }
}

impl Health {
    /// Ready: serving, and the model is not rebuilding from a replaced history.
    pub fn is_ready(&self) -> bool {
        self.serving.load(Ordering::Acquire) && self.model.is_current()
    }
}

/// `/health` (200 while the process runs), `/ready` (200 when [`Health::is_ready`], else 503;
/// both with the model's position) and, with `with_metrics`, `/metrics`.
pub fn health_routes(health: Health, with_metrics: bool) -> Router {
    let routes = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready));
    let routes = if with_metrics {
        routes.route("/metrics", get(metrics))
    } else {
        routes
    };
    routes.with_state(health)
}

/// `/metrics` alone, for an address of its own.
pub fn metrics_routes(health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(health)
}

async fn ready(State(health): State<Health>) -> Response {
    let ready = health.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let position = health.model.position().0;
    (
        status,
        axum::Json(json!({"ready": ready, "position": position})),
    )
        .into_response()
}

async fn metrics(State(health): State<Health>) -> Response {
    let Some(handle) = &health.metrics else {
        return (
            StatusCode::NOT_FOUND,
            "metrics are not enabled in this process",
        )
            .into_response();
    };
    crate::metrics::record_model(&health.model);
    if let Some(on_scrape) = &health.on_scrape {
        on_scrape();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// Binds `addr` (port 0: any free port) and returns the listener with its real address.
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ListenError> {
    let listen = |source| ListenError { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(listen)?;
    let bound = listener.local_addr().map_err(listen)?;
    Ok((listener, bound))
}

/// An HTTP address could not be listened on.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use followers_shared::read_model::ReadModel;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const LIMITS: HttpLimits = HttpLimits {
        header_timeout: Duration::from_secs(5),
        body_timeout: Duration::from_secs(5),
        write_timeout: Duration::from_secs(5),
        max_connections: 4,
        max_request_bytes: 0,
    };

    /// The status line and body of `GET path` on `addr`.
    async fn get(addr: SocketAddr, path: &str) -> (String, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let status = answer.lines().next().unwrap_or_default().to_owned();
        let body = answer
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        (status, body)
    }

    #[tokio::test]
    async fn ready_only_once_serving_and_metrics_only_when_asked_for() {
        let serving = Arc::new(AtomicBool::new(false));
        let health = Health {
            model: LiveModel::new(ReadModel::default()),
            serving: serving.clone(),
            metrics: None,
            on_scrape: None,
        };
        let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let stop = CancellationToken::new();
        let app = health_routes(health, false);
        let server = tokio::spawn(serve(listener, app, LIMITS, None, stop.clone()));

        assert!(get(addr, "/health").await.0.contains(" 200 "));
        let (status, body) = get(addr, "/ready").await;
        assert!(status.contains(" 503 "), "{status}");
        assert!(body.contains(r#""ready":false"#), "{body}");
        serving.store(true, Ordering::Release);
        let (status, body) = get(addr, "/ready").await;
        assert!(status.contains(" 200 "), "{status}");
        assert!(body.contains(r#""ready":true"#), "{body}");
        assert!(get(addr, "/metrics").await.0.contains(" 404 "));

        stop.cancel();
        server.await.unwrap();
    }
}

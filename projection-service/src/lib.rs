//! The projection service: follows the history and serves read models over NATS and HTTP.
//!
//! - [`config`]: the typed configuration.
//! - [`queries`]: every query, answered from the live model; shared by both transports.
//! - [`feed`]: the feed of access changes: pages over NATS, Server-Sent Events over HTTP.
//! - [`nats`], [`http`]: the two transports; [`auth`] (bearer tokens) and [`tls`] guard HTTP.
//! - [`snapshot`]: snapshots for fast restarts, in a file or in the JetStream object store (one
//!   per partition of a partitioned history): the store crate's, which the command service
//!   shares.
//!
//! Start-up: load the snapshot if there is a usable one, replay the rest of the history, then
//! follow live. Queries are served once caught up (`/ready` turns 200).

pub mod auth;
pub mod config;
pub mod feed;
pub mod forward;
pub mod http;
pub mod nats;
pub mod past;
pub mod queries;
pub mod tls;

pub use followers_store::snapshot;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use followers_runtime::http::{Health, bind};
use followers_runtime::{Background, ServiceHandle, ServiceSpec};
use followers_shared::partition::Partitions;
use followers_shared::read_model::{Chains, ReadModel};
use followers_shared::signing::Verifier;
use followers_shared::store::{EventStore, Position};
use followers_shared::wire::Query;
use followers_store::{LiveModel, StreamSetup};
use tokio_util::sync::CancellationToken;

pub use config::Config;
use forward::Elsewhere;
use queries::Queries;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A step every service takes (NATS, the store, the history, key files, the subscription).
    #[error(transparent)]
    Service(#[from] followers_runtime::StartError),
    #[error(transparent)]
    Listen(#[from] followers_runtime::http::ListenError),
    #[error(transparent)]
    HttpAuth(#[from] auth::KeySetupError),
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
}

/// A started projection service.
#[derive(Debug)]
pub struct Running {
    pub handle: ServiceHandle,
    /// Where the HTTP API listens (the real port when configured with port 0).
    pub http_addr: SocketAddr,
    /// Where `/metrics` is served when it has its own address (`--metrics-addr`).
    pub metrics_addr: Option<SocketAddr>,
    pub model: LiveModel,
}

impl Running {
    /// Stops serving, finishes queries in flight, writes a last snapshot, and returns.
    pub async fn stop(self) {
        self.handle.stop().await;
    }
}

/// The HTTP API's guards, read from their files before anything else starts, so that a wrong
/// key or certificate file stops the service at once.
struct HttpSetup {
    security: http::HttpSecurity,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for HttpSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSetup")
            .field("security", &self.security)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl HttpSetup {
    fn from_config(config: &Config) -> Result<Self, StartError> {
        let auth = auth::Authenticator::from_settings(&config.auth_settings())?;
        let tls = match config.tls_files() {
            Some((cert, key)) => Some(tls::acceptor(cert, key)?),
            None => None,
        };
        Ok(Self {
            security: http::HttpSecurity {
                auth: auth.map(Arc::new),
                cors_origins: config.http_cors_origins.clone(),
                serve_metrics: config.metrics_addr.is_none(),
                ui: config.ui,
            },
            tls,
        })
    }

    /// Says at start what the HTTP API trusts.
    fn log(&self, http_addr: SocketAddr) {
        match &self.security.auth {
            Some(auth) => tracing::info!(
                keys = ?auth.families(),
                "the HTTP query API requires bearer tokens"
            ),
            None => tracing::warn!(
                %http_addr,
                "the HTTP query API needs no token (no --http-auth-secret-file or \
                 --http-auth-public-key-file): anyone who can reach it may read every account"
            ),
        }
        if self.tls.is_none() {
            tracing::info!(%http_addr, "the HTTP API is served without TLS");
        }
    }
}

/// Connects to NATS and binds to the history (a reader never creates or changes it, and
/// waits for it at start), then starts.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let setup = HttpSetup::from_config(&config)?;
    let (client, store) = config
        .service
        .connect("followers-projection-service", StreamSetup::Bind)
        .await
        .map_err(followers_runtime::StartError::from)?;
    start_prepared(client, store, config, setup).await
}

/// Starts with a given NATS client and store.
pub async fn start_with<S: EventStore + Clone>(
    client: async_nats::Client,
    store: S,
    config: Config,
) -> Result<Running, StartError> {
    let setup = HttpSetup::from_config(&config)?;
    start_prepared(client, store, config, setup).await
}

/// Serves HTTP at once (`/ready` answers 503 until the history is loaded), loads the history,
/// then serves queries over NATS and keeps the model, its snapshot and its metrics current.
async fn start_prepared<S: EventStore + Clone>(
    client: async_nats::Client,
    store: S,
    config: Config,
    setup: HttpSetup,
) -> Result<Running, StartError> {
    let place = snapshot_place(&client, &config, &store).await?;
    let (model, snapshot_at) = restore(&config, &store, place.as_ref()).await?;
    // Before any meter is made, so that they record into it.
    let recorder = followers_runtime::metrics::recorder();
    let ready = Arc::new(AtomicBool::new(false));
    let background = Background::default();
    let history: Arc<dyn feed::AccountHistory> = Arc::new(store.clone());
    let feed = feed::Feed::new(
        model.clone(),
        history,
        config.feed_limits(),
        background.token(),
    );
    let queries = Arc::new(Queries {
        model: model.clone(),
        max_wait: config.max_wait(),
        ready: ready.clone(),
        budget: queries::Budget::new(config.query_limits()),
        meters: Arc::new(queries::query_meters()),
        feed,
        past: Arc::new(past::Past::new(
            Arc::new(store.clone()),
            config.past_limits(),
        )),
        elsewhere: elsewhere(&client, &config, store.partitions()),
    });
    let health = Health {
        model: model.clone(),
        serving: ready.clone(),
        metrics: recorder,
        on_scrape: None,
    };
    let (http_addr, metrics_addr) =
        serve_http(&config, setup, &queries, health, &background).await?;
    let timeout = config.service.startup_timeout();
    let head = background.load_history(&model, &store, timeout).await?;
    ready.store(true, Ordering::Release);
    tracing::info!(
        position = head.0,
        %http_addr,
        metrics_addr = metrics_addr.map(tracing::field::display),
        "read models ready"
    );
    let spec = service_spec(&config, &store.partitions());
    let registered = background.register(&client, &spec).await?;
    tracing::info!(service = spec.name, "serving queries");
    keep_current(
        &background,
        &config,
        store,
        &model,
        &ready,
        (place, snapshot_at),
    );
    let nats = Arc::new(nats::NatsQueries {
        queries,
        prefix: config.service.subject_prefix.clone(),
        max_request_bytes: config.max_request_bytes,
    });
    let shutdown = CancellationToken::new();
    let serve = followers_runtime::serve(client, registered, nats, shutdown.clone());
    Ok(Running {
        handle: ServiceHandle::spawn("projection service", shutdown, serve, background),
        http_addr,
        metrics_addr,
        model,
    })
}

/// The service's name in the NATS services API and in traces.
pub const SERVICE_NAME: &str = "followers-projection";

/// The projection in the NATS services API: one endpoint per query, on
/// `{prefix}.query.*.{query}`.
fn service_spec(config: &Config, partitions: &Partitions) -> ServiceSpec {
    let prefix = &config.service.subject_prefix;
    ServiceSpec {
        name: SERVICE_NAME,
        description: "Answers access checks and follower queries from the read models",
        queue_group: config.queue_group.clone(),
        endpoints: followers_runtime::endpoints(prefix, "query", Query::NAMES, partitions),
    }
}

/// How long a query passed on to another instance may take beyond its own wait.
const FORWARD_PATIENCE: Duration = Duration::from_secs(2);

/// Where queries about the partitions this instance does not serve go; `None` when it serves
/// every account.
fn elsewhere(
    client: &async_nats::Client,
    config: &Config,
    partitions: Partitions,
) -> Option<Elsewhere> {
    (!partitions.owns_all()).then(|| Elsewhere {
        client: client.clone(),
        prefix: config.service.subject_prefix.clone(),
        partitions,
        patience: FORWARD_PATIENCE,
    })
}

/// Where the snapshot is kept, if anywhere: `--snapshot-path`, or with `--snapshot-in-jetstream`
/// the objects `projection.*` of the partitions served in the bucket the administrative step made.
async fn snapshot_place<S: EventStore>(
    client: &async_nats::Client,
    config: &Config,
    store: &S,
) -> Result<Option<snapshot::Place>, StartError> {
    let flags = (
        config.snapshot_path.as_deref(),
        config.snapshot_in_jetstream,
    );
    let stream = &config.service.store.stream;
    snapshot::place(client, stream, store, flags, snapshot::Kind::Projection)
        .await
        .map_err(|e| followers_runtime::StartError::from(e).into())
}

/// The model to start from: the snapshot's when a fitting one is found, otherwise empty; with
/// --require-signatures, commits not signed by a configured key are refused, not applied.
async fn restore<S: EventStore>(
    config: &Config,
    store: &S,
    place: Option<&snapshot::Place>,
) -> Result<(LiveModel, Option<Position>), StartError> {
    let verifier = config
        .service
        .signatures
        .verifier(None)
        .map_err(followers_runtime::StartError::from)?;
    let chains = chains_for(verifier.as_ref());
    let fresh = ReadModel::with_chains(chains);
    let loaded = match place {
        Some(place) => snapshot::load_fitting(place, store, &fresh, verifier.as_ref()).await,
        None => None,
    };
    let snapshot_at = loaded.as_ref().and_then(|l| l.written_at);
    let model = match loaded {
        Some(l) => LiveModel::of_history(l.model, l.history),
        None => LiveModel::new(fresh),
    };
    Ok((model.with_verifier(verifier), snapshot_at))
}

/// Queries never need the streams' chain values, so they are dropped (a 64-character string per
/// stream); checking signatures needs them, to admit each commit after its predecessor.
fn chains_for(verifier: Option<&Verifier>) -> Chains {
    match verifier {
        Some(_) => Chains::Kept,
        None => Chains::Dropped,
    }
}

/// Binds the HTTP API (and `/metrics` when it has its own address) and serves them in the
/// background; returns where they listen.
async fn serve_http(
    config: &Config,
    setup: HttpSetup,
    queries: &Arc<Queries>,
    health: Health,
    background: &Background,
) -> Result<(SocketAddr, Option<SocketAddr>), StartError> {
    let (listener, http_addr) = bind(config.http_addr).await?;
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().map(|(_, addr)| *addr);
    setup.log(http_addr);
    let state = http::HttpState {
        queries: queries.clone(),
        health,
    };
    let (limits, stop) = (config.http_limits(), background.token());
    let app = http::router(state.clone(), limits, &setup.security);
    background.spawn(http::serve(listener, app, limits, setup.tls, stop.clone()));
    if let Some((listener, _)) = metrics_listener {
        let app = http::metrics_router(state);
        background.spawn(http::serve(listener, app, limits, None, stop));
    }
    Ok((http_addr, metrics_addr))
}

/// The background tasks of a serving projection: the lag metric, readiness while the model
/// rebuilds from a replaced history, and snapshots.
fn keep_current<S: EventStore + Clone>(
    background: &Background,
    config: &Config,
    store: S,
    model: &LiveModel,
    ready: &Arc<AtomicBool>,
    (place, snapshot_at): (Option<snapshot::Place>, Option<Position>),
) {
    let stop = background.token();
    background.spawn(watch_replacements(
        model.clone(),
        ready.clone(),
        stop.clone(),
    ));
    if let Some(place) = place {
        let every = Duration::from_secs(config.snapshot_every_secs.max(1));
        background.spawn(snapshot::keep_saved(
            place,
            store.clone(),
            model.clone(),
            snapshot_at,
            every,
            stop.clone(),
        ));
    }
    background.spawn(watch_lag(store, model.clone(), stop));
}

/// Publishes how far the model is behind the history, every second.
async fn watch_lag<S: EventStore>(store: S, model: LiveModel, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if let Ok(head) = store.head().await {
            let lag = head.0.saturating_sub(model.position().0);
            metrics::gauge!("followers_lag_commits").set(lag as f64);
        }
    }
}

/// While the model rebuilds from a replaced history, the service is not ready: queries answer
/// `unavailable` and `/ready` 503, until the model has caught up with the new history.
async fn watch_replacements(model: LiveModel, ready: Arc<AtomicBool>, stop: CancellationToken) {
    let mut replacements = model.replacements();
    let mut current = model.position_updates();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = replacements.changed() => if changed.is_err() { return },
        }
        ready.store(false, Ordering::Release);
        while !model.is_current() {
            tokio::select! {
                () = stop.cancelled() => return,
                changed = current.changed() => if changed.is_err() { return },
            }
        }
        ready.store(true, Ordering::Release);
        tracing::info!(
            position = model.position().0,
            "read models rebuilt from the new history"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_values_are_kept_only_to_check_signatures() {
        assert_eq!(chains_for(None), Chains::Dropped);
        assert_eq!(chains_for(Some(&Verifier::new())), Chains::Kept);
    }
}

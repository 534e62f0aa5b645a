//! The command service: the only writer of the history.
//!
//! - [`config`]: the typed configuration.
//! - [`handler`]: one command: decide, append with optimistic concurrency, recognise retries.
//! - [`server`]: the NATS request-reply loop with its limits and clean shutdown.
//! - [`follower_sync`]: the process that reacts to owner changes (R7-R10).
//! - [`follower_expiry`]: the scheduler that removes followers when their `until` comes (17.4).
//! - [`signed_head`]: the signed head of the history, for `followers-audit verify`.
//!
//! Start-up loads the history into a live model before taking commands, so every decision is
//! made against the current state; the model then follows the history as it grows. With
//! `--snapshot-path` or `--snapshot-in-jetstream` it starts from the model's last snapshot (its
//! records, chain values and stored commands: [`followers_store::snapshot`]) and replays only
//! the commits after it; the snapshot is written again periodically and on shutdown. With
//! `--http-addr`, `/health`, `/ready` and `/metrics` are served from the start (`/ready` turns
//! 200 once commands are taken, and is 503 while the model rebuilds from a replaced history).

pub mod config;
pub mod follower_expiry;
pub mod follower_sync;
pub mod handler;
mod reply_cache;
pub mod server;
pub mod signed_head;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use followers_runtime::http::{Health, HttpLimits, ListenError};
use followers_runtime::{Background, ServiceHandle, ServiceSpec};
use followers_shared::caller::CallerPolicy;
use followers_shared::partition::Partitions;
use followers_shared::read_model::ReadModel;
use followers_shared::signing::{Signer, Verifier};
use followers_shared::store::{EventStore, Position};
use followers_shared::wire::COMMAND_NAMES;
use followers_store::{LiveModel, StreamSetup, snapshot};
use tokio_util::sync::CancellationToken;

pub use config::Config;
use handler::Handler;
use server::ServeOptions;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A step every service takes (NATS, the store, the history, key files, the subscription).
    #[error(transparent)]
    Service(#[from] followers_runtime::StartError),
    #[error(transparent)]
    HeadBucket(#[from] signed_head::BucketError),
    #[error(transparent)]
    CallerPolicy(#[from] config::PolicyFileError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(
        "--caller-policy needs a nats-server that stamps callers reliably (2.11.15, 2.12.6 or \
         newer); this one is {0}"
    )]
    UntrustedServer(String),
}

impl From<followers_shared::signing::KeyFileError> for StartError {
    fn from(e: followers_shared::signing::KeyFileError) -> Self {
        Self::Service(e.into())
    }
}

/// A started command service.
#[derive(Debug)]
pub struct Running {
    pub handle: ServiceHandle,
    /// The model commands are decided against.
    pub model: LiveModel,
    /// Where `/health`, `/ready` and `/metrics` are served (`--http-addr`; the real port when
    /// configured with port 0).
    pub http_addr: Option<SocketAddr>,
}

impl Running {
    /// Stops taking commands, finishes those in flight, stops the sync, and returns.
    pub async fn stop(self) {
        self.handle.stop().await;
    }
}

/// The bounds of the health listener: probes and scrapers send small requests without a body
/// and read at once, so the bounds are fixed and tight.
const HEALTH_LIMITS: HttpLimits = HttpLimits {
    header_timeout: Duration::from_secs(10),
    body_timeout: Duration::from_secs(10),
    write_timeout: Duration::from_secs(10),
    max_connections: 64,
    max_request_bytes: 0,
};

/// Connects to NATS and the configured store, then starts.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let setup = if config.manage_stream {
        StreamSetup::Manage
    } else {
        StreamSetup::Bind
    };
    let (client, store) = config
        .service
        .connect("followers-command-service", setup)
        .await
        .map_err(followers_runtime::StartError::from)?;
    start_with(client, store, config).await
}

/// Starts with a given NATS client and store: serves `/health` (with `--http-addr`), loads the
/// history, subscribes, and returns once commands are being served.
pub async fn start_with<S: EventStore + Clone>(
    client: async_nats::Client,
    store: S,
    config: Config,
) -> Result<Running, StartError> {
    let caller_policy = trusted_caller_policy(&client, &config)?;
    let signer = config.signer()?;
    let verifier = config.verifier(signer.as_ref())?;
    let head_bucket = signed_head::bucket(&client, &config, signer.is_some()).await?;
    let place = snapshot_place(&client, &config, &store).await?;
    let (model, snapshot_at) = restore(&store, place.as_ref(), verifier.as_ref()).await;
    let model = model.with_verifier(verifier);
    let background = Background::default();
    let serving = Arc::new(AtomicBool::new(false));
    let progress = config.follower_sync.then(follower_sync::Progress::default);
    let http_addr = serve_http(&config, &model, &serving, progress.clone(), &background).await?;
    let head = background
        .load_history(&model, &store, config.service.startup_timeout())
        .await?;
    tracing::info!(position = head.0, "history loaded");
    let handler = handler(&store, &model, &config, signer.clone());
    if let Some(progress) = progress {
        let (store, model, handler) = (store.clone(), model.clone(), handler.clone());
        let stop = background.token();
        background.spawn(follower_sync::run(store, model, handler, progress, stop));
    }
    {
        let (model, handler, stop) = (model.clone(), handler.clone(), background.token());
        background.spawn(follower_expiry::run(model, handler, stop));
    }
    let spec = service_spec(&config, &store.partitions());
    let registered = background.register(&client, &spec).await?;
    if let Some(place) = place {
        let (every, stop) = (config.snapshot_every(), background.token());
        let (store, model) = (store.clone(), model.clone());
        let saving = snapshot::keep_saved(place, store, model, snapshot_at, every, stop);
        background.spawn(saving);
    }
    // After registering, so that its first write (a JetStream publish) cannot hold up the
    // subscriptions on the connection.
    if let Some((signer, bucket)) = signer.zip(head_bucket) {
        let every = config.signed_head_every();
        let stop = background.token();
        let heads = signed_head::Heads {
            bucket,
            signer,
            partitions: store.partitions(),
        };
        background.spawn(signed_head::run(heads, model.clone(), every, stop));
    }
    let commands = Arc::new(server::Commands::new(
        handler,
        serve_options(&config, caller_policy, store.partitions()),
    ));
    let shutdown = CancellationToken::new();
    let serve = followers_runtime::serve(client, registered, commands, shutdown.clone());
    serving.store(true, Ordering::Release);
    // The readiness signal: the history is loaded and commands are being taken.
    tracing::info!(
        position = head.0,
        service = spec.name,
        queue = %spec.queue_group,
        http_addr = http_addr.map(tracing::field::display),
        "command-service ready"
    );
    let handle = ServiceHandle::spawn("command service", shutdown, serve, background);
    Ok(Running {
        handle,
        model,
        http_addr,
    })
}

/// Where the snapshot is kept, if anywhere: `--snapshot-path`, or with `--snapshot-in-jetstream`
/// the objects `command.*` of the partitions served, in the bucket the administrative step made.
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
    snapshot::place(client, stream, store, flags, snapshot::Kind::Command)
        .await
        .map_err(|e| followers_runtime::StartError::from(e).into())
}

/// The model to start from: the snapshot's at `place` when one fits the history (and holds the
/// stored commands and chain values: R24, and the next commit's seal), otherwise an empty one
/// that tracks them; with the position the snapshot was written at, if it was loaded.
async fn restore<S: EventStore>(
    store: &S,
    place: Option<&snapshot::Place>,
    verifier: Option<&Verifier>,
) -> (LiveModel, Option<Position>) {
    let fresh = ReadModel::tracking_commands();
    let loaded = match place {
        Some(place) => snapshot::load_fitting(place, store, &fresh, verifier).await,
        None => None,
    };
    let written_at = loaded.as_ref().and_then(|l| l.written_at);
    let model = match loaded {
        Some(l) => LiveModel::of_history(l.model, l.history),
        None => LiveModel::new(fresh),
    };
    (model, written_at)
}

/// With `--http-addr`: installs the metrics recorder, binds the address and serves `/health`,
/// `/ready` and `/metrics` there in the background; returns where it listens.
async fn serve_http(
    config: &Config,
    model: &LiveModel,
    serving: &Arc<AtomicBool>,
    progress: Option<follower_sync::Progress>,
    background: &Background,
) -> Result<Option<SocketAddr>, StartError> {
    let Some(addr) = config.http_addr else {
        return Ok(None);
    };
    let (listener, http_addr) = followers_runtime::http::bind(addr).await?;
    let on_scrape = progress.map(|progress| {
        let model = model.clone();
        Arc::new(move || follower_sync::record_lag(&progress, &model))
            as Arc<dyn Fn() + Send + Sync>
    });
    let health = Health {
        model: model.clone(),
        serving: serving.clone(),
        metrics: followers_runtime::metrics::recorder(),
        on_scrape,
    };
    let app = followers_runtime::http::health_routes(health, true);
    let stop = background.token();
    background.spawn(followers_runtime::http::serve(
        listener,
        app,
        HEALTH_LIMITS,
        None,
        stop,
    ));
    tracing::info!(%http_addr, "serving /health, /ready and /metrics");
    Ok(Some(http_addr))
}

/// The command handler, as configured.
fn handler<S: EventStore + Clone>(
    store: &S,
    model: &LiveModel,
    config: &Config,
    signer: Option<Signer>,
) -> Arc<Handler<S>> {
    let (retries, cache) = (config.conflict_retries, config.reply_cache);
    let handler = Handler::new(store.clone(), model.clone(), retries, cache)
        .with_append_patience(config.append_patience())
        .with_signer(signer);
    Arc::new(handler)
}

/// The caller policy of --caller-policy, refused on a server that does not stamp callers.
fn trusted_caller_policy(
    client: &async_nats::Client,
    config: &Config,
) -> Result<Option<Arc<CallerPolicy>>, StartError> {
    let Some(policy) = config.caller_policy()? else {
        tracing::warn!(
            "no --caller-policy: every NATS caller may claim any actor for any account it can reach"
        );
        return Ok(None);
    };
    let version = &client.server_info().version;
    if !followers_shared::caller::server_stamps_callers(version) {
        return Err(StartError::UntrustedServer(version.clone()));
    }
    Ok(Some(Arc::new(policy)))
}

/// The service's name in the NATS services API and in traces.
pub const SERVICE_NAME: &str = "followers-command";

/// The command service in the NATS services API: one endpoint per command, on
/// `{prefix}.cmd.*.{command}`; in a partitioned history, on the subjects the server's mapping
/// sends the served partitions' commands to (see [`followers_runtime::endpoints`]).
fn service_spec(config: &Config, partitions: &Partitions) -> ServiceSpec {
    let prefix = &config.service.subject_prefix;
    ServiceSpec {
        name: SERVICE_NAME,
        description: "Decides followers commands and appends their events to the history",
        queue_group: config.queue_group.clone(),
        endpoints: followers_runtime::endpoints(prefix, "cmd", &COMMAND_NAMES, partitions),
    }
}

fn serve_options(
    config: &Config,
    caller_policy: Option<Arc<CallerPolicy>>,
    partitions: Partitions,
) -> ServeOptions {
    ServeOptions {
        prefix: config.service.subject_prefix.clone(),
        max_request_bytes: config.max_request_bytes,
        max_in_flight: config.max_in_flight,
        caller_policy,
        partitions,
    }
}

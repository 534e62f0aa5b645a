//! The command service: the only writer of the history.
//!
//! - [`config`]: the typed configuration.
//! - [`handler`]: one command: decide, append with optimistic concurrency, recognise retries.
//! - [`server`]: the NATS request-reply loop with its limits and clean shutdown.
//! - [`follower_sync`]: the process that reacts to owner changes (R7-R10).
//! - [`signed_head`]: the signed head of the history, for `followers-audit verify`.
//!
//! Start-up loads the whole history into a live model before taking commands, so every decision
//! is made against the current state; the model then follows the history as it grows.

pub mod config;
pub mod follower_sync;
pub mod handler;
mod reply_cache;
pub mod server;
pub mod signed_head;

use std::sync::Arc;

use followers_runtime::ServiceHandle;
use followers_shared::read_model::ReadModel;
use followers_shared::store::{EventStore, StoreError};
use followers_store::live::CatchUpError;
use followers_store::{LiveModel, StreamSetup};
use tokio_util::sync::CancellationToken;

pub use config::Config;
use handler::Handler;
use server::ServeOptions;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("loading the history failed: {0}")]
    CatchUp(#[from] CatchUpError),
    #[error("cannot subscribe to commands: {0}")]
    Subscribe(String),
    #[error(transparent)]
    Keys(#[from] followers_shared::signing::KeyFileError),
    #[error(transparent)]
    HeadBucket(#[from] signed_head::BucketError),
    #[error(transparent)]
    CallerPolicy(#[from] config::PolicyFileError),
    #[error(
        "--caller-policy needs a nats-server that stamps callers reliably (2.11.15, 2.12.6 or \
         newer); this one is {0}"
    )]
    UntrustedServer(String),
}

/// A started command service.
pub type Running = ServiceHandle;

/// Connects to NATS and the configured store, then starts.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let wait = config.startup_timeout();
    let client = config
        .store
        .connect_nats("followers-command-service", wait)
        .await?;
    let setup = if config.manage_stream {
        StreamSetup::Manage
    } else {
        StreamSetup::Bind
    };
    let store = config
        .store
        .open_waiting(client.clone(), setup, wait)
        .await?;
    start_with(client, store, config).await
}

/// Starts with a given NATS client and store: loads the history, subscribes, and returns once
/// commands are being served.
pub async fn start_with<S: EventStore + Clone>(
    client: async_nats::Client,
    store: S,
    config: Config,
) -> Result<Running, StartError> {
    let caller_policy = config.caller_policy()?;
    let version = &client.server_info().version;
    if caller_policy.is_some() && !followers_shared::caller::server_stamps_callers(version) {
        return Err(StartError::UntrustedServer(version.clone()));
    }
    if caller_policy.is_none() {
        tracing::warn!(
            "no --caller-policy: every NATS caller may claim any actor for any account it can reach"
        );
    }
    let shutdown = CancellationToken::new();
    let internal = CancellationToken::new();
    let signer = config.signer()?;
    let verifier = config.verifier(signer.as_ref())?;
    let head_bucket = signed_head::bucket(&client, &config, signer.is_some()).await?;
    let model = LiveModel::new(ReadModel::tracking_commands()).with_verifier(verifier);
    let follower = {
        let (model, store, stop) = (model.clone(), store.clone(), internal.clone());
        tokio::spawn(async move { model.follow(store, stop).await })
    };
    let head = match model.catch_up(&store, config.startup_timeout()).await {
        Ok(head) => head,
        Err(e) => {
            internal.cancel();
            let _ = follower.await;
            return Err(e.into());
        }
    };
    tracing::info!(position = head.0, "history loaded");
    let handler = Arc::new(
        Handler::new(
            store.clone(),
            model.clone(),
            config.conflict_retries,
            config.reply_cache,
        )
        .with_append_patience(config.append_patience())
        .with_signer(signer.clone()),
    );
    let sync = config.follower_sync.then(|| {
        let (store, model, handler, stop) = (
            store.clone(),
            model.clone(),
            handler.clone(),
            internal.clone(),
        );
        tokio::spawn(follower_sync::run(store, model, handler, stop))
    });
    let subject = format!("{}.cmd.*.*", config.subject_prefix);
    let subscription = match client
        .queue_subscribe(subject.clone(), config.queue_group.clone())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            internal.cancel();
            return Err(StartError::Subscribe(e.to_string()));
        }
    };
    // The subscription is in place on the server before the service says it is ready.
    if let Err(e) = followers_runtime::round_trip(&client, std::time::Duration::from_secs(10)).await
    {
        internal.cancel();
        return Err(StartError::Subscribe(e.to_string()));
    }
    // After subscribing, so that its first write (a JetStream publish) cannot hold up the
    // subscription on the connection.
    let heads = signer.zip(head_bucket).map(|(signer, bucket)| {
        let (model, stop, every) = (model.clone(), internal.clone(), config.signed_head_every());
        tokio::spawn(signed_head::run(bucket, model, signer, every, stop))
    });
    // The readiness signal: the history is loaded and commands are being taken.
    tracing::info!(position = head.0, %subject, queue = %config.queue_group, "command-service ready");
    let options = ServeOptions {
        prefix: config.subject_prefix.clone(),
        queue_group: config.queue_group.clone(),
        max_request_bytes: config.max_request_bytes,
        max_in_flight: config.max_in_flight,
        caller_policy: caller_policy.map(Arc::new),
    };
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        server::serve(client, handler, options, subscription, stop).await;
        internal.cancel();
        if let Some(sync) = sync {
            let _ = sync.await;
        }
        if let Some(heads) = heads {
            let _ = heads.await;
        }
        let _ = follower.await;
        tracing::info!("command service stopped");
    });
    Ok(ServiceHandle::new(shutdown, task))
}

//! The start-up steps both services take, written once: load the history into a live model
//! and keep following it, register with the NATS services API only as far as the server has
//! confirmed the endpoints' subscriptions, and run background tasks that stop together with
//! the service.

use std::future::Future;
use std::time::Duration;

use followers_shared::signing::KeyFileError;
use followers_shared::store::{EventStore, Position, StoreError};
use followers_store::LiveModel;
use followers_store::live::CatchUpError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::nats::{RoundTripError, round_trip};
use crate::serve::{Registered, ServiceSpec, register};

/// Why a service could not start, for the steps every service takes.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// NATS or the store could not be reached in time, or the history is not usable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The history could not be loaded within the start-up timeout.
    #[error("loading the history failed: {0}")]
    CatchUp(#[from] CatchUpError),
    /// A key file named in the configuration cannot be used.
    #[error(transparent)]
    Keys(#[from] KeyFileError),
    /// The service could not be registered with the NATS services API (its endpoints'
    /// subscriptions refused), or the server did not confirm them in time.
    #[error("cannot register the service {service}: {source}")]
    Register {
        service: &'static str,
        #[source]
        source: RegisterError,
    },
}

/// How registering failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Refused(#[from] async_nats::Error),
    #[error(transparent)]
    NotConfirmed(#[from] RoundTripError),
}

/// How long the server gets to confirm a new subscription.
const SUBSCRIBE_CONFIRM: Duration = Duration::from_secs(10);

/// The tasks a service runs beside its request loop (following the history, snapshots,
/// watchers). They are given [`Background::token`] and stop together when it is cancelled.
#[derive(Debug, Default)]
pub struct Background {
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Background {
    /// Cancelled when the background tasks are to stop.
    pub fn token(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// Stops every background task and waits until they have ended.
    pub async fn stop(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Starts following `store` into `model` in the background, and returns once the model
    /// has applied everything the store held at the call: the position it reached. On failure
    /// every background task is stopped.
    pub async fn load_history<S: EventStore + Clone>(
        &self,
        model: &LiveModel,
        store: &S,
        timeout: Duration,
    ) -> Result<Position, StartError> {
        let (follower, from, stop) = (model.clone(), store.clone(), self.token());
        self.spawn(async move { follower.follow(from, stop).await });
        match model.catch_up(store, timeout).await {
            Ok(head) => Ok(head),
            Err(e) => {
                self.stop().await;
                Err(e.into())
            }
        }
    }

    /// Registers the service `spec` with the NATS services API and returns once the server has
    /// its endpoints' subscriptions, so a request sent the moment the service says it is ready
    /// finds them. On failure every background task is stopped.
    pub async fn register(
        &self,
        client: &async_nats::Client,
        spec: &ServiceSpec,
    ) -> Result<Registered, StartError> {
        let confirmed = async {
            let registered = register(client, spec).await?;
            round_trip(client, SUBSCRIBE_CONFIRM).await?;
            Ok::<_, RegisterError>(registered)
        };
        match confirmed.await {
            Ok(registered) => Ok(registered),
            Err(source) => {
                self.stop().await;
                let service = spec.name;
                Err(StartError::Register { service, source })
            }
        }
    }
}

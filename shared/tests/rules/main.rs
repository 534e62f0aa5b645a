//! One or more tests per rule of docs/rules.md that lives in the domain, named after the rule,
//! in one module per group of rules as docs/rules.md groups them.
//!
//! Every test drives the pure domain through the harness in `support`: `given` setup commands,
//! `when` the command under test, `then_*` the events or the error, and `settle` to let the
//! follower sync react (R7-R10). The shorthands the groups share are in `shorthands`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod shorthands;

mod access;
mod accounts;
mod bad_input;
mod expiry;
mod followers;
mod history;
mod ownership;

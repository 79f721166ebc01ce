//! The fault suite: Parley, every role its own process, on the replicated
//! cluster (`infra/local/up --replicated`: three Kafka brokers, three
//! Cassandra nodes), while servers are killed under load. The clients
//! record every send and every frame; afterwards the whole history is
//! checked: every 202 once in its conversation's history and once in each
//! participant's sync, in order, and nothing else but a client's own
//! retried sends. Each fault also reports how long sends were refused and
//! how far the read models fell behind.
//!
//! Only scripts/test's `faults` stage runs it (`cargo test --test faults`,
//! with the settings of `$REPLICATED/replicated.env`): it kills the
//! replicated cluster's servers, so its tests take turns.

// Tests panic on purpose when the server misbehaves.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../e2e/helpers.rs"]
mod helpers;

mod checker;
mod cluster;
mod load;
mod roles;
mod scenarios;

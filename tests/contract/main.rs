//! The store ports' contract: the same cases against every adapter, the
//! embedded SQLite files and a real Cassandra (`PARLEY_SCYLLA_NODES`,
//! default 127.0.0.1:9042, started by `infra/local/up`; a missing server
//! fails the suite).

// Tests panic on purpose when an adapter misbehaves.
#![allow(clippy::unwrap_used)]

mod stores;
mod sync_feed;

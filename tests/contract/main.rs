//! The store ports' contract: the same cases against every adapter, the
//! embedded SQLite files and a real Cassandra (`PARLEY_SCYLLA_NODES`,
//! default 127.0.0.1:9042) with, for appends, a real Kafka
//! (`PARLEY_KAFKA_BROKERS`, default 127.0.0.1:9092), both started by
//! `infra/local/up`; a missing server fails the suite.

// Tests panic on purpose when an adapter misbehaves.
#![allow(clippy::unwrap_used)]

mod dedup;
mod logouts;
mod read_models;
mod stores;
mod sync_feed;

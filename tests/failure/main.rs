//! Failure tests of the cluster backend: Kafka or Cassandra stopped and
//! restarted under a running Parley, roles started before either is up, a
//! projector killed mid-burst. They always use the cluster backend and the
//! servers `infra/local/up` started; they stop and restart those servers,
//! so they run one at a time, in their own test binary (cargo runs test
//! binaries one after another, so no other suite sees the outages).

// Tests panic on purpose when the server misbehaves.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../e2e/helpers.rs"]
mod helpers;

mod outages;

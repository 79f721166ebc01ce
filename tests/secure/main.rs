//! The secured cluster (`infra/local/up --secure`): Kafka over SASL_SSL and
//! Cassandra with client encryption and PasswordAuthenticator. What a role
//! does when its credentials or its CA are wrong, and that every SASL
//! mechanism Parley offers logs in. The send → push → history round trip
//! over this cluster is the end-to-end suite's `topology` and `process`
//! modules, run with the settings of `secure.env` (scripts/test does).
//!
//! The settings come from the file `up --secure` writes; without it every
//! test fails and says how to start the cluster.

// Tests panic on purpose when the server misbehaves.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../e2e/helpers.rs"]
mod helpers;

mod refused;

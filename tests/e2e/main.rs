//! Parley's end-to-end behaviour suite: a real server, real HTTP, real
//! WebSocket. Backend chosen by `PARLEY_TEST_BACKEND` (default embedded).

// Tests panic on purpose when the server misbehaves.
#![allow(clippy::unwrap_used)]

mod auth;
mod bench;
mod browsers;
mod helpers;
mod history;
mod limits;
mod messages;
mod ops;
mod process;
mod slow;
mod socket;
mod socket_limits;
mod storm;
mod sync;
mod topology;
mod web;

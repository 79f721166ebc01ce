//! What every Parley HTTP role shares: problem+json errors, extractors that
//! answer malformed requests in Parley's own words, session auth, metrics,
//! health/readiness/OpenAPI routes and the server loop.

pub mod api;
mod api_ws;
pub mod auth;
pub mod client;
pub mod extract;
pub mod limit;
pub mod observe;
pub mod ops;
pub mod origin;
pub mod problem;
pub mod server;

pub use auth::{AuthState, Caller};
pub use client::ClientAddr;
pub use extract::{AppJson, AppQuery};
pub use problem::Problem;
pub mod lookup;

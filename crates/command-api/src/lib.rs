//! command-api: the write side. Validates, decides, appends; answers `202`
//! only after the event is durable in the log.

mod auth;
mod hashing;
mod messages;

use std::sync::Arc;

use axum::{extract::FromRef, routing::post, Router};
use parley_domain::ports::{EventAppender, EventLog, TimelineReader, UserStore};
use parley_http_kit::{limit::Limiter, AuthState};

pub use hashing::HashPool;

/// What the write side needs.
#[derive(Clone)]
pub struct CommandApi {
    pub users: Arc<dyn UserStore>,
    pub appender: Arc<dyn EventAppender>,
    /// Only to check that a read marker names a message of its
    /// conversation.
    pub timelines: Arc<dyn TimelineReader>,
    /// Only to tell a message the read side does not show yet from one
    /// that is not the reader's: once the projector has passed the end the
    /// log had when the check began, a missing id is not theirs.
    pub log: Arc<dyn EventLog>,
    pub auth: Arc<AuthState>,
    pub guards: Arc<Guards>,
}

/// What keeps one client from taking the write side from everyone else.
pub struct Guards {
    /// Where every password hash and check runs.
    pub hashing: HashPool,
    pub login_per_address: Limiter,
    /// Spreads out guessing one account's password from many addresses.
    pub login_per_username: Limiter,
    pub register_per_address: Limiter,
    pub sends_per_user: Limiter,
}

impl FromRef<CommandApi> for Arc<AuthState> {
    fn from_ref(s: &CommandApi) -> Self {
        s.auth.clone()
    }
}

/// The write side's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        auth::register,
        auth::login,
        auth::logout,
        messages::send,
        messages::mark_read
    ),
    components(schemas(
        auth::RegisterBody,
        auth::LoginBody,
        auth::SessionBody,
        messages::SendBody,
        messages::ReadBody,
        messages::Accepted
    ))
)]
pub struct Doc;

pub fn router(state: CommandApi) -> Router {
    Router::new()
        .route("/v1/auth/register", post(auth::register))
        .route("/v1/auth/login", post(auth::login))
        .route("/v1/auth/logout", post(auth::logout))
        .route("/v1/messages", post(messages::send))
        .route(
            "/v1/conversations/{peer_id}/read",
            post(messages::mark_read),
        )
        .with_state(state)
}

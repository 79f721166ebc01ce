//! ws-push: holds client sockets, tails the log and pushes each event to the
//! connected participants; turns acks into `MessageDelivered` and serves a
//! reconnecting socket everything after its sync token, exactly once.
//!
//! Every instance tails the whole log with its own consumer, so a message
//! reaches its recipient whichever instance holds the socket, and a token
//! minted by one instance is served by any other.

mod frames;
mod history;
mod hub;
mod session;
mod sessions;
mod tail;

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{FromRef, State, WebSocketUpgrade},
    http::HeaderMap,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use parley_domain::ports::{EventAppender, EventLog, SyncFeed, TimelineReader};
use parley_http_kit::{
    auth::{session_token, TokenSource},
    limit::Limiter,
    AppQuery, AuthState,
};
use serde::Deserialize;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use hub::Hub;

/// Per-socket buffers. tungstenite's defaults cost ~128 KiB per socket, and
/// its read buffer is allocated up front. What clients send (acks, pings)
/// is a few dozen bytes per frame; the buffer grows for a larger frame
/// when one comes, so a small one keeps idle sockets cheap.
const READ_BUFFER: usize = 1024;
const WRITE_BUFFER: usize = 4 * 1024;
const MAX_WRITE_BUFFER: usize = 1024 * 1024;
const MAX_MESSAGE: usize = 64 * 1024;
/// Time a socket has to send `{"type":"auth"}` when it came without a
/// cookie or header.
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct WsPush {
    pub hub: Arc<Hub>,
    pub auth: Arc<AuthState>,
    pub log: Arc<dyn EventLog>,
    /// Answers acks for messages this socket did not get from memory.
    pub timelines: Arc<dyn TimelineReader>,
    /// The part of a backlog older than the hub's history.
    pub feed: Arc<dyn SyncFeed>,
    pub appender: Arc<dyn EventAppender>,
    /// Cancelled on shutdown: sessions close with 1001.
    pub shutdown: CancellationToken,
    /// Sockets one user may hold on this instance.
    pub max_sockets_per_user: usize,
    /// Frames (acks, pings) one user's sockets may send, together.
    pub frames: Arc<Limiter>,
    /// Every socket's session. The HTTP server's graceful shutdown does not
    /// wait for upgraded connections, so without this a process whose other
    /// work stopped at once could exit before its sockets got their 1001.
    pub sessions: TaskTracker,
}

impl FromRef<WsPush> for Arc<AuthState> {
    fn from_ref(s: &WsPush) -> Self {
        s.auth.clone()
    }
}

impl WsPush {
    /// Tails the log into the hub until shutdown, reconnecting with backoff;
    /// then waits for every session to finish closing.
    pub async fn run_background(&self) {
        tokio::join!(
            tail::run(self.log.clone(), self.hub.clone(), self.shutdown.clone()),
            sessions::watch(self.hub.clone(), self.auth.clone(), self.shutdown.clone()),
        );
        self.shutdown.cancelled().await;
        self.sessions.close();
        self.sessions.wait().await;
    }
}

pub fn router(state: WsPush) -> Router {
    Router::new()
        .route("/v1/ws", get(upgrade))
        .with_state(state)
}

#[derive(Deserialize)]
struct Connect {
    /// The `seq` of the last frame the client processed.
    since: Option<String>,
}

async fn upgrade(
    State(state): State<WsPush>,
    headers: HeaderMap,
    AppQuery(query): AppQuery<Connect>,
    ws: WebSocketUpgrade,
) -> Response {
    // A token in a header or cookie is checked now, but a failure is still
    // reported on the socket (close 4401) so every client sees one behaviour.
    // A page on a foreign site can make a browser open a socket with the
    // cookie (cross-site WebSocket hijacking): that upgrade is refused.
    let token = match session_token(&headers) {
        Some((token, TokenSource::Cookie)) => {
            if let Err(refused) = state.auth.check_origin(&headers) {
                metrics::counter!("parley_ws_refused_total", "why" => "origin").increment(1);
                return refused.into_response();
            }
            Some(token.to_owned())
        }
        Some((token, TokenSource::Bearer)) => Some(token.to_owned()),
        None => None,
    };
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| {
            let sessions = state.sessions.clone();
            sessions.track_future(session::run(state, socket, token, query.since))
        })
}

//! One client socket: authentication, live pushes, acks and resume.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use parley_domain::{
    auth::Session, commands::decide_delivery, ports::PROJECTOR_GROUP, Message, MessageId, Watermark,
};
use tokio::time::{timeout, Instant};
use tracing::Instrument;

use crate::{
    frames::{ClientFrame, ServerFrame},
    hub::Push,
    WsPush, AUTH_TIMEOUT,
};

pub const CLOSE_UNAUTHORIZED: u16 = 4401;
/// The socket fell too far behind; reconnect and resume.
pub const CLOSE_LAGGING: u16 = 4008;
const CLOSE_GOING_AWAY: u16 = 1001;
/// Messages remembered per socket: enough to answer acks without a store
/// read, and to keep a resume from repeating what was pushed live.
const RECENT: usize = 1024;
/// Page size when streaming a resume backlog from the store.
const RESUME_PAGE: usize = 500;
/// Longest a resume waits for the projector to reach the live seam.
const RESUME_WAIT: Duration = Duration::from_secs(10);
const PING_EVERY: Duration = Duration::from_secs(30);
/// A socket silent for this long (no frame, no pong) is dead.
const IDLE_LIMIT: Duration = Duration::from_secs(75);

fn close(code: u16, reason: &'static str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

pub async fn run(state: WsPush, mut socket: WebSocket, header_token: Option<String>) {
    let authenticated = tokio::select! {
        s = authenticate(&state, &mut socket, header_token) => Some(s),
        _ = state.shutdown.cancelled() => None,
    };
    let session = match authenticated {
        Some(Some(s)) => s,
        None => {
            let _ = socket
                .send(close(CLOSE_GOING_AWAY, "server shutting down"))
                .await;
            return;
        }
        Some(None) => {
            metrics::counter!("parley_ws_auth_failures_total").increment(1);
            let _ = socket.send(close(CLOSE_UNAUTHORIZED, "unauthorized")).await;
            return;
        }
    };
    let span = tracing::info_span!("socket", user = %session.user_id);
    async move {
        let (_registration, rx) = state.hub.register(session.user_id);
        let mut s = Socket {
            state,
            session,
            socket,
            rx,
            recent: Recent::default(),
            floor: Watermark::default(),
        };
        if let Some((code, reason)) = s.serve().await {
            let _ = s.socket.send(close(code, reason)).await;
        }
    }
    .instrument(span)
    .await
}

/// The token from the upgrade request, else from a first `auth` frame sent
/// within [`AUTH_TIMEOUT`].
async fn authenticate(
    state: &WsPush,
    socket: &mut WebSocket,
    header_token: Option<String>,
) -> Option<Session> {
    let token = match header_token {
        Some(t) => t,
        None => {
            let first = timeout(AUTH_TIMEOUT, async {
                loop {
                    match socket.recv().await? {
                        Ok(WsMessage::Text(t)) => return Some(t),
                        Ok(WsMessage::Ping(_) | WsMessage::Pong(_)) => continue,
                        _ => return None,
                    }
                }
            })
            .await
            .ok()??;
            match serde_json::from_str::<ClientFrame>(&first) {
                Ok(ClientFrame::Auth { token }) => token,
                _ => return None,
            }
        }
    };
    state.auth.verify(&token).await.ok()
}

/// Recently pushed messages, oldest evicted first.
#[derive(Default)]
struct Recent {
    order: VecDeque<MessageId>,
    by_id: HashMap<MessageId, Arc<Message>>,
}

impl Recent {
    fn remember(&mut self, m: Arc<Message>) {
        if self.by_id.insert(m.id, m.clone()).is_none() {
            self.order.push_back(m.id);
        }
        if self.order.len() > RECENT {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
    }
}

struct Socket {
    state: WsPush,
    session: Session,
    socket: WebSocket,
    rx: tokio::sync::mpsc::Receiver<Arc<Push>>,
    recent: Recent,
    /// Live pushes at or below this were covered by a resume: skip them.
    floor: Watermark,
}

impl Socket {
    /// Runs until the client leaves (`None`) or the server closes with a code.
    async fn serve(&mut self) -> Option<(u16, &'static str)> {
        if self
            .send_frame(
                ServerFrame::Ready {
                    user_id: self.session.user_id,
                }
                .encode(),
            )
            .await
            .is_err()
        {
            return None;
        }
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                push = self.rx.recv() => match push {
                    Some(p) => {
                        if self.push(p).await.is_err() {
                            return None;
                        }
                    }
                    None => return Some((CLOSE_LAGGING, "lagging: reconnect and resume")),
                },
                incoming = self.socket.recv() => {
                    last_heard = Instant::now();
                    match incoming {
                        Some(Ok(WsMessage::Text(t))) => {
                            if self.handle(&t).await.is_err() {
                                return None;
                            }
                        }
                        Some(Ok(WsMessage::Binary(_))) => {
                            if self.error("binary frames are not supported").await.is_err() {
                                return None;
                            }
                        }
                        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                        Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => return None,
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > IDLE_LIMIT {
                        return Some((CLOSE_GOING_AWAY, "idle"));
                    }
                    if self.socket.send(WsMessage::Ping(Default::default())).await.is_err() {
                        return None;
                    }
                }
                _ = self.state.shutdown.cancelled() => return Some((CLOSE_GOING_AWAY, "server shutting down")),
            }
        }
    }

    async fn send_frame(&mut self, frame: Utf8Bytes) -> Result<(), axum::Error> {
        self.socket.send(WsMessage::Text(frame)).await
    }

    async fn error(&mut self, detail: &str) -> Result<(), axum::Error> {
        self.send_frame(ServerFrame::Error { detail }.encode())
            .await
    }

    async fn push(&mut self, p: Arc<Push>) -> Result<(), axum::Error> {
        if self.floor.covers(p.position) {
            return Ok(());
        }
        if let Some(m) = &p.message {
            self.recent.remember(m.clone());
        }
        self.send_frame(p.frame.clone()).await
    }

    async fn handle(&mut self, text: &str) -> Result<(), axum::Error> {
        let frame = match serde_json::from_str::<ClientFrame>(text) {
            Ok(f) => f,
            Err(_) => return self.error("unknown or malformed frame").await,
        };
        match frame {
            ClientFrame::Ping => self.send_frame(ServerFrame::Pong.encode()).await,
            ClientFrame::Auth { .. } => self.error("already authenticated").await,
            ClientFrame::Ack { message_id } => match MessageId::parse("message_id", &message_id) {
                Ok(id) => self.ack(id).await,
                Err(_) => self.error("message_id must be a message id").await,
            },
            ClientFrame::Resume { after } => match MessageId::parse("after", &after) {
                Ok(id) => self.resume(id).await,
                Err(_) => self.error("after must be a message id").await,
            },
        }
    }

    async fn ack(&mut self, id: MessageId) -> Result<(), axum::Error> {
        let message = match self.recent.by_id.get(&id) {
            Some(m) => Some(m.clone()),
            None => match self.state.timelines.message(id).await {
                Ok(m) => m.map(Arc::new),
                Err(e) => {
                    tracing::warn!(error = %e, "ack lookup failed");
                    return self.error("temporarily unavailable; ack again").await;
                }
            },
        };
        let Some(message) = message else {
            return self.error("unknown message").await;
        };
        let Some(pending) = decide_delivery(self.session.user_id, &message) else {
            return self
                .error("only the recipient can acknowledge a message")
                .await;
        };
        match self.state.appender.append(pending).await {
            Ok(_) => {
                metrics::counter!("parley_ws_acks_total").increment(1);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not record delivery");
                self.error("temporarily unavailable; ack again").await
            }
        }
    }

    /// Sends every message for this user newer than `after` that will not
    /// arrive live, oldest first. The seam: this instance has handed every
    /// position up to `upto` to its sockets, so once the projector covers
    /// `upto` the store holds everything this socket missed; later
    /// positions arrive live. Live pushes at or below `upto` still queued
    /// are then skipped, and messages already pushed live are not repeated.
    async fn resume(&mut self, mut after: MessageId) -> Result<(), axum::Error> {
        metrics::counter!("parley_ws_resumes_total").increment(1);
        let upto = self.state.hub.dispatched();
        if !wait_for_projection(&self.state, &upto).await {
            return self
                .error("history is catching up; resume again shortly")
                .await;
        }
        loop {
            let page = match self
                .state
                .timelines
                .for_user_after(self.session.user_id, after, &upto, RESUME_PAGE)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "resume read failed");
                    return self.error("temporarily unavailable; resume again").await;
                }
            };
            let full = page.len() == RESUME_PAGE;
            for m in page {
                after = m.id;
                if self.recent.by_id.contains_key(&m.id) {
                    continue;
                }
                let frame = ServerFrame::Message { message: &m }.encode();
                self.recent.remember(Arc::new(m));
                self.send_frame(frame).await?;
            }
            if !full {
                break;
            }
        }
        for p in upto.partitions() {
            self.floor.advance(p);
        }
        Ok(())
    }
}

/// Waits until the projector's committed position covers `upto`.
async fn wait_for_projection(state: &WsPush, upto: &Watermark) -> bool {
    let deadline = Instant::now() + RESUME_WAIT;
    loop {
        match state.log.committed(PROJECTOR_GROUP).await {
            Ok(w) if w.covers_all(upto) => return true,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read projector position"),
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

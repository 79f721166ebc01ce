//! One client socket: authentication, the sync backlog, live pushes and
//! acks.
//!
//! Why no frame falls between two others: the socket registers with the
//! hub under the lock dispatch takes, so each event is either dispatched
//! after the registration (it arrives in the socket's queue) or before it
//! (it is at most `dispatched`). The backlog serves the latter that the
//! client's `since` does not cover: from the store up to the history's
//! floor, then from the history. Every frame's `seq` is a watermark below
//! which every event of the user has been sent on this socket or before
//! `since`, so any frame is a safe place to resume from.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket};
use parley_domain::{
    auth::Session, commands::decide_delivery, ports::PROJECTOR_GROUP, LogPosition, Message,
    MessageId, MessageRef, SyncToken, Watermark,
};
use tokio::time::{timeout, Instant};
use tracing::Instrument;

use crate::{
    frames::{ClientFrame, Push, ServerFrame},
    hub::{Registered, Snapshot},
    WsPush, AUTH_TIMEOUT,
};

pub const CLOSE_UNAUTHORIZED: u16 = 4401;
/// The socket fell too far behind; reconnect with the last `seq`.
pub const CLOSE_LAGGING: u16 = 4008;
/// The `since` cannot be served: read the inbox again, connect without it.
pub const CLOSE_BAD_TOKEN: u16 = 4409;
/// The user holds `--max-sockets-per-user` sockets on this instance.
pub const CLOSE_TOO_MANY: u16 = 4429;
/// A frame over the size limit.
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_GOING_AWAY: u16 = 1001;
/// The store or this instance is not ready to serve the backlog yet;
/// reconnect with the same `since` shortly.
const CLOSE_TRY_AGAIN: u16 = 1013;
/// Messages remembered per socket, to answer acks without a store read.
const RECENT: usize = 1024;
/// Events per store read of a backlog.
const BACKLOG_PAGE: usize = 500;
/// Longest a socket waits for this instance to be ready for it: the
/// warm-up after a start, a token from an instance further ahead, or the
/// projector writing the part of a backlog the store serves.
const SYNC_WAIT: Duration = Duration::from_secs(10);
const PING_EVERY: Duration = Duration::from_secs(30);
/// A socket silent for this long (no frame, no pong) is dead.
const IDLE_LIMIT: Duration = Duration::from_secs(75);

type Close = (u16, &'static str);

fn close(code: u16, reason: &'static str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

pub async fn run(
    state: WsPush,
    mut socket: WebSocket,
    header_token: Option<String>,
    since: Option<String>,
) {
    let authenticated = tokio::select! {
        // Boxed, as are the admission and the backlog: a task's future is
        // as large as its largest state, and an idle socket should carry only
        // what its live loop needs.
        s = Box::pin(authenticate(&state, &mut socket, header_token)) => Some(s),
        _ = state.shutdown.cancelled() => None,
    };
    let (session, since) = match authenticated {
        Some(Some((s, frame_since))) => (s, since.or(frame_since)),
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
        let shutdown = state.shutdown.clone();
        let since = tokio::select! {
            s = Box::pin(admit(&state, since)) => s,
            _ = shutdown.cancelled() => Err((CLOSE_GOING_AWAY, "server shutting down")),
        };
        let since = match since {
            Ok(s) => s,
            Err((code, reason)) => {
                let _ = socket.send(close(code, reason)).await;
                return;
            }
        };
        let session = Arc::new(session);
        let max = state.max_sockets_per_user;
        let Ok(registered) = state.hub.register(session.clone(), since.as_ref(), max) else {
            let _ = socket
                .send(close(CLOSE_TOO_MANY, "too many sockets for this user"))
                .await;
            return;
        };
        let Registered {
            registration: _registration,
            rx,
            snapshot,
            ended,
        } = registered;
        let resuming = since.is_some();
        let mut s = Socket {
            sent: since.map_or_else(|| snapshot.dispatched.clone(), Arc::new),
            state,
            session,
            socket,
            rx,
            ended,
            recent: Recent::default(),
        };
        if let Some((code, reason)) = s.serve(resuming, snapshot).await {
            let _ = s.socket.send(close(code, reason)).await;
        }
    }
    .instrument(span)
    .await
}

/// Reads the `since` a client sent and waits until this instance can
/// serve it: warmed up, and dispatched at least as far as the token (a
/// token minted by an instance further ahead).
async fn admit(state: &WsPush, since: Option<String>) -> Result<Option<Watermark>, Close> {
    let since = match since {
        None => None,
        Some(text) => match SyncToken::parse(&text, state.hub.log()) {
            Ok(t) => Some(t.positions),
            Err(e) => {
                metrics::counter!("parley_ws_sync_refused_total").increment(1);
                tracing::info!(error = %e, "cannot sync from the token given");
                return Err((CLOSE_BAD_TOKEN, "cannot sync from that token"));
            }
        },
    };
    if !state.hub.warm(SYNC_WAIT).await {
        return Err((CLOSE_TRY_AGAIN, "starting: reconnect shortly"));
    }
    if let Some(s) = &since {
        if !state.hub.dispatched().covers_all(s) {
            match state.log.latest().await {
                Ok(end) if !end.covers_all(s) => {
                    metrics::counter!("parley_ws_sync_refused_total").increment(1);
                    tracing::info!("sync token is past the end of the log");
                    return Err((CLOSE_BAD_TOKEN, "cannot sync from that token"));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e.chain(), "cannot read the end of the log");
                    return Err((CLOSE_TRY_AGAIN, "catching up: reconnect shortly"));
                }
            }
            if !state.hub.reached(s, SYNC_WAIT).await {
                return Err((CLOSE_TRY_AGAIN, "catching up: reconnect shortly"));
            }
        }
    }
    Ok(since)
}

/// The token from the upgrade request, else from a first `auth` frame sent
/// within [`AUTH_TIMEOUT`], which may carry a `since` too.
async fn authenticate(
    state: &WsPush,
    socket: &mut WebSocket,
    header_token: Option<String>,
) -> Option<(Session, Option<String>)> {
    let (token, since) = match header_token {
        Some(t) => (t, None),
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
                Ok(ClientFrame::Auth { token, since }) => (token, since),
                _ => return None,
            }
        }
    };
    let session = state.auth.verify(&token).await.ok()?;
    Some((session, since))
}

/// Recently sent messages, oldest evicted first.
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
    session: Arc<Session>,
    socket: WebSocket,
    rx: tokio::sync::mpsc::Receiver<Arc<Push>>,
    /// Set by the hub when it cut the socket off because its session
    /// ended (a logout, an expired token).
    ended: Arc<std::sync::atomic::AtomicBool>,
    recent: Recent,
    /// The `seq` of the last frame sent: every event of the user at or
    /// below it has been sent on this socket, or was before its `since`.
    sent: Arc<Watermark>,
}

/// Why the backlog stopped: the client went away, or the socket closes.
enum Stop {
    Gone,
    Close(Close),
}

impl From<axum::Error> for Stop {
    fn from(_: axum::Error) -> Self {
        Stop::Gone
    }
}

impl Socket {
    /// Runs until the client leaves (`None`) or the server closes with a code.
    async fn serve(&mut self, resuming: bool, snapshot: Snapshot) -> Option<Close> {
        let ready = ServerFrame::Ready {
            user_id: self.session.user_id,
            seq: &self.token(),
        }
        .encode();
        if self.send_frame(ready).await.is_err() {
            return None;
        }
        if resuming {
            metrics::counter!("parley_ws_syncs_total").increment(1);
            let shutdown = self.state.shutdown.clone();
            let done = tokio::select! {
                r = Box::pin(self.backlog(&snapshot)) => r,
                _ = shutdown.cancelled() => Err(Stop::Close((CLOSE_GOING_AWAY, "server shutting down"))),
            };
            match done {
                Ok(()) => {}
                Err(Stop::Gone) => return None,
                Err(Stop::Close(c)) => return Some(c),
            }
        }
        if !self.sent.covers_all(&snapshot.dispatched) {
            let mut at = (*self.sent).clone();
            at.join(&snapshot.dispatched);
            self.sent = Arc::new(at);
        }
        // Not held for the socket's life: an idle socket should cost little.
        drop(snapshot);
        let synced = ServerFrame::Synced { seq: &self.token() }.encode();
        if self.send_frame(synced).await.is_err() {
            return None;
        }
        self.live().await
    }

    async fn live(&mut self) -> Option<Close> {
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        let mut last_heard = Instant::now();
        // A frame read past the user's frame rate waits here, and nothing
        // more is read (the client's own writes back up) until its turn.
        let mut waiting: Option<(WsMessage, Instant)> = None;
        let far = Instant::now() + Duration::from_secs(86_400);
        loop {
            let turn = waiting.as_ref().map_or(far, |w| w.1);
            tokio::select! {
                push = self.rx.recv() => match push {
                    Some(p) => {
                        if self.push(&p).await.is_err() {
                            return None;
                        }
                    }
                    None if self.ended.load(std::sync::atomic::Ordering::SeqCst) => {
                        return Some((CLOSE_UNAUTHORIZED, "session ended"));
                    }
                    None => return Some((CLOSE_LAGGING, "lagging: reconnect with your last seq")),
                },
                incoming = self.socket.recv(), if waiting.is_none() => {
                    last_heard = Instant::now();
                    let frame = match incoming {
                        Some(Ok(f @ (WsMessage::Text(_) | WsMessage::Binary(_)))) => f,
                        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                        Some(Err(e)) if too_big(&e) => {
                            metrics::counter!("parley_ws_refused_total", "why" => "frame_too_big").increment(1);
                            return Some((CLOSE_TOO_BIG, "frame too large"));
                        }
                        Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => return None,
                    };
                    match self.state.frames.check(&self.session.user_id) {
                        Ok(()) => {
                            if self.frame(frame).await.is_err() {
                                return None;
                            }
                        }
                        Err(l) => waiting = Some((frame, Instant::now() + l.retry_after)),
                    }
                }
                _ = tokio::time::sleep_until(turn), if waiting.is_some() => {
                    match self.state.frames.check(&self.session.user_id) {
                        Ok(()) => {
                            if let Some((frame, _)) = waiting.take() {
                                if self.frame(frame).await.is_err() {
                                    return None;
                                }
                            }
                        }
                        Err(l) => {
                            if let Some(w) = waiting.as_mut() {
                                w.1 = Instant::now() + l.retry_after;
                            }
                        }
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

    fn token(&self) -> String {
        SyncToken::text(self.state.hub.log(), &self.sent)
    }

    async fn send_frame(&mut self, frame: Utf8Bytes) -> Result<(), axum::Error> {
        self.socket.send(WsMessage::Text(frame)).await
    }

    async fn error(&mut self, detail: &str) -> Result<(), axum::Error> {
        self.send_frame(ServerFrame::Error { detail }.encode())
            .await
    }

    /// Sends an event the socket has not had, with a `seq` that covers
    /// both where the socket stood and where the event's dispatcher did.
    async fn push(&mut self, p: &Push) -> Result<(), axum::Error> {
        if self.sent.covers(p.position) {
            return Ok(());
        }
        if let Some(m) = &p.message {
            self.recent.remember(m.clone());
        }
        let text = if p.seq.covers_all(&self.sent) {
            self.sent = p.seq.clone();
            p.frame.text()
        } else {
            let mut at = (*self.sent).clone();
            at.join(&p.seq);
            self.sent = Arc::new(at);
            p.frame.with_seq(&self.token())
        };
        self.send_frame(text).await
    }

    /// Everything of the user after `since` (where `sent` stands) up to
    /// what was dispatched when the socket registered: from the store
    /// where the history's floor is above `since`, then from the history.
    async fn backlog(&mut self, snapshot: &Snapshot) -> Result<(), Stop> {
        let from_store: Vec<(u32, Option<i64>, i64)> = snapshot
            .floor
            .partitions()
            .filter(|f| !self.sent.covers(*f))
            .map(|f| (f.partition, self.sent.get(f.partition), f.offset))
            .collect();
        if !from_store.is_empty() {
            let mut upto = Watermark::default();
            for (partition, _, offset) in &from_store {
                upto.advance(LogPosition {
                    partition: *partition,
                    offset: *offset,
                });
            }
            if !wait_for_projection(&self.state, &upto).await {
                return Err(Stop::Close((
                    CLOSE_TRY_AGAIN,
                    "history is catching up: reconnect shortly",
                )));
            }
            for (partition, after, upto) in from_store {
                self.stored_partition(partition, after, upto).await?;
            }
        }
        for p in &snapshot.held {
            self.push(p).await?;
        }
        Ok(())
    }

    /// The user's events of one partition in `(after, upto]`, from the
    /// store, page by page; then the socket stands at `upto` there.
    async fn stored_partition(
        &mut self,
        partition: u32,
        mut after: Option<i64>,
        upto: i64,
    ) -> Result<(), Stop> {
        loop {
            metrics::counter!("parley_ws_sync_store_reads_total").increment(1);
            let page = match self
                .state
                .feed
                .user_events(self.session.user_id, partition, after, upto, BACKLOG_PAGE)
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e.chain(), "backlog read failed");
                    return Err(Stop::Close((
                        CLOSE_TRY_AGAIN,
                        "temporarily unavailable: reconnect shortly",
                    )));
                }
            };
            let full = page.len() == BACKLOG_PAGE;
            for e in &page {
                after = Some(e.position.offset);
                let mut at = (*self.sent).clone();
                at.advance(e.position);
                if let Some(p) = Push::build(e, Arc::new(at), self.state.hub.log()) {
                    self.push(&p).await?;
                }
            }
            if !full {
                break;
            }
        }
        let mut at = (*self.sent).clone();
        at.advance(LogPosition {
            partition,
            offset: upto,
        });
        self.sent = Arc::new(at);
        Ok(())
    }

    async fn frame(&mut self, frame: WsMessage) -> Result<(), axum::Error> {
        match frame {
            WsMessage::Text(t) => self.handle(&t).await,
            _ => self.error("binary frames are not supported").await,
        }
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
        }
    }

    async fn ack(&mut self, id: MessageId) -> Result<(), axum::Error> {
        let message = match self.recent.by_id.get(&id) {
            Some(m) => Some(MessageRef::from(m.as_ref())),
            None => match self
                .state
                .timelines
                .message_of(self.session.user_id, id)
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e.chain(), "ack lookup failed");
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
                tracing::warn!(error = %e.chain(), "could not record delivery");
                self.error("temporarily unavailable; ack again").await
            }
        }
    }
}

/// Waits until the projector's committed position covers `upto`.
async fn wait_for_projection(state: &WsPush, upto: &Watermark) -> bool {
    let deadline = Instant::now() + SYNC_WAIT;
    loop {
        match state.log.committed(PROJECTOR_GROUP).await {
            Ok(w) if w.covers_all(upto) => return true,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e.chain(), "cannot read projector position"),
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether a read failed because the client's frame or message was over
/// the size limit (answered 1009, where other read errors end silently).
fn too_big(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(tungstenite::Error::Capacity(_)) = err.downcast_ref::<tungstenite::Error>() {
            return true;
        }
        source = err.source();
    }
    false
}

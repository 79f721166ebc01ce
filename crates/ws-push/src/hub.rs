//! Which sockets of this instance belong to which user, and fan-out of log
//! events to them.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use axum::extract::ws::Utf8Bytes;
use parley_domain::{Event, LogPosition, Message, RecordedEvent, Timestamp, UserId, Watermark};
use tokio::sync::mpsc;

use crate::frames::ServerFrame;

/// Frames one socket may have queued before it counts as lagging. A lagging
/// socket is closed (code 4008) so its client resumes from the store; it is
/// never silently skipped.
pub const SOCKET_QUEUE: usize = 512;

/// One event's frame, shared by every recipient socket: each socket queue
/// holds a pointer, so an idle socket's queue costs a few hundred bytes.
pub struct Push {
    pub frame: Utf8Bytes,
    pub position: LogPosition,
    /// Set for message frames, so the session can remember what it sent
    /// (for acks and to keep a resume from repeating it).
    pub message: Option<Arc<Message>>,
}

struct SocketTx {
    id: u64,
    tx: mpsc::Sender<Arc<Push>>,
}

#[derive(Default)]
struct Registry {
    sockets: HashMap<UserId, Vec<SocketTx>>,
    /// Everything up to here has been handed to every socket registered at
    /// the time. Kept under the same lock as `sockets`, so a socket that
    /// registers either receives an event live or finds it covered here.
    dispatched: Watermark,
}

pub struct Hub {
    registry: Mutex<Registry>,
    next_id: AtomicU64,
}

/// Removes the socket from the hub when the session ends.
pub struct Registration {
    hub: Arc<Hub>,
    user: UserId,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut reg = self.hub.lock();
        if let Some(list) = reg.sockets.get_mut(&self.user) {
            list.retain(|s| s.id != self.id);
            if list.is_empty() {
                reg.sockets.remove(&self.user);
            }
        }
        metrics::gauge!("parley_ws_sockets").decrement(1.0);
    }
}

impl Hub {
    /// A hub whose sockets get, live, every event after `start` (the log's
    /// end when the instance starts); earlier ones come from the store.
    pub fn starting_at(start: Watermark) -> Self {
        Self {
            registry: Mutex::new(Registry {
                dispatched: start,
                ..Registry::default()
            }),
            next_id: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding this lock cannot leave the map half-edited
        // in a way that matters more than losing every socket; carry on.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn register(self: &Arc<Self>, user: UserId) -> (Registration, mpsc::Receiver<Arc<Push>>) {
        let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .sockets
            .entry(user)
            .or_default()
            .push(SocketTx { id, tx });
        metrics::gauge!("parley_ws_sockets").increment(1.0);
        (
            Registration {
                hub: self.clone(),
                user,
                id,
            },
            rx,
        )
    }

    /// Positions every socket registered now has received or will get from
    /// the store: what a resume may read up to.
    pub fn dispatched(&self) -> Watermark {
        self.lock().dispatched.clone()
    }

    /// Hands each event to the sockets of the users it concerns, encoding
    /// it once.
    pub fn dispatch(&self, events: &[RecordedEvent]) {
        let mut reg = self.lock();
        for e in events {
            reg.deliver(e);
            reg.dispatched.advance(e.position);
            let age = (Timestamp::now().millis() - e.at.millis()).max(0) as f64 / 1000.0;
            metrics::histogram!("parley_ws_dispatch_lag_seconds").record(age);
        }
    }
}

type Routed = (Utf8Bytes, Option<Arc<Message>>, [Option<UserId>; 2]);

/// The frame an event becomes and who receives it: a message goes to the
/// recipient and to the sender's other devices; a receipt to the sender.
fn route(e: &RecordedEvent) -> Option<Routed> {
    Some(match &e.event {
        Event::MessageSent(m) => {
            let message = Arc::new(m.to_message());
            let frame = ServerFrame::Message { message: &message }.encode();
            (frame, Some(message), [Some(m.to), Some(m.from)])
        }
        Event::MessageDelivered(d) => (
            ServerFrame::delivered(d).encode(),
            None,
            [d.conversation_id.peer_of(d.to), None],
        ),
        Event::ConversationRead(r) => (
            ServerFrame::read(r).encode(),
            None,
            [r.conversation_id.peer_of(r.reader), None],
        ),
        Event::UserRegistered(_) => return None,
    })
}

impl Registry {
    fn deliver(&mut self, e: &RecordedEvent) {
        let Some((frame, message, targets)) = route(e) else {
            return;
        };
        let push = Arc::new(Push {
            frame,
            position: e.position,
            message,
        });
        for user in targets.into_iter().flatten() {
            let Some(list) = self.sockets.get_mut(&user) else {
                continue;
            };
            list.retain(|s| {
                    match s.tx.try_send(push.clone()) {
                        Ok(()) => {
                            metrics::counter!("parley_ws_pushes_total").increment(1);
                            true
                        }
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            // Dropping the sender ends the session's stream
                            // after what is queued; it then closes with 4008.
                            metrics::counter!("parley_ws_lagged_total").increment(1);
                            tracing::warn!(%user, socket = s.id, "socket lagging; closing it so the client resumes");
                            false
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => false,
                    }
                });
            if list.is_empty() {
                self.sockets.remove(&user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use parley_domain::{events::MessageSent, ConversationId, EventId, MessageBody, MessageId};

    use super::*;

    fn sent(from: UserId, to: UserId, offset: i64) -> RecordedEvent {
        RecordedEvent {
            position: LogPosition {
                partition: 0,
                offset,
            },
            id: EventId::new(),
            at: Timestamp::now(),
            event: Event::MessageSent(MessageSent {
                message_id: MessageId::new(),
                conversation_id: ConversationId::between(from, to),
                from,
                to,
                body: MessageBody::from_trusted(format!("m{offset}")),
                client_id: None,
                sent_at: Timestamp::now(),
            }),
        }
    }

    /// A socket that stops draining its queue is cut loose once the queue
    /// is full: it gets everything queued before, in order, then the end
    /// of its stream (which the session turns into a 4008 close), and no
    /// later event. Its neighbours keep receiving.
    #[tokio::test]
    async fn a_lagging_socket_is_cut_off_after_its_queue_not_skipped() {
        let hub = Arc::new(Hub::starting_at(Watermark::default()));
        let (alice, bob) = (UserId::new(), UserId::new());
        let (_slow_reg, mut slow) = hub.register(bob);
        let (_fast_reg, mut fast) = hub.register(bob);
        let total = SOCKET_QUEUE as i64 + 10;
        for offset in 0..total {
            hub.dispatch(&[sent(alice, bob, offset)]);
            let got = fast.recv().await.map(|p| p.position.offset);
            assert_eq!(got, Some(offset), "the socket that keeps up misses nothing");
        }
        let mut queued = Vec::new();
        let end = loop {
            match slow.try_recv() {
                Ok(p) => queued.push(p.position.offset),
                Err(e) => break e,
            }
        };
        let expected: Vec<i64> = (0..SOCKET_QUEUE as i64).collect();
        assert_eq!(queued, expected, "what was queued arrives");
        assert_eq!(
            end,
            mpsc::error::TryRecvError::Disconnected,
            "then the stream ends"
        );
        assert_eq!(hub.lock().sockets.get(&bob).map(Vec::len), Some(1));
    }
}

//! Which sockets of this instance belong to which user, fan-out of log
//! events to them, and the recent history a reconnecting socket's backlog
//! is served from.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

use parley_domain::{
    auth::Session,
    recent::{self, RecentIds},
    LogId, RecordedEvent, Timestamp, UserId, Watermark,
};
use tokio::sync::{mpsc, watch};

use crate::{frames::Push, history::History};

/// Frames one socket may have queued before it counts as lagging. A lagging
/// socket is closed (code 4008) so its client syncs from its last `seq`;
/// it is never silently skipped.
pub const SOCKET_QUEUE: usize = 512;

struct SocketTx {
    id: u64,
    tx: mpsc::Sender<Arc<Push>>,
    session: Arc<Session>,
    /// Set when the socket is cut off because its session ended (logout,
    /// expiry), so it closes with 4401 rather than as lagging.
    ended: Arc<AtomicBool>,
}

/// A user already holds as many sockets on this instance as allowed.
#[derive(Debug)]
pub struct TooManySockets;

struct Registry {
    sockets: HashMap<UserId, Vec<SocketTx>>,
    /// Everything up to here has been handed to every socket registered at
    /// the time (and to the history). Kept under the same lock as
    /// `sockets`, so a socket that registers either receives an event
    /// live or finds it below this.
    dispatched: Arc<Watermark>,
    history: History,
}

pub struct Hub {
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    log: LogId,
    /// How far dispatch has come, for sockets waiting for it: the warm-up
    /// on start, or a token minted by an instance further ahead.
    progress: watch::Sender<Arc<Watermark>>,
    /// The log's end when this instance started: sockets are served once
    /// dispatch has reached it.
    warm_at: Watermark,
    /// Ids already dispatched, so a retried send's second copy in the log
    /// reaches no socket and no backlog twice. Only the tail touches it.
    seen: Mutex<RecentIds>,
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

/// A socket's place in the hub: its queue, what it found on arrival, and
/// the flag that says its session ended.
pub struct Registered {
    pub registration: Registration,
    pub rx: mpsc::Receiver<Arc<Push>>,
    pub snapshot: Snapshot,
    pub ended: Arc<AtomicBool>,
}

/// What a socket registering for a user finds, all read at one instant:
/// later events reach its queue live, earlier ones are here or older than
/// `floor`.
pub struct Snapshot {
    /// What has been dispatched.
    pub dispatched: Arc<Watermark>,
    /// The history holds nothing at or below this.
    pub floor: Watermark,
    /// The user's held events a `since` did not cover, oldest first.
    pub held: Vec<Arc<Push>>,
}

impl Hub {
    /// A hub of `log` that dispatches every event after `start`, holding
    /// `history_bytes` of them for backlogs. It counts as warm once it has
    /// dispatched up to `warm_at` (the log's end now): starting a little
    /// before the end fills the history, so sockets reconnecting after a
    /// restart find their backlog in memory.
    pub fn new(log: LogId, start: Watermark, warm_at: Watermark, history_bytes: usize) -> Self {
        let start = Arc::new(start);
        Self {
            registry: Mutex::new(Registry {
                sockets: HashMap::new(),
                dispatched: start.clone(),
                history: History::new((*start).clone(), history_bytes),
            }),
            next_id: AtomicU64::new(0),
            log,
            progress: watch::Sender::new(start),
            warm_at,
            seen: Mutex::new(RecentIds::new(recent::DEFAULT_CAPACITY)),
        }
    }

    pub fn log(&self) -> LogId {
        self.log
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding this lock cannot leave the map half-edited
        // in a way that matters more than losing every socket; carry on.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a socket of `session`'s user, unless the user holds
    /// `max` already. With `since`, the snapshot holds the user's events
    /// after it that the history still has.
    pub fn register(
        self: &Arc<Self>,
        session: Arc<Session>,
        since: Option<&Watermark>,
        max: usize,
    ) -> Result<Registered, TooManySockets> {
        let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let user = session.user_id;
        let ended = Arc::new(AtomicBool::new(false));
        let snapshot = {
            let mut reg = self.lock();
            let list = reg.sockets.entry(user).or_default();
            if list.len() >= max {
                if list.is_empty() {
                    reg.sockets.remove(&user);
                }
                metrics::counter!("parley_ws_refused_total", "why" => "too_many_sockets")
                    .increment(1);
                return Err(TooManySockets);
            }
            list.push(SocketTx {
                id,
                tx,
                session,
                ended: ended.clone(),
            });
            Snapshot {
                dispatched: reg.dispatched.clone(),
                floor: reg.history.floor().clone(),
                held: since.map_or_else(Vec::new, |s| reg.history.for_user(user, s)),
            }
        };
        metrics::gauge!("parley_ws_sockets").increment(1.0);
        Ok(Registered {
            registration: Registration {
                hub: self.clone(),
                user,
                id,
            },
            rx,
            snapshot,
            ended,
        })
    }

    /// The sessions of every socket held now, to check for logouts.
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        let reg = self.lock();
        let mut out: Vec<Arc<Session>> = Vec::new();
        for list in reg.sockets.values() {
            out.extend(list.iter().map(|s| s.session.clone()));
        }
        out
    }

    /// Cuts off every socket of the sessions named: each closes with 4401
    /// once it has sent what was queued.
    pub fn end_sessions(&self, ended: &std::collections::HashSet<&str>) {
        if ended.is_empty() {
            return;
        }
        let mut reg = self.lock();
        reg.sockets.retain(|_, list| {
            list.retain(|s| {
                let end = ended.contains(s.session.session_id.as_str());
                if end {
                    s.ended.store(true, Ordering::SeqCst);
                }
                !end
            });
            !list.is_empty()
        });
    }

    /// What every socket registered now has received or will get from a
    /// backlog.
    pub fn dispatched(&self) -> Arc<Watermark> {
        self.lock().dispatched.clone()
    }

    /// Waits until dispatch covers `target`; false if `wait` ran out.
    pub async fn reached(&self, target: &Watermark, wait: std::time::Duration) -> bool {
        let mut rx = self.progress.subscribe();
        tokio::time::timeout(wait, rx.wait_for(|w| w.covers_all(target)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Whether the warm-up is dispatched: until then sockets wait.
    pub fn is_warm(&self) -> bool {
        self.lock().dispatched.covers_all(&self.warm_at)
    }

    /// Waits until the warm-up is dispatched; false if `wait` ran out.
    pub async fn warm(&self, wait: std::time::Duration) -> bool {
        self.reached(&self.warm_at, wait).await
    }

    /// Hands each event to the sockets of its audience and to the
    /// history, encoding it once, outside the lock.
    pub fn dispatch(&self, events: &[RecordedEvent]) {
        if events.is_empty() {
            return;
        }
        // Only this (the tail's) thread moves `dispatched`, so the
        // watermark after each event can be worked out before locking.
        let mut seq = (*self.dispatched()).clone();
        let mut pushes = Vec::with_capacity(events.len());
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for e in events {
            seq.advance(e.position);
            let after = Arc::new(seq.clone());
            // A copy still moves the watermark: its position is dispatched.
            let push = if seen.insert(e.id) {
                Push::build(e, after.clone(), self.log).map(Arc::new)
            } else {
                metrics::counter!("parley_ws_copies_skipped_total").increment(1);
                None
            };
            pushes.push((after, push));
            let age = (Timestamp::now().millis() - e.at.millis()).max(0) as f64 / 1000.0;
            metrics::histogram!("parley_ws_dispatch_lag_seconds").record(age);
        }
        drop(seen);
        let mut reg = self.lock();
        for (after, push) in pushes {
            if let Some(push) = push {
                reg.deliver(&push);
                reg.history.push(push);
            }
            reg.dispatched = after;
        }
        let now = reg.dispatched.clone();
        drop(reg);
        self.progress.send_replace(now);
    }
}

/// `/readyz` says "not ready" while a new instance reads the recent log
/// into its history, so a load balancer sends it no sockets to hold.
#[async_trait::async_trait]
impl parley_domain::ports::HealthCheck for Hub {
    fn name(&self) -> &'static str {
        "ws-push"
    }

    async fn check(&self) -> Result<(), parley_domain::StoreError> {
        if self.is_warm() {
            Ok(())
        } else {
            Err(parley_domain::StoreError::unavailable_msg(
                "loading recent events from the log",
            ))
        }
    }
}

impl Registry {
    fn deliver(&mut self, push: &Arc<Push>) {
        for user in push.audience.iter().flatten() {
            let Some(list) = self.sockets.get_mut(user) else {
                continue;
            };
            list.retain(|s| match s.tx.try_send(push.clone()) {
                Ok(()) => {
                    metrics::counter!("parley_ws_pushes_total").increment(1);
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Dropping the sender ends the session's stream after
                    // what is queued; it then closes with 4008.
                    metrics::counter!("parley_ws_lagged_total").increment(1);
                    tracing::warn!(%user, socket = s.id, "socket lagging; closing it so the client syncs");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            if list.is_empty() {
                self.sockets.remove(user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use parley_domain::{
        events::MessageSent, ConversationId, Event, EventId, LogPosition, MessageBody, MessageId,
    };

    use super::*;

    fn sent(from: UserId, to: UserId, partition: u32, offset: i64) -> RecordedEvent {
        RecordedEvent {
            position: LogPosition { partition, offset },
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

    fn session(user: UserId) -> Arc<Session> {
        Arc::new(Session {
            user_id: user,
            session_id: uuid::Uuid::new_v4().to_string(),
            issued_at: 0,
            expires_at: i64::MAX,
        })
    }

    /// A user holds at most `max` sockets here; one more is refused, and
    /// a socket that goes frees its place.
    #[test]
    fn a_user_holds_at_most_max_sockets() {
        let hub = hub(0);
        let u = UserId::new();
        let held: Vec<_> = (0..3)
            .map(|_| hub.register(session(u), None, 3).unwrap())
            .collect();
        assert!(hub.register(session(u), None, 3).is_err());
        assert!(hub.register(session(UserId::new()), None, 3).is_ok());
        drop(held);
        assert!(hub.register(session(u), None, 3).is_ok());
    }

    /// Ending a session cuts off its sockets (flagged, so they close with
    /// 4401), and only those.
    #[tokio::test]
    async fn ending_a_session_cuts_off_its_sockets_only() {
        let hub = hub(0);
        let u = UserId::new();
        let (gone, kept) = (session(u), session(u));
        let mut a = hub.register(gone.clone(), None, 32).unwrap();
        let mut b = hub.register(kept.clone(), None, 32).unwrap();
        assert_eq!(hub.sessions().len(), 2);
        hub.end_sessions(&[gone.session_id.as_str()].into_iter().collect());
        assert!(a.rx.recv().await.is_none());
        assert!(a.ended.load(Ordering::SeqCst));
        assert!(!b.ended.load(Ordering::SeqCst));
        hub.dispatch(&[sent(UserId::new(), u, 0, 0)]);
        assert!(b.rx.recv().await.is_some());
    }

    /// A retried send can leave its event in the log twice (same id): the
    /// socket and the history get it once, and the watermark still passes
    /// the copy.
    #[tokio::test]
    async fn a_copy_of_an_event_in_the_log_reaches_no_one_twice() {
        let hub = hub(1 << 20);
        let (alice, bob) = (UserId::new(), UserId::new());
        let mut socket = hub.register(session(bob), None, 32).unwrap();
        let first = sent(alice, bob, 0, 0);
        let mut copy = first.clone();
        copy.position.offset = 1;
        let after = sent(alice, bob, 0, 2);
        hub.dispatch(&[first, copy]);
        hub.dispatch(std::slice::from_ref(&after));
        let got: Vec<i64> = std::iter::from_fn(|| socket.rx.try_recv().ok())
            .map(|p| p.position.offset)
            .collect();
        assert_eq!(got, vec![0, 2]);
        let held: Vec<i64> = hub
            .lock()
            .history
            .for_user(bob, &Watermark::default())
            .iter()
            .map(|p| p.position.offset)
            .collect();
        assert_eq!(held, vec![0, 2]);
        assert_eq!(hub.dispatched().get(0), Some(2));
    }

    fn hub(history: usize) -> Arc<Hub> {
        Arc::new(Hub::new(
            LogId(1),
            Watermark::default(),
            Watermark::default(),
            history,
        ))
    }

    /// A socket that stops draining its queue is cut loose once the queue
    /// is full: it gets everything queued before, in order, then the end
    /// of its stream (which the session turns into a 4008 close), and no
    /// later event. Its neighbours keep receiving.
    #[tokio::test]
    async fn a_lagging_socket_is_cut_off_after_its_queue_not_skipped() {
        let hub = hub(0);
        let (alice, bob) = (UserId::new(), UserId::new());
        let slow = hub.register(session(bob), None, 32).unwrap();
        let fast = hub.register(session(bob), None, 32).unwrap();
        let (mut slow, mut fast) = (slow.rx, fast.rx);
        let total = SOCKET_QUEUE as i64 + 10;
        for offset in 0..total {
            hub.dispatch(&[sent(alice, bob, 0, offset)]);
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

    /// Until dispatch reaches the log's end as it was at the start, the
    /// hub says it is not ready, and sockets wait for it.
    #[tokio::test]
    async fn a_hub_is_ready_once_it_has_read_up_to_the_end_it_started_at() {
        use parley_domain::ports::HealthCheck;
        let end = Watermark::from_slots(vec![Some(1)]);
        let hub = Hub::new(LogId(1), Watermark::default(), end, usize::MAX);
        let (a, b) = (UserId::new(), UserId::new());
        assert!(hub.check().await.is_err());
        hub.dispatch(&[sent(a, b, 0, 0)]);
        assert!(hub.check().await.is_err());
        assert!(!hub.warm(std::time::Duration::from_millis(10)).await);
        hub.dispatch(&[sent(a, b, 0, 1)]);
        assert!(hub.check().await.is_ok());
        assert!(hub.warm(std::time::Duration::ZERO).await);
    }

    /// Each event's seq is the watermark just after it, across partitions,
    /// and a socket registering mid-stream gets every later event live and
    /// every earlier one in its snapshot: none in both, none in neither.
    #[tokio::test]
    async fn a_registration_splits_the_stream_between_snapshot_and_queue() {
        let hub = hub(usize::MAX);
        let (alice, bob) = (UserId::new(), UserId::new());
        hub.dispatch(&[sent(alice, bob, 0, 0), sent(alice, bob, 1, 0)]);
        let since = Watermark::from_slots(vec![Some(0)]);
        let r = hub.register(session(bob), Some(&since), 32).unwrap();
        let (mut rx, snap) = (r.rx, r.snapshot);
        hub.dispatch(&[sent(alice, bob, 1, 1), sent(bob, alice, 0, 1)]);
        let held: Vec<_> = snap.held.iter().map(|p| p.position).collect();
        assert_eq!(
            held,
            vec![LogPosition {
                partition: 1,
                offset: 0
            }]
        );
        assert_eq!(snap.dispatched.slots(), &[Some(0), Some(0)]);
        let first = rx.recv().await.unwrap();
        let second = rx.recv().await.unwrap();
        assert_eq!(first.seq.slots(), &[Some(0), Some(1)]);
        assert_eq!(second.seq.slots(), &[Some(1), Some(1)]);
        assert!(hub.reached(&second.seq, std::time::Duration::ZERO).await);
    }
}

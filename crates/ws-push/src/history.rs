//! The recent events this instance dispatched, per user, within a memory
//! budget: a reconnecting socket's backlog comes from here without a store
//! read when it is recent enough (a dropped connection, a ws-push
//! restart), and from the store only for what is older.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use parley_domain::{UserId, Watermark};

use crate::frames::Push;

pub struct History {
    /// Every held push, in dispatch order (per partition: log order).
    order: VecDeque<Arc<Push>>,
    by_user: HashMap<UserId, VecDeque<Arc<Push>>>,
    bytes: usize,
    budget: usize,
    /// Positions at or below this, per partition, are not held: evicted,
    /// or dispatched before the history began. Above it every event with
    /// an audience is held.
    floor: Watermark,
}

impl History {
    /// A history of everything dispatched after `start`, holding at most
    /// `budget` bytes (0: nothing, every backlog comes from the store).
    pub fn new(start: Watermark, budget: usize) -> Self {
        Self {
            order: VecDeque::new(),
            by_user: HashMap::new(),
            bytes: 0,
            budget,
            floor: start,
        }
    }

    pub fn floor(&self) -> &Watermark {
        &self.floor
    }

    /// Adds the next dispatched push, then evicts the oldest until the
    /// budget holds.
    pub fn push(&mut self, p: Arc<Push>) {
        self.bytes += p.weight();
        for user in p.audience.iter().flatten() {
            self.by_user.entry(*user).or_default().push_back(p.clone());
        }
        self.order.push_back(p);
        while self.bytes > self.budget {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.bytes -= old.weight();
            self.floor.advance(old.position);
            for user in old.audience.iter().flatten() {
                if let Some(list) = self.by_user.get_mut(user) {
                    // A user's pushes are in dispatch order, so theirs is
                    // the front one.
                    list.pop_front();
                    if list.is_empty() {
                        self.by_user.remove(user);
                    }
                }
            }
        }
        metrics::gauge!("parley_ws_history_bytes").set(self.bytes as f64);
    }

    /// `user`'s held pushes that `since` does not cover, oldest first.
    pub fn for_user(&self, user: UserId, since: &Watermark) -> Vec<Arc<Push>> {
        self.by_user.get(&user).map_or_else(Vec::new, |list| {
            list.iter()
                .filter(|p| !since.covers(p.position))
                .cloned()
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use parley_domain::{
        events::MessageSent, ConversationId, Event, EventId, LogId, LogPosition, MessageBody,
        MessageId, RecordedEvent, Timestamp,
    };

    use super::*;

    fn push(from: UserId, to: UserId, partition: u32, offset: i64) -> Arc<Push> {
        let e = RecordedEvent {
            position: LogPosition { partition, offset },
            id: EventId::new(),
            at: Timestamp::now(),
            event: Event::MessageSent(MessageSent {
                message_id: MessageId::new(),
                conversation_id: ConversationId::between(from, to),
                from,
                to,
                body: MessageBody::from_trusted("x".into()),
                client_id: None,
                sent_at: Timestamp::now(),
            }),
        };
        let mut w = Watermark::default();
        w.advance(e.position);
        Arc::new(Push::build(&e, Arc::new(w), LogId(1)).unwrap())
    }

    fn offsets(v: &[Arc<Push>]) -> Vec<(u32, i64)> {
        v.iter()
            .map(|p| (p.position.partition, p.position.offset))
            .collect()
    }

    #[test]
    fn a_user_gets_what_their_token_does_not_cover_in_dispatch_order() {
        let (a, b, c) = (UserId::new(), UserId::new(), UserId::new());
        let mut h = History::new(Watermark::default(), usize::MAX);
        for (p, o, from, to) in [(0, 1, a, b), (1, 1, c, b), (0, 2, a, c), (1, 2, b, a)] {
            h.push(push(from, to, p, o));
        }
        let since = Watermark::from_slots(vec![Some(1)]);
        assert_eq!(offsets(&h.for_user(b, &since)), vec![(1, 1), (1, 2)]);
        assert_eq!(
            offsets(&h.for_user(a, &Watermark::default())),
            vec![(0, 1), (0, 2), (1, 2)]
        );
        assert!(h.for_user(UserId::new(), &Watermark::default()).is_empty());
    }

    #[test]
    fn eviction_raises_the_floor_of_the_evicted_partition_only() {
        let (a, b) = (UserId::new(), UserId::new());
        // Room for two pushes (a push's token grows with its partition).
        let one = push(a, b, 0, 1).weight();
        let mut h = History::new(Watermark::default(), one * 2 + 64);
        h.push(push(a, b, 0, 1));
        h.push(push(a, b, 1, 1));
        h.push(push(a, b, 0, 2));
        assert_eq!(h.floor(), &Watermark::from_slots(vec![Some(1)]));
        assert_eq!(
            offsets(&h.for_user(b, &Watermark::default())),
            vec![(1, 1), (0, 2)]
        );
        h.push(push(a, b, 0, 3));
        assert_eq!(h.floor(), &Watermark::from_slots(vec![Some(1), Some(1)]));
        assert_eq!(h.by_user.get(&a).map(VecDeque::len), Some(2));
    }

    #[test]
    fn a_zero_budget_holds_nothing_and_every_position_is_below_the_floor() {
        let (a, b) = (UserId::new(), UserId::new());
        let mut h = History::new(Watermark::default(), 0);
        h.push(push(a, b, 0, 5));
        assert!(h.for_user(a, &Watermark::default()).is_empty());
        assert!(h.by_user.is_empty() && h.order.is_empty());
        assert_eq!(h.floor(), &Watermark::from_slots(vec![Some(5)]));
    }
}

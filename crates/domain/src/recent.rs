//! A bounded memory of the event ids a consumer has handled.
//!
//! A send retried under the same `client_id` after its first produce timed
//! out re-appends the same event (same id), because the first may or may
//! not have reached the log. The read models take such a copy as a no-op,
//! but a push or a sync-feed row is not idempotent: a user would see the
//! message twice. Copies land on the same partition within the time a
//! client retries, so remembering the last few thousand ids per consumer
//! catches them without a store read.

use std::collections::{HashSet, VecDeque};

use crate::{EventId, RecordedEvent};

/// Ids a consumer remembers by default: at a few thousand events a second
/// this covers about a minute of log, far more than a produce timeout and
/// a client's retry.
pub const DEFAULT_CAPACITY: usize = 131_072;

pub struct RecentIds {
    set: HashSet<EventId>,
    order: VecDeque<EventId>,
    capacity: usize,
}

impl RecentIds {
    pub fn new(capacity: usize) -> Self {
        Self {
            set: HashSet::with_capacity(capacity.min(4096)),
            order: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
        }
    }

    pub fn contains(&self, id: &EventId) -> bool {
        self.set.contains(id)
    }

    /// Remembers `id`; false if it was already remembered (a copy).
    pub fn insert(&mut self, id: EventId) -> bool {
        if self.capacity == 0 {
            return true;
        }
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// The events of `batch` that are neither remembered nor a copy of an
    /// earlier one in the batch, in order. Nothing is remembered: a caller
    /// that may fail to handle them calls [`RecentIds::remember`] after.
    pub fn fresh<'a>(&self, batch: &'a [RecordedEvent]) -> Vec<&'a RecordedEvent> {
        let mut in_batch = HashSet::new();
        batch
            .iter()
            .filter(|e| !self.contains(&e.id) && in_batch.insert(e.id))
            .collect()
    }

    pub fn remember<'a>(&mut self, events: impl IntoIterator<Item = &'a RecordedEvent>) {
        for e in events {
            self.insert(e.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> EventId {
        EventId::new()
    }

    #[test]
    fn a_copy_is_caught_and_the_oldest_id_is_forgotten_at_capacity() {
        let mut r = RecentIds::new(2);
        let (a, b, c) = (id(), id(), id());
        assert!(r.insert(a));
        assert!(!r.insert(a));
        assert!(r.insert(b));
        assert!(r.insert(c));
        assert!(!r.contains(&a));
        assert!(r.contains(&b) && r.contains(&c));
    }
}

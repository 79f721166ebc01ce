//! The events this process committed last, kept in memory, so the
//! consumers in the same process (the projector, the ws-push tail) take a
//! new event from the commit that made it rather than each reading it back
//! from the file on a blocking thread and decoding its JSON again. Without
//! it each commit wakes both consumers, and each answers with a file read:
//! two thread hand-offs on the way from a send to its push.
//!
//! The ring only ever answers for a stretch of offsets it holds whole.
//! Another process may append to the same file between two of this
//! process's commits; its events are not here, so a commit whose first
//! offset does not follow the last one held starts the ring over, and a
//! consumer behind the ring reads the file as before.

use std::{collections::VecDeque, sync::Mutex};

use parley_domain::{Event, RecordedEvent};

/// At most this many events are held…
const MAX_EVENTS: usize = 8192;
/// …and at most about this many bytes of them (a body may be 16 KiB).
const MAX_BYTES: usize = 8 << 20;

pub(crate) struct Recent {
    ring: Mutex<Ring>,
}

struct Ring {
    events: VecDeque<RecordedEvent>,
    bytes: usize,
    /// Every event after this offset is in `events`, in order.
    covered_from: i64,
}

impl Ring {
    /// The offset of the newest event held (`covered_from` when none).
    fn last(&self) -> i64 {
        self.events
            .back()
            .map_or(self.covered_from, |e| e.position.offset)
    }
}

/// Roughly what an event costs to hold.
fn weight(e: &RecordedEvent) -> usize {
    256 + match &e.event {
        Event::MessageSent(m) => m.body.as_str().len(),
        _ => 0,
    }
}

impl Recent {
    /// A ring that holds nothing yet but covers every event after `head`
    /// (the log's last offset when this process opened it).
    pub(crate) fn new(head: i64) -> Self {
        Self {
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                bytes: 0,
                covered_from: head,
            }),
        }
    }

    /// Takes the events of one committed transaction, in offset order.
    /// Offsets within a transaction follow one another (nobody else can
    /// insert while it holds the write lock); between two of them another
    /// process may have appended.
    pub(crate) fn committed<'a>(&self, batch: impl IntoIterator<Item = &'a RecordedEvent>) {
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        for e in batch {
            let offset = e.position.offset;
            if offset != ring.last() + 1 {
                ring.events.clear();
                ring.bytes = 0;
                ring.covered_from = offset - 1;
            }
            ring.bytes += weight(e);
            ring.events.push_back(e.clone());
            while ring.events.len() > MAX_EVENTS || ring.bytes > MAX_BYTES {
                let Some(old) = ring.events.pop_front() else {
                    break;
                };
                ring.bytes -= weight(&old);
                ring.covered_from = old.position.offset;
            }
        }
    }

    /// Up to `max` events after offset `after` that this process
    /// committed, or `None` when the ring does not reach back to `after`.
    /// An empty answer says only that this process has committed nothing
    /// newer: another process may have.
    pub(crate) fn after(&self, after: i64, max: usize) -> Option<Vec<RecordedEvent>> {
        let ring = self.ring.lock().ok()?;
        if after < ring.covered_from {
            return None;
        }
        let start = ring.events.partition_point(|e| e.position.offset <= after);
        Some(ring.events.range(start..).take(max).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use parley_domain::{commands::SendMessage, LogPosition, Stamp, UserId};

    use super::*;

    fn event(offset: i64, body: &str) -> RecordedEvent {
        let (a, b) = (UserId::new(), UserId::new());
        let send = SendMessage::decide(a, &b.to_string(), body.into(), None).unwrap();
        let stamp = Stamp::now();
        RecordedEvent {
            position: LogPosition {
                partition: 0,
                offset,
            },
            id: stamp.id,
            at: stamp.at,
            event: (send.into_pending().build)(stamp),
        }
    }

    fn offsets(events: Option<Vec<RecordedEvent>>) -> Option<Vec<i64>> {
        events.map(|v| v.iter().map(|e| e.position.offset).collect())
    }

    #[test]
    fn consecutive_commits_are_served_from_where_a_consumer_stands() {
        let recent = Recent::new(10);
        recent.committed(&[event(11, "a"), event(12, "b")]);
        recent.committed(&[event(13, "c")]);
        assert_eq!(offsets(recent.after(10, 100)), Some(vec![11, 12, 13]));
        assert_eq!(offsets(recent.after(11, 1)), Some(vec![12]));
        assert_eq!(
            offsets(recent.after(13, 100)),
            Some(vec![]),
            "nothing newer"
        );
        assert_eq!(offsets(recent.after(9, 100)), None, "offset 10 is not held");
    }

    #[test]
    fn a_commit_after_another_process_appended_starts_the_ring_over() {
        let recent = Recent::new(10);
        recent.committed(&[event(11, "a")]);
        // Offsets 12 and 13 were appended by another process.
        recent.committed(&[event(14, "b"), event(15, "c")]);
        assert_eq!(
            offsets(recent.after(11, 100)),
            None,
            "12 and 13 are not here"
        );
        assert_eq!(offsets(recent.after(13, 100)), Some(vec![14, 15]));
    }

    #[test]
    fn the_oldest_events_make_room_and_are_then_read_from_the_file() {
        let recent = Recent::new(0);
        let batch: Vec<_> = (1..=MAX_EVENTS as i64 + 5).map(|o| event(o, "x")).collect();
        recent.committed(&batch);
        assert_eq!(offsets(recent.after(4, 1)), None);
        assert_eq!(offsets(recent.after(5, 1)), Some(vec![6]));
        let big = "y".repeat(4096);
        let heavy: Vec<_> = (1..=4096).map(|o| event(o, &big)).collect();
        let recent = Recent::new(0);
        recent.committed(&heavy);
        assert!(
            recent.after(0, 1).is_none(),
            "the ring no longer reaches back to offset 0"
        );
        let first = (0..4096)
            .find(|o| recent.after(*o, 1).is_some())
            .unwrap_or(4096);
        assert!(
            (4096 - first as usize) * (4096 + 256) <= MAX_BYTES,
            "{} events of 4 KiB held",
            4096 - first
        );
    }
}

//! The rules, given/when/then, and their convergence as properties: any
//! order, any repetition and any replay of a log's changes end in the
//! same read models.

use parley_domain::{Event, EventId, LogPosition, RecordedEvent, Timestamp};
use proptest::prelude::*;

use super::Model;
use crate::{
    changes::project,
    scenario::{Script, Step},
};

fn recorded(events: &[Event]) -> Vec<RecordedEvent> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| RecordedEvent {
            position: LogPosition {
                partition: 0,
                offset: i as i64 + 1,
            },
            id: EventId::new(),
            at: Timestamp::from_millis(10_000 + i as i64),
            event: e.clone(),
        })
        .collect()
}

fn script(steps: &[Step]) -> (Script, Vec<RecordedEvent>) {
    let mut s = Script::new(3, Timestamp::from_millis(1_000_000));
    for st in steps {
        s.step(*st);
    }
    let log = recorded(s.events());
    (s, log)
}

use Step::{Deliver, Read, Send};

#[test]
fn given_two_messages_when_the_recipient_reads_the_first_then_one_is_unread() {
    let (s, log) = script(&[
        Send { from: 0, to: 1 },
        Send { from: 0, to: 1 },
        Read {
            nth: 0,
            by_sender: false,
        },
    ]);
    let m = Model::of(&log);
    let (a, b) = (s.user(0), s.user(1));
    let inbox = m.inbox(b, 10);
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].peer, a);
    assert_eq!(inbox[0].unread_count, 1);
    assert_eq!(inbox[0].last_message.id, s.sent()[1].message_id);
    assert!(inbox[0].last_message.read_at.is_none());
    // The sender has nothing unread, and sees the first message as read.
    assert_eq!(m.inbox(a, 10)[0].unread_count, 0);
    let page = m.page(s.sent()[0].conversation_id, None, 10);
    assert_eq!(page.len(), 2);
    assert!(page[0].read_at.is_none() && page[1].read_at.is_some());
}

#[test]
fn given_a_read_marker_when_an_older_one_arrives_then_it_stays() {
    let (s, log) = script(&[
        Send { from: 0, to: 1 },
        Send { from: 0, to: 1 },
        Read {
            nth: 1,
            by_sender: false,
        },
        Read {
            nth: 0,
            by_sender: false,
        },
    ]);
    let m = Model::of(&log);
    let inbox = m.inbox(s.user(1), 10);
    assert_eq!(inbox[0].unread_count, 0);
    assert!(inbox[0].last_message.read_at.is_some());
}

#[test]
fn given_two_receipts_for_one_message_then_the_earliest_is_its_delivery() {
    let (s, log) = script(&[
        Send { from: 0, to: 1 },
        Deliver { nth: 0 },
        Deliver { nth: 0 },
    ]);
    let first = match &log[1].event {
        Event::MessageDelivered(d) => d.at,
        _ => unreachable!(),
    };
    // Applied later first, the earlier still wins.
    let mut m = Model::default();
    for e in [&log[2], &log[0], &log[1]] {
        m.apply_event(e);
    }
    let page = m.page(s.sent()[0].conversation_id, None, 10);
    assert_eq!(page[0].delivered_at, Some(first));
    assert_eq!(
        m.inbox(s.user(0), 1)[0].last_message.delivered_at,
        Some(first)
    );
}

#[test]
fn given_messages_in_two_conversations_then_the_inbox_lists_newest_activity_first() {
    let (s, log) = script(&[
        Send { from: 0, to: 1 },
        Send { from: 2, to: 0 },
        Send { from: 1, to: 0 },
    ]);
    let m = Model::of(&log);
    let inbox = m.inbox(s.user(0), 10);
    let peers: Vec<_> = inbox.iter().map(|e| e.peer).collect();
    assert_eq!(peers, vec![s.user(1), s.user(2)]);
    assert_eq!(inbox[0].unread_count, 1, "alice sent one of the two");
    assert_eq!(m.inbox(s.user(0), 1).len(), 1, "limit");
}

#[test]
fn given_a_conversation_then_each_user_finds_its_own_messages_and_no_others() {
    let (s, log) = script(&[Send { from: 0, to: 1 }]);
    let m = Model::of(&log);
    let id = s.sent()[0].message_id;
    assert_eq!(m.message_of(s.user(0), id).map(|r| r.to), Some(s.user(1)));
    assert_eq!(m.message_of(s.user(1), id).map(|r| r.from), Some(s.user(0)));
    assert_eq!(m.message_of(s.user(2), id), None);
}

#[test]
fn given_receipts_then_each_user_feed_holds_its_audience_in_log_order() {
    let (s, log) = script(&[
        Send { from: 0, to: 1 },
        Deliver { nth: 0 },
        Read {
            nth: 0,
            by_sender: false,
        },
        Send { from: 0, to: 2 },
    ]);
    let m = Model::of(&log);
    let offsets = |u| -> Vec<i64> {
        m.feed(s.user(u), 0, None, 100, 100)
            .iter()
            .map(|e| e.position.offset)
            .collect()
    };
    assert_eq!(offsets(0), vec![1, 2, 3, 4]);
    assert_eq!(offsets(1), vec![1, 3]);
    assert_eq!(offsets(2), vec![4]);
    let page: Vec<i64> = m
        .feed(s.user(0), 0, Some(1), 3, 1)
        .iter()
        .map(|e| e.position.offset)
        .collect();
    assert_eq!(page, vec![2], "after exclusive, upto inclusive, limit");
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..3usize, 0..3usize).prop_map(|(from, to)| Send { from, to }),
        1 => (0..64usize).prop_map(|nth| Deliver { nth }),
        2 => (0..64usize, any::<bool>()).prop_map(|(nth, by_sender)| Read { nth, by_sender }),
    ]
}

/// The changes of `log`, shuffled by `seed` and with some repeated.
fn scrambled(log: &[RecordedEvent], seed: u64) -> Vec<crate::changes::Change<'_>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut changes: Vec<_> = log.iter().flat_map(project).collect();
    let repeats: Vec<_> = changes
        .iter()
        .filter(|_| rng.u8(..4) == 0)
        .copied()
        .collect();
    changes.extend(repeats);
    rng.shuffle(&mut changes);
    changes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn changes_applied_in_any_order_and_repeated_converge(
        steps in proptest::collection::vec(step(), 1..40),
        seed in any::<u64>(),
    ) {
        let (_, log) = script(&steps);
        let in_order = Model::of(&log);
        let mut scrambled_model = Model::default();
        for c in scrambled(&log, seed) {
            scrambled_model.apply(&c);
        }
        prop_assert_eq!(in_order, scrambled_model);
    }

    #[test]
    fn replaying_any_part_of_the_log_again_changes_nothing(
        steps in proptest::collection::vec(step(), 1..40),
        from in 0usize..40,
    ) {
        let (_, log) = script(&steps);
        let once = Model::of(&log);
        let mut again = once.clone();
        for e in &log[from.min(log.len())..] {
            again.apply_event(e);
        }
        prop_assert_eq!(&once, &again);
        // A replay from empty rebuilds the same models.
        prop_assert_eq!(once, Model::of(&log));
    }

    #[test]
    fn unread_counts_are_the_messages_past_each_marker(
        steps in proptest::collection::vec(step(), 1..40),
    ) {
        let (s, log) = script(&steps);
        let m = Model::of(&log);
        for &user in s.users() {
            for entry in m.inbox(user, 100) {
                let marker = log.iter().filter_map(|e| match &e.event {
                    Event::ConversationRead(r)
                        if r.reader == user && r.conversation_id == entry.conversation_id =>
                    {
                        Some(r.up_to)
                    }
                    _ => None,
                }).max();
                let expected = s.sent().iter().filter(|m| {
                    m.to == user
                        && m.conversation_id == entry.conversation_id
                        && marker.is_none_or(|r| m.message_id > r)
                }).count() as u64;
                prop_assert_eq!(entry.unread_count, expected);
            }
        }
    }
}

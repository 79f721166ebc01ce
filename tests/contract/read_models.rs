//! The read models: every read port answers as the projection rules
//! (`parley_projector::model`) say the log makes, on every store, in
//! whatever order, repetition or replay the events were applied: history
//! pages, inboxes with unread counts, read markers, delivery stamps,
//! message lookups, feeds and the directory.

use parley_domain::{
    events::UserRegistered, ConversationId, DisplayName, Event, PublicUser, RecordedEvent,
    Timestamp, Username,
};
use parley_projector::{
    model::{Model, Readers},
    scenario::{Script, Step},
};

use crate::stores::Store;

fn readers(store: &Store) -> Readers<'_> {
    Readers {
        timelines: store.timelines(),
        inboxes: store.inboxes(),
        feed: store.feed(),
        users: store.users(),
    }
}

/// Fails with every answer of `store` that is not the model's.
async fn answers_as(kind: &str, what: &str, store: &Store, model: &Model, script: &Script) {
    let found = model
        .mismatches(&readers(store), script.users(), 3, i64::MAX)
        .await
        .expect("read");
    assert!(found.is_empty(), "{kind}, {what}: {found:#?}");
}

/// Three users register, write to each other, acknowledge (one message
/// twice) and read (forwards, backwards, their own messages).
fn conversations() -> (Script, Vec<Event>) {
    use Step::*;
    let mut s = Script::new(
        3,
        Timestamp::from_millis(Timestamp::now().millis() - 60_000),
    );
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let mut events: Vec<Event> = s
        .users()
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            Event::UserRegistered(UserRegistered {
                user: PublicUser {
                    id,
                    username: Username::from_trusted(format!("u{i}_{}", &tag[tag.len() - 10..])),
                    display_name: DisplayName::from_trusted(format!("User {i}")),
                    created_at: Timestamp::from_millis(1_700_000_000_000 + i as i64),
                },
            })
        })
        .collect();
    for step in [
        Send { from: 0, to: 1 },
        Send { from: 1, to: 0 },
        Send { from: 0, to: 1 },
        Deliver { nth: 0 },
        Send { from: 2, to: 0 },
        Read {
            nth: 2,
            by_sender: false,
        },
        Deliver { nth: 2 },
        Send { from: 0, to: 1 },
        Read {
            nth: 0,
            by_sender: false,
        },
        Deliver { nth: 0 },
        Send { from: 0, to: 2 },
        Read {
            nth: 3,
            by_sender: false,
        },
        Send { from: 1, to: 0 },
        Read {
            nth: 1,
            by_sender: true,
        },
        Send { from: 2, to: 1 },
        Send { from: 0, to: 1 },
        Send { from: 1, to: 0 },
    ] {
        s.step(step);
    }
    events.extend(s.events().iter().cloned());
    (s, events)
}

/// `count` random steps, from `seed`.
fn random(seed: u64, count: usize) -> (Script, Vec<Event>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut s = Script::new(
        4,
        Timestamp::from_millis(Timestamp::now().millis() - 60_000),
    );
    for _ in 0..count {
        s.step(match rng.u8(..6) {
            0..=2 => Step::Send {
                from: rng.usize(..4),
                to: rng.usize(..4),
            },
            3 => Step::Deliver { nth: rng.usize(..) },
            _ => Step::Read {
                nth: rng.usize(..),
                by_sender: rng.bool(),
            },
        });
    }
    let events = s.events().to_vec();
    (s, events)
}

/// Applies `events` in batches of 1 to 7.
async fn apply_in_batches(store: &Store, events: &[RecordedEvent], rng: &mut fastrand::Rng) {
    let mut rest = events;
    while !rest.is_empty() {
        let n = rng.usize(1..8).min(rest.len());
        store.writer().apply(&rest[..n]).await.expect("apply");
        rest = &rest[n..];
    }
}

#[tokio::test]
async fn applied_in_log_order_every_read_answers_as_the_rules_say() {
    for (kind, store) in Store::all().await {
        let (script, events) = conversations();
        let log = store.record(events).await;
        apply_in_batches(&store, &log, &mut fastrand::Rng::with_seed(7)).await;
        let model = Model::of(&log);
        answers_as(kind, "in log order", &store, &model, &script).await;

        // The rules, spelled out on one conversation: alice (0) and bob (1).
        let (a, b) = (script.user(0), script.user(1));
        let inbox = store.inboxes().inbox(b, 10).await.expect("inbox");
        let with_a = inbox
            .iter()
            .find(|e| e.peer == a)
            .expect("bob's conversation with alice");
        // Bob read up to alice's second message; she sent two more since.
        assert_eq!(with_a.unread_count, 2, "{kind}");
        let page = store
            .timelines()
            .page(ConversationId::between(a, b), None, 100)
            .await
            .expect("page");
        let first = page.last().expect("the first message");
        // Acknowledged twice (the earlier receipt stamps it, as the
        // model says above), and read by bob.
        assert!(
            first.delivered_at.is_some() && first.read_at.is_some(),
            "{kind}"
        );
        // Pages of 3 by cursor give every message once, newest first.
        let mut walked = Vec::new();
        let mut before = None;
        loop {
            let got = store
                .timelines()
                .page(ConversationId::between(a, b), before, 3)
                .await
                .expect("page");
            before = got.last().map(|m| m.id);
            let full = got.len() == 3;
            walked.extend(got.into_iter().map(|m| m.id));
            if !full {
                break;
            }
        }
        assert_eq!(
            walked,
            page.iter().map(|m| m.id).collect::<Vec<_>>(),
            "{kind}"
        );
    }
}

#[tokio::test]
async fn applied_in_any_order_and_again_the_read_models_converge() {
    for (kind, store) in Store::all().await {
        for seed in [1u64, 2, 3] {
            store.writer().reset().await.expect("reset");
            let (script, events) = random(seed, 60);
            let log = store.record(events).await;
            let model = Model::of(&log);
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut shuffled = log.clone();
            rng.shuffle(&mut shuffled);
            apply_in_batches(&store, &shuffled, &mut rng).await;
            answers_as(
                kind,
                &format!("shuffled, seed {seed}"),
                &store,
                &model,
                &script,
            )
            .await;
            // Any part again, in any order, changes nothing.
            let again: Vec<RecordedEvent> = log.iter().filter(|_| rng.bool()).cloned().collect();
            apply_in_batches(&store, &again, &mut rng).await;
            store.writer().apply(&log).await.expect("apply all again");
            answers_as(
                kind,
                &format!("again, seed {seed}"),
                &store,
                &model,
                &script,
            )
            .await;
        }
    }
}

#[tokio::test]
async fn a_replay_rebuilds_the_same_read_models() {
    for (kind, store) in Store::all().await {
        let (script, events) = conversations();
        let log = store.record(events).await;
        let model = Model::of(&log);
        store.writer().apply(&log).await.expect("apply");
        store.writer().reset().await.expect("reset");
        let empty = Model::default();
        let found = empty
            .mismatches(&readers(&store), script.users(), 3, i64::MAX)
            .await
            .expect("read");
        assert!(
            found.is_empty(),
            "{kind}: a reset leaves nothing: {found:#?}"
        );
        for e in &log {
            store
                .writer()
                .apply(std::slice::from_ref(e))
                .await
                .expect("replay");
        }
        answers_as(kind, "replayed", &store, &model, &script).await;
    }
}

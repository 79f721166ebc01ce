//! Migration 6 on a keyspace an earlier release wrote: `user_rows` starts
//! out with what the older tables hold, and answers as the projection
//! rules say the log does.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{config, forget_migrations_from, session, store_on, LATEST};
use parley_domain::{
    ports::ReadModelWriter, ConversationId, Event, EventId, LogPosition, MessageId, RecordedEvent,
    Stamp, Timestamp, UserId,
};
use parley_projector::{
    model::{Model, Readers},
    scenario::{Script, Step},
};
use parley_store_cql::{bucket_of, sync_bucket_of, Cql};
use scylla::client::session::Session;

fn recorded(events: &[Event], first: i64) -> Vec<RecordedEvent> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| RecordedEvent {
            position: LogPosition {
                partition: 0,
                offset: first + i as i64,
            },
            id: EventId::new(),
            at: Timestamp::now(),
            event: e.clone(),
        })
        .collect()
}

async fn run(s: &Session, cql: String, values: impl scylla::serialize::row::SerializeRow) {
    s.query_unpaged(cql, values).await.expect("write");
}

/// The rows release 5's projector wrote for `log` into the tables it had.
async fn write_as_release_5(s: &Session, ks: &str, log: &[RecordedEvent]) {
    let mut delivered = HashMap::new();
    let mut markers: BTreeMap<(ConversationId, UserId), (MessageId, Timestamp)> = BTreeMap::new();
    for e in log {
        match &e.event {
            Event::MessageDelivered(d) => {
                let at = delivered.entry(d.message_id).or_insert(d.at);
                *at = (*at).min(d.at);
            }
            Event::ConversationRead(r) => {
                let m = markers
                    .entry((r.conversation_id, r.reader))
                    .or_insert((r.up_to, r.at));
                *m = (*m).max((r.up_to, r.at));
            }
            _ => {}
        }
    }
    let mut inbox = BTreeMap::new();
    for e in log {
        let Event::MessageSent(m) = &e.event else {
            continue;
        };
        let (conv, bucket) = (m.conversation_id.to_string(), bucket_of(m.sent_at.millis()));
        run(s, format!(
            "INSERT INTO {ks}.timeline (conversation_id, bucket, message_id, sender, recipient, body, sent_at, delivered_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
            (&conv, bucket, m.message_id.to_string(), m.from.to_string(), m.to.to_string(),
             m.body.as_str(), m.sent_at.millis(), delivered.get(&m.message_id).map(|t: &Timestamp| t.millis())),
        ).await;
        run(
            s,
            format!("INSERT INTO {ks}.timeline_buckets (conversation_id, bucket) VALUES (?, ?)"),
            (&conv, bucket),
        )
        .await;
        run(
            s,
            format!("INSERT INTO {ks}.message_index (message_id, conversation_id) VALUES (?, ?)"),
            (m.message_id.to_string(), &conv),
        )
        .await;
        for (owner, peer) in [(m.from, m.to), (m.to, m.from)] {
            inbox.insert((owner, m.conversation_id), (peer, m.clone()));
        }
        let read = markers.get(&(m.conversation_id, m.to)).map(|r| r.0);
        if read.is_none_or(|r| m.message_id > r) {
            run(s, format!("INSERT INTO {ks}.unread (user_id, conversation_id, message_id) VALUES (?, ?, ?)"),
                (m.to.to_string(), &conv, m.message_id.to_string())).await;
        }
    }
    for ((owner, conv), (peer, last)) in inbox {
        let json = serde_json::to_string(&last.to_message()).expect("json");
        run(s, format!("INSERT INTO {ks}.inbox (user_id, conversation_id, peer_id, last_message) VALUES (?, ?, ?, ?)"),
            (owner.to_string(), conv.to_string(), peer.to_string(), json)).await;
    }
    for ((conv, reader), (up_to, at)) in markers {
        run(s, format!("INSERT INTO {ks}.read_markers (conversation_id, reader, up_to, at) VALUES (?, ?, ?, ?)"),
            (conv.to_string(), reader.to_string(), up_to.to_string(), at.millis())).await;
    }
    for e in log {
        let bytes = e
            .event
            .encode(Stamp { id: e.id, at: e.at })
            .expect("encode");
        let o = e.position.offset;
        for user in e.event.audience().into_iter().flatten() {
            run(s, format!(
                "INSERT INTO {ks}.user_sync (user_id, log_partition, bucket, log_offset, event) VALUES (?, 0, ?, ?, ?)"),
                (user.to_string(), sync_bucket_of(o), o, &bytes)).await;
        }
    }
}

/// Whatever the store answers differently from the model.
async fn mismatches(store: &Cql, model: &Model, script: &Script) -> Vec<String> {
    let readers = Readers {
        timelines: store,
        inboxes: store,
        feed: store,
        users: store,
    };
    model
        .mismatches(&readers, script.users(), 2, 1_000)
        .await
        .expect("read")
}

#[tokio::test]
async fn user_rows_start_out_with_what_the_older_tables_hold() {
    let config = config("user_rows_mig");
    drop(store_on(&config).await);
    let s = session(&config).await;
    let ks = &config.keyspace;
    // Back to a keyspace of release 5: no `user_rows`, no `marker` cell.
    run(&s, format!("DROP TABLE {ks}.user_rows"), ()).await;
    run(&s, format!("ALTER TABLE {ks}.read_markers DROP marker"), ()).await;
    forget_migrations_from(&s, ks, 6).await;

    // Cassandra hides a re-added column's cells written at a timestamp
    // before the drop, and the projection writes at event times: the
    // events come after the drop, as on a keyspace that never had `marker`.
    let mut script = Script::new(3, Timestamp::now());
    for step in [
        Step::Send { from: 0, to: 1 },
        Step::Send { from: 1, to: 0 },
        Step::Deliver { nth: 0 },
        Step::Send { from: 0, to: 1 },
        Step::Read {
            nth: 0,
            by_sender: false,
        },
        Step::Send { from: 2, to: 0 },
        Step::Deliver { nth: 3 },
        Step::Read {
            nth: 3,
            by_sender: true,
        },
    ] {
        script.step(step);
    }
    let old = recorded(script.events(), 1);
    write_as_release_5(&s, ks, &old).await;

    assert_eq!(Cql::migrate(&config).await.expect("migrate"), LATEST);
    let store = store_on(&config).await;
    let mut model = Model::of(&old);
    assert_eq!(
        mismatches(&store, &model, &script).await,
        Vec::<String>::new()
    );

    // What the new projector writes merges with what was copied.
    let copied = script.events().len();
    script
        .step(Step::Send { from: 1, to: 0 })
        .step(Step::Read {
            nth: 2,
            by_sender: false,
        })
        .step(Step::Deliver { nth: 4 });
    let new = recorded(&script.events()[copied..], old.len() as i64 + 1);
    store.apply(&new).await.expect("apply");
    for e in &new {
        model.apply_event(e);
    }
    assert_eq!(
        mismatches(&store, &model, &script).await,
        Vec::<String>::new()
    );
}

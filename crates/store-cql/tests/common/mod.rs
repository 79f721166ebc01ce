//! What the store tests share: a store on a keyspace of its own (on a
//! real Cassandra: `PARLEY_SCYLLA_NODES`, default 127.0.0.1:9042, started
//! by `infra/local/up`), messages stamped when a test says, and the
//! watermark of a projector that has applied them.
#![allow(dead_code)]

use parley_domain::{
    events::MessageSent, ConversationId, Event, EventId, LogPosition, Message, MessageBody,
    MessageId, RecordedEvent, Timestamp, UserId, Watermark,
};
use parley_store_cql::{Cql, CqlConfig};
use scylla::client::{session::Session, session_builder::SessionBuilder};

/// The schema version `migrate` brings a keyspace to.
pub const LATEST: i32 = 6;

/// A plain CQL session, for what a test does to a keyspace behind the
/// store's back.
pub async fn session(config: &CqlConfig) -> Session {
    SessionBuilder::new()
        .known_node(&config.nodes)
        .build()
        .await
        .expect("connect")
}

/// Makes the next `migrate` apply every migration from `version` on again,
/// as on a keyspace an earlier release made.
pub async fn forget_migrations_from(s: &Session, ks: &str, version: i32) {
    let versions: Vec<String> = (version..=LATEST).map(|v| v.to_string()).collect();
    let cql = format!(
        "DELETE FROM {ks}.schema_migrations WHERE version IN ({})",
        versions.join(", ")
    );
    s.query_unpaged(cql, ()).await.expect("forget migrations");
}

/// A keyspace of its own for one test, named after `what`.
pub fn config(what: &str) -> CqlConfig {
    CqlConfig::new(
        std::env::var("PARLEY_SCYLLA_NODES").unwrap_or_else(|_| "127.0.0.1:9042".into()),
        format!("{what}_{}", uuid_suffix()),
    )
}

/// A migrated store on `config`'s keyspace.
pub async fn store_on(config: &CqlConfig) -> Cql {
    Cql::migrate(config)
        .await
        .expect("Cassandra must be running (infra/local/up)");
    Cql::connect(config).await.expect("connect")
}

fn uuid_suffix() -> String {
    format!(
        "{:x}",
        MessageId::new().as_uuid().as_u128() & 0xffff_ffff_ffff
    )
}

/// `n` messages between `a` and `b`, one millisecond apart from `start`,
/// alternating direction; their ids in sending order.
pub fn messages(
    a: UserId,
    b: UserId,
    start: i64,
    n: usize,
    offset: &mut i64,
) -> Vec<RecordedEvent> {
    (0..n)
        .map(|i| {
            let at = Timestamp::from_millis(start + i as i64);
            let (from, to) = if i % 2 == 0 { (a, b) } else { (b, a) };
            *offset += 1;
            RecordedEvent {
                position: LogPosition {
                    partition: 0,
                    offset: *offset,
                },
                id: EventId::new(),
                at,
                event: Event::MessageSent(MessageSent {
                    message_id: MessageId::floor_of(at),
                    conversation_id: ConversationId::between(a, b),
                    from,
                    to,
                    body: MessageBody::from_trusted(format!("m{}", start + i as i64)),
                    client_id: None,
                    sent_at: at,
                }),
            }
        })
        .collect()
}

pub fn ids(events: &[RecordedEvent]) -> Vec<MessageId> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Event::MessageSent(m) => Some(m.message_id),
            _ => None,
        })
        .collect()
}

pub fn ids_of(page: &[Message]) -> Vec<MessageId> {
    page.iter().map(|m| m.id).collect()
}

/// The watermark of a projector that has applied partition 0 up to `offset`.
pub fn covering(offset: i64) -> Watermark {
    let mut w = Watermark::default();
    w.advance(LogPosition {
        partition: 0,
        offset,
    });
    w
}

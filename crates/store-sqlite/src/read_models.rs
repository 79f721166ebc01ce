//! Timelines, read markers and inboxes: written by the projector, read by
//! query-api and ws-push.
//!
//! Writes are idempotent: a message row is inserted once (by id), the inbox
//! counts a message only when its row is new, markers only move forward.
//! Replaying any prefix of the log twice therefore changes nothing.

use std::sync::Arc;

use async_trait::async_trait;
use parley_domain::{
    events::{ConversationRead, MessageDelivered, MessageSent},
    ports::{InboxEntry, InboxReader, ReadModelWriter, TimelineReader},
    ConversationId, Event, Message, MessageBody, MessageId, ReadMarkers, RecordedEvent, StoreError,
    Timestamp, UserId,
};
use rusqlite::{params, OptionalExtension, Row, Transaction};

use crate::{db::Db, schema::READ_MODEL_TABLES};

pub struct SqliteReadModels {
    db: Arc<Db>,
}

impl SqliteReadModels {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self { db }
    }
}

/// Columns of a message row plus its computed `read_at`, in the order
/// [`message_from_row`] expects.
const MESSAGE_COLUMNS: &str =
    "m.conversation_id, m.message_id, m.sender, m.recipient, m.body, m.sent_at, m.delivered_at, \
     CASE WHEN rm.up_to >= m.message_id THEN rm.at END";
/// [`MESSAGE_COLUMNS`] without the marker join; `read_at` is stamped from
/// [`markers_of`] afterwards.
const UNMARKED_COLUMNS: &str =
    "m.conversation_id, m.message_id, m.sender, m.recipient, m.body, m.sent_at, m.delivered_at, NULL";
const MARKER_JOIN: &str =
    "LEFT JOIN read_markers rm ON rm.conversation_id = m.conversation_id AND rm.reader = m.recipient";

fn parse_col<T>(idx: usize, r: Result<T, parley_domain::ValidationError>) -> rusqlite::Result<T> {
    r.map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// The read markers of one conversation.
fn markers_of(c: &rusqlite::Connection, conversation: &str) -> rusqlite::Result<ReadMarkers> {
    let mut st =
        c.prepare_cached("SELECT reader, up_to, at FROM read_markers WHERE conversation_id = ?1")?;
    let mut rows = st.query([conversation])?;
    let mut out = ReadMarkers::default();
    while let Some(r) = rows.next()? {
        out.insert(
            parse_col(0, UserId::parse("reader", text(r, 0)?))?,
            parse_col(1, MessageId::parse("up_to", text(r, 1)?))?,
            Timestamp::from_millis(r.get(2)?),
        );
    }
    Ok(out)
}

/// A text column, borrowed from the row (no allocation).
fn text<'r>(r: &'r Row<'_>, idx: usize) -> rusqlite::Result<&'r str> {
    r.get_ref(idx)?.as_str().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn message_from_row(r: &Row<'_>) -> rusqlite::Result<Message> {
    message_from_row_at(r, 0, None)
}

fn apply_sent(
    tx: &Transaction<'_>,
    e: &MessageSent,
    partition: u32,
    offset: i64,
) -> rusqlite::Result<()> {
    let conv = e.conversation_id.to_string();
    let (id, from, to) = (
        e.message_id.to_string(),
        e.from.to_string(),
        e.to.to_string(),
    );
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO messages (conversation_id, message_id, sender, recipient, body, sent_at, log_partition, log_offset)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![conv, id, from, to, e.body.as_str(), e.sent_at.millis(), partition, offset])?;
    if inserted == 0 {
        return Ok(());
    }
    let unread: i64 = tx
        .prepare_cached("SELECT COUNT(*) FROM read_markers WHERE conversation_id = ?1 AND reader = ?2 AND up_to >= ?3")?
        .query_row(params![conv, to, id], |r| r.get::<_, i64>(0))
        .map(|covered| if covered > 0 { 0 } else { 1 })?;
    let mut upsert = tx.prepare_cached(
        "INSERT INTO inbox (user_id, conversation_id, peer_id, last_message_id, unread_count) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (user_id, conversation_id) DO UPDATE SET
             last_message_id = MAX(last_message_id, excluded.last_message_id),
             unread_count = unread_count + excluded.unread_count",
    )?;
    upsert.execute(params![from, conv, to, id, 0])?;
    upsert.execute(params![to, conv, from, id, unread])?;
    Ok(())
}

fn apply_delivered(tx: &Transaction<'_>, e: &MessageDelivered) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE messages SET delivered_at = MIN(COALESCE(delivered_at, ?3), ?3)
         WHERE conversation_id = ?1 AND message_id = ?2",
    )?
    .execute(params![
        e.conversation_id.to_string(),
        e.message_id.to_string(),
        e.at.millis()
    ])?;
    Ok(())
}

fn apply_read(tx: &Transaction<'_>, e: &ConversationRead) -> rusqlite::Result<()> {
    let (conv, reader) = (e.conversation_id.to_string(), e.reader.to_string());
    let moved = tx
        .prepare_cached(
            "INSERT INTO read_markers (conversation_id, reader, up_to, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (conversation_id, reader) DO UPDATE SET up_to = excluded.up_to, at = excluded.at
             WHERE excluded.up_to > read_markers.up_to",
        )?
        .execute(params![conv, reader, e.up_to.to_string(), e.at.millis()])?;
    if moved > 0 {
        // Counts only the messages after the marker: usually a handful.
        tx.prepare_cached(
            "UPDATE inbox SET unread_count = (
                 SELECT COUNT(*) FROM messages
                 WHERE conversation_id = ?1 AND recipient = ?2 AND message_id > ?3)
             WHERE user_id = ?2 AND conversation_id = ?1",
        )?
        .execute(params![conv, reader, e.up_to.to_string()])?;
    }
    Ok(())
}

#[async_trait]
impl ReadModelWriter for SqliteReadModels {
    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), StoreError> {
        let events = events.to_vec();
        self.db
            .write_derived(move |tx| {
                for e in &events {
                    match &e.event {
                        Event::MessageSent(m) => {
                            apply_sent(tx, m, e.position.partition, e.position.offset)?
                        }
                        Event::MessageDelivered(d) => apply_delivered(tx, d)?,
                        Event::ConversationRead(r) => apply_read(tx, r)?,
                        // The directory is the credential table itself.
                        Event::UserRegistered(_) => {}
                    }
                    let mut feed = tx.prepare_cached(
                        "INSERT OR IGNORE INTO sync_feed (user_id, log_offset) VALUES (?1, ?2)",
                    )?;
                    for user in e.event.audience().into_iter().flatten() {
                        feed.execute(params![user.to_string(), e.position.offset])?;
                    }
                }
                Ok(())
            })
            .await
    }

    async fn reset(&self) -> Result<(), StoreError> {
        self.db
            .write_derived(|tx| {
                for t in READ_MODEL_TABLES {
                    tx.execute(&format!("DELETE FROM {t}"), [])?;
                }
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl TimelineReader for SqliteReadModels {
    async fn page(
        &self,
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        // "~" sorts after every id, so "no cursor" is the same seek.
        let before = before.map_or_else(|| "~".to_owned(), |b| b.to_string());
        self.db
            .read(move |c| {
                // One snapshot for the markers and the page. The markers
                // (two rows at most) are read once, not joined per row.
                let tx = c.unchecked_transaction()?;
                let conv = conversation.to_string();
                let markers = markers_of(&tx, &conv)?;
                let sql = format!(
                    "SELECT {UNMARKED_COLUMNS} FROM messages m
                     WHERE m.conversation_id = ?1 AND m.message_id < ?2
                     ORDER BY m.message_id DESC LIMIT ?3"
                );
                let mut st = tx.prepare_cached(&sql)?;
                let rows = st.query_map(params![conv, before, limit as i64], |r| {
                    // Every row is of `conversation` (the WHERE says so).
                    let mut m = message_from_row_at(r, 0, Some(conversation))?;
                    markers.stamp(&mut m);
                    Ok(m)
                })?;
                rows.collect()
            })
            .await
    }

    async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        self.db
            .read(move |c| {
                let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages m {MARKER_JOIN} WHERE m.message_id = ?1");
                c.prepare_cached(&sql)?
                    .query_row([id.to_string()], message_from_row)
                    .optional()
            })
            .await
    }
}

#[async_trait]
impl InboxReader for SqliteReadModels {
    async fn inbox(&self, user: UserId, limit: usize) -> Result<Vec<InboxEntry>, StoreError> {
        self.db
            .read(move |c| {
                let sql = format!(
                    "SELECT i.peer_id, i.unread_count, {MESSAGE_COLUMNS}
                     FROM inbox i
                     JOIN messages m ON m.conversation_id = i.conversation_id AND m.message_id = i.last_message_id
                     {MARKER_JOIN}
                     WHERE i.user_id = ?1
                     ORDER BY i.last_message_id DESC LIMIT ?2"
                );
                let mut st = c.prepare_cached(&sql)?;
                let rows = st.query_map(params![user.to_string(), limit as i64], |r| {
                    let peer = parse_col(0, UserId::parse("peer_id", &r.get::<_, String>(0)?))?;
                    let unread: i64 = r.get(1)?;
                    let msg = message_from_row_at(r, 2, None)?;
                    Ok(InboxEntry {
                        conversation_id: msg.conversation_id,
                        peer,
                        last_message: msg,
                        unread_count: unread.max(0) as u64,
                    })
                })?;
                rows.collect()
            })
            .await
    }
}

/// [`message_from_row`] for rows where the message columns start at `base`;
/// `known`: the conversation every row belongs to, when the query fixes it.
fn message_from_row_at(
    r: &Row<'_>,
    base: usize,
    known: Option<ConversationId>,
) -> rusqlite::Result<Message> {
    let s = |i: usize| text(r, base + i);
    Ok(Message {
        conversation_id: match known {
            Some(c) => c,
            None => parse_col(base, ConversationId::parse(s(0)?))?,
        },
        id: parse_col(base + 1, MessageId::parse("message_id", s(1)?))?,
        from: parse_col(base + 2, UserId::parse("sender", s(2)?))?,
        to: parse_col(base + 3, UserId::parse("recipient", s(3)?))?,
        body: MessageBody::from_trusted(s(4)?.to_owned()),
        sent_at: Timestamp::from_millis(r.get(base + 5)?),
        delivered_at: r
            .get::<_, Option<i64>>(base + 6)?
            .map(Timestamp::from_millis),
        read_at: r
            .get::<_, Option<i64>>(base + 7)?
            .map(Timestamp::from_millis),
    })
}

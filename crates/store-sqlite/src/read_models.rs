//! Timelines, read markers and inboxes, as query-api, command-api and
//! ws-push read them. The projector writes them (`projection`).

use std::sync::Arc;

use async_trait::async_trait;
use parley_domain::{
    ports::{InboxEntry, InboxReader, TimelineReader},
    ConversationId, Message, MessageBody, MessageId, MessageRef, ReadMarkers, StoreError,
    Timestamp, UserId,
};
use rusqlite::{params, OptionalExtension, Row};

use crate::db::Db;

pub struct SqliteReadModels {
    pub(crate) db: Arc<Db>,
}

impl SqliteReadModels {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self { db }
    }
}

/// Columns of a message row plus its computed `read_at`, in the order
/// [`message_from_row_at`] expects.
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

    async fn message_of(
        &self,
        user: UserId,
        id: MessageId,
    ) -> Result<Option<MessageRef>, StoreError> {
        let found = self
            .db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT conversation_id, sender, recipient FROM messages WHERE message_id = ?1",
                )?
                .query_row([id.to_string()], |r| {
                    Ok(MessageRef {
                        id,
                        conversation_id: parse_col(0, ConversationId::parse(text(r, 0)?))?,
                        from: parse_col(1, UserId::parse("sender", text(r, 1)?))?,
                        to: parse_col(2, UserId::parse("recipient", text(r, 2)?))?,
                    })
                })
                .optional()
            })
            .await?;
        Ok(found.filter(|m| m.from == user || m.to == user))
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

/// A message from a row whose message columns start at `base`;
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

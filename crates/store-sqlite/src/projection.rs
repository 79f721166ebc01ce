//! The projector's writes: each event's changes (decided in
//! `parley_projector::changes`) applied by their merge rules in SQL, one
//! transaction per batch.
//!
//! - insert once: `INSERT OR IGNORE` on the row's key;
//! - earliest wins: `MIN` over the delivery stamp; a receipt that arrives
//!   before its message waits in `early_deliveries` and is stamped on the
//!   message when it is inserted;
//! - furthest wins: an upsert that only moves a marker forward;
//! - newest wins: `MAX` over the inbox's last message id;
//! - the directory: `INSERT OR IGNORE` (registration wrote it already,
//!   unless this is a replay);
//! - count unless read: `inbox.unread_count` counts a message once, by
//!   the owner's inbox upsert, when the message's row is first inserted
//!   and no marker covers it, and is counted again from the messages
//!   past the marker whenever the marker moves.

use async_trait::async_trait;
use parley_domain::{
    events::{ConversationRead, MessageDelivered, MessageSent},
    ports::ReadModelWriter,
    LogPosition, PublicUser, RecordedEvent, StoreError, UserId,
};
use parley_projector::changes::{project, Change};
use rusqlite::{params, OptionalExtension, Transaction};

use crate::{read_models::SqliteReadModels, schema::READ_MODEL_TABLES};

/// Inserts the message once, stamped with a receipt that came before it;
/// whether this call inserted it.
fn message(tx: &Transaction<'_>, m: &MessageSent, at: LogPosition) -> rusqlite::Result<bool> {
    let id = m.message_id.to_string();
    // One statement in the common case: the early receipt (almost never
    // there) is looked up inside the insert, and only one found is deleted.
    let inserted: Option<Option<i64>> = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO messages (conversation_id, message_id, sender, recipient, body, sent_at, log_partition, log_offset, delivered_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, (SELECT at FROM early_deliveries WHERE message_id = ?2))
             RETURNING delivered_at",
        )?
        .query_row(
            params![
                m.conversation_id.to_string(),
                id,
                m.from.to_string(),
                m.to.to_string(),
                m.body.as_str(),
                m.sent_at.millis(),
                at.partition,
                at.offset
            ],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(Some(_)) = inserted {
        tx.prepare_cached("DELETE FROM early_deliveries WHERE message_id = ?1")?
            .execute([&id])?;
    }
    Ok(inserted.is_some())
}

fn delivered(tx: &Transaction<'_>, d: &MessageDelivered) -> rusqlite::Result<()> {
    let (id, at) = (d.message_id.to_string(), d.at.millis());
    let stamped = tx
        .prepare_cached(
            "UPDATE messages SET delivered_at = MIN(COALESCE(delivered_at, ?3), ?3)
             WHERE conversation_id = ?1 AND message_id = ?2",
        )?
        .execute(params![d.conversation_id.to_string(), id, at])?;
    if stamped == 0 {
        tx.prepare_cached(
            "INSERT INTO early_deliveries (message_id, at) VALUES (?1, ?2)
             ON CONFLICT (message_id) DO UPDATE SET at = MIN(at, excluded.at)",
        )?
        .execute(params![id, at])?;
    }
    Ok(())
}

fn marker(tx: &Transaction<'_>, r: &ConversationRead) -> rusqlite::Result<()> {
    let (conv, reader, up_to) = (
        r.conversation_id.to_string(),
        r.reader.to_string(),
        r.up_to.to_string(),
    );
    let moved = tx
        .prepare_cached(
            "INSERT INTO read_markers (conversation_id, reader, up_to, at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (conversation_id, reader) DO UPDATE SET up_to = excluded.up_to, at = excluded.at
             WHERE (excluded.up_to, excluded.at) > (read_markers.up_to, read_markers.at)",
        )?
        .execute(params![conv, reader, up_to, r.at.millis()])?;
    if moved > 0 {
        // Counts only the messages after the marker: usually a handful.
        tx.prepare_cached(
            "UPDATE inbox SET unread_count = (
                 SELECT COUNT(*) FROM messages
                 WHERE conversation_id = ?1 AND recipient = ?2 AND message_id > ?3)
             WHERE user_id = ?2 AND conversation_id = ?1",
        )?
        .execute(params![conv, reader, up_to])?;
    }
    Ok(())
}

/// Upserts `owner`'s inbox entry. With `unread`, the message also counts
/// towards it unless `owner`'s marker already covers it: the
/// [`Change::Unread`] of the same message, applied in the same statement
/// since the count lives on this row.
fn inbox(
    tx: &Transaction<'_>,
    owner: UserId,
    peer: UserId,
    last: &MessageSent,
    unread: bool,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO inbox (user_id, conversation_id, peer_id, last_message_id, unread_count)
         VALUES (?1, ?2, ?3, ?4, ?5 AND NOT EXISTS (
             SELECT 1 FROM read_markers WHERE conversation_id = ?2 AND reader = ?1 AND up_to >= ?4))
         ON CONFLICT (user_id, conversation_id) DO UPDATE SET
             last_message_id = MAX(last_message_id, excluded.last_message_id),
             unread_count = unread_count + excluded.unread_count",
    )?
    .execute(params![
        owner.to_string(),
        last.conversation_id.to_string(),
        peer.to_string(),
        last.message_id.to_string(),
        unread
    ])?;
    Ok(())
}

pub(crate) fn directory(tx: &Transaction<'_>, u: &PublicUser) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO directory (id, username, display_name, created_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        u.id.to_string(),
        u.username.as_str(),
        u.display_name.as_str(),
        u.created_at.millis()
    ])?;
    Ok(())
}

fn feed(tx: &Transaction<'_>, owner: UserId, e: &RecordedEvent) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO sync_feed (user_id, log_offset) VALUES (?1, ?2)")?
        .execute(params![owner.to_string(), e.position.offset])?;
    Ok(())
}

/// Applies one event's changes.
fn apply_event(tx: &Transaction<'_>, e: &RecordedEvent) -> rusqlite::Result<()> {
    let changes = project(e);
    // Whether this event's message row is new: its unread mark counts
    // only then (the mark's key is the message's).
    let mut fresh = false;
    let marked_unread = |owner: UserId, m: &MessageSent| {
        changes.iter().any(|c| {
            matches!(c, Change::Unread { owner: o, message }
                if *o == owner && message.message_id == m.message_id)
        })
    };
    for change in &changes {
        match *change {
            Change::Message { sent, position } => fresh = message(tx, sent, position)?,
            Change::Delivered { delivery, .. } => delivered(tx, delivery)?,
            Change::Marker { read, .. } => marker(tx, read)?,
            Change::Inbox { owner, peer, last } => {
                inbox(tx, owner, peer, last, fresh && marked_unread(owner, last))?
            }
            // The core gives every unread mark its owner's inbox entry for
            // the same message, and the count lives on that row: the
            // inbox's upsert counted it.
            Change::Unread { .. } => {}
            Change::Feed { owner, event } => feed(tx, owner, event)?,
            Change::User { user } => directory(tx, user)?,
        }
    }
    Ok(())
}

#[async_trait]
impl ReadModelWriter for SqliteReadModels {
    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), StoreError> {
        let events = events.to_vec();
        self.db
            .write_derived(move |tx| events.iter().try_for_each(|e| apply_event(tx, e)))
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

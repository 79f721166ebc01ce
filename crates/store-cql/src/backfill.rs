//! Data copies a migration makes when a new read-model table must start
//! out holding what an existing one already knows, so an upgrade needs no
//! replay of the log.

use futures_util::TryStreamExt;
use parley_domain::{
    ConversationId, Event, LogPosition, Message, MessageId, StoreError, Timestamp, UserId,
};
use scylla::client::session::Session;

use crate::{
    execution_error,
    projection::{Partition, Row},
    revocations::day_of,
    statements::{revocation_insert, Statements},
};

/// Rows copied at once.
const COPIES_IN_FLIGHT: usize = 64;

/// How long a copied logout is kept. `revoked_sessions` does not record
/// when a session's token expires (its rows are keys only, and CQL reads
/// no TTL of a key), so the copy outlives any token a deployment would
/// issue; keeping a logout too long costs a few bytes, forgetting it too
/// early would let a logged-out token back in.
const COPIED_LOGOUT_KEPT_S: i64 = 366 * 24 * 3600;

/// Every session of `revoked_sessions` into today's `revocations`.
pub(crate) async fn copy_revoked_sessions(session: &Session, ks: &str) -> Result<u64, StoreError> {
    let insert = session
        .prepare(revocation_insert(ks))
        .await
        .map_err(StoreError::unavailable)?;
    let insert = &insert;
    let now = Timestamp::now().millis();
    let expires_at = now / 1000 + COPIED_LOGOUT_KEPT_S;
    let ttl = COPIED_LOGOUT_KEPT_S as i32;
    let rows = session
        .query_iter(format!("SELECT session_id FROM {ks}.revoked_sessions"), ())
        .await
        .map_err(StoreError::unavailable)?
        .rows_stream::<(String,)>()
        .map_err(StoreError::unexpected)?;
    copy_each(rows, |(id,)| async move {
        session
            .execute_unpaged(insert, (day_of(now), now, id, expires_at, ttl))
            .await
            .map_err(execution_error)?;
        Ok(())
    })
    .await
}

/// Runs `copy` for every row, [`COPIES_IN_FLIGHT`] at a time, and says
/// how many were copied.
async fn copy_each<T, E, Fut>(
    rows: impl futures_util::Stream<Item = Result<T, E>>,
    copy: impl Fn(T) -> Fut,
) -> Result<u64, StoreError>
where
    E: std::error::Error + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let copied = std::sync::atomic::AtomicU64::new(0);
    rows.map_err(StoreError::unavailable)
        .try_for_each_concurrent(COPIES_IN_FLIGHT, |row| {
            let done = copy(row);
            let copied = &copied;
            async move {
                done.await?;
                copied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
        })
        .await?;
    Ok(copied.into_inner())
}

/// Runs one row write of the projection's own shape.
async fn write(session: &Session, (_, row): (Partition, Row<'_>)) -> Result<(), StoreError> {
    session
        .execute_unpaged(&row.st.st, row.values)
        .await
        .map_err(execution_error)?;
    Ok(())
}

/// The rows of `SELECT {columns} FROM {ks}.{table}`, page by page.
async fn scan<T>(
    session: &Session,
    ks: &str,
    table: &str,
    columns: &str,
) -> Result<impl futures_util::Stream<Item = Result<T, scylla::errors::NextRowError>>, StoreError>
where
    T: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm> + 'static,
{
    session
        .query_iter(format!("SELECT {columns} FROM {ks}.{table}"), ())
        .await
        .map_err(StoreError::unavailable)?
        .rows_stream::<T>()
        .map_err(StoreError::unexpected)
}

fn parsed<T, E: std::error::Error + Send + Sync + 'static>(
    r: Result<T, E>,
) -> Result<T, StoreError> {
    r.map_err(StoreError::unexpected)
}

/// Fills `user_rows` (and `read_markers.marker`) from what releases
/// before it wrote: inbox entries and unread marks, read markers (in both
/// participants' inbox rows), each message's lookup row for both
/// participants and its delivery in both inbox rows, and sync
/// feeds. Every row is written as the projector writes it (same values,
/// same write timestamps), so the copy and later projection merge.
pub(crate) async fn copy_into_user_rows(session: &Session, ks: &str) -> Result<u64, StoreError> {
    let st = &Statements::prepare(session, ks).await?;
    let mut copied = 0;

    let inbox = scan::<(String, String, Option<String>, Option<String>)>(
        session,
        ks,
        "inbox",
        "user_id, conversation_id, peer_id, last_message",
    )
    .await?;
    copied += copy_each(inbox, |(owner, conv, peer, last)| async move {
        let (Some(peer), Some(last)) = (peer, last) else {
            return Ok(());
        };
        let m: Message = parsed(serde_json::from_str(&last))?;
        let owner = parsed(UserId::parse("user_id", &owner))?;
        let conv = parsed(ConversationId::parse(&conv))?;
        let peer = parsed(UserId::parse("peer_id", &peer))?;
        write(session, st.inbox_last_row(owner, conv, peer, m.id, last)).await
    })
    .await?;

    let unread = scan::<(String, String, String)>(
        session,
        ks,
        "unread",
        "user_id, conversation_id, message_id",
    )
    .await?;
    copied += copy_each(unread, |(owner, conv, id)| async move {
        let owner = parsed(UserId::parse("user_id", &owner))?;
        let conv = parsed(ConversationId::parse(&conv))?;
        let id = parsed(MessageId::parse("message_id", &id))?;
        write(session, st.unread_row(owner, conv, id)).await
    })
    .await?;

    let markers = scan::<(String, String, Option<String>, Option<i64>)>(
        session,
        ks,
        "read_markers",
        "conversation_id, reader, up_to, at",
    )
    .await?;
    copied += copy_each(markers, |(conv, reader, up_to, at)| async move {
        let (Some(up_to), Some(at)) = (up_to, at) else {
            return Ok(());
        };
        let conv = parsed(ConversationId::parse(&conv))?;
        let reader = parsed(UserId::parse("reader", &reader))?;
        let up_to = parsed(MessageId::parse("up_to", &up_to))?;
        let at = Timestamp::from_millis(at);
        write(session, st.marker_row(conv, reader, up_to, at)).await?;
        write(session, st.inbox_marker_row(reader, conv, up_to, at, true)).await?;
        if let Some(peer) = conv.peer_of(reader) {
            write(session, st.inbox_marker_row(peer, conv, up_to, at, false)).await?;
        }
        Ok(())
    })
    .await?;

    let messages = scan::<(String, String, String, String, Option<i64>)>(
        session,
        ks,
        "timeline",
        "conversation_id, message_id, sender, recipient, delivered_at",
    )
    .await?;
    copied += copy_each(messages, |(conv, id, from, to, delivered)| async move {
        let conv = parsed(ConversationId::parse(&conv))?;
        let id = parsed(MessageId::parse("message_id", &id))?;
        let from = parsed(UserId::parse("sender", &from))?;
        let to = parsed(UserId::parse("recipient", &to))?;
        write(session, st.message_of_row(from, id, to, true)).await?;
        write(session, st.message_of_row(to, id, from, false)).await?;
        if let Some(at) = delivered {
            let at = Timestamp::from_millis(at);
            write(session, st.inbox_delivered_row(from, conv, id, at)).await?;
            write(session, st.inbox_delivered_row(to, conv, id, at)).await?;
        }
        Ok(())
    })
    .await?;

    let feeds = scan::<(String, i32, i64, Option<Vec<u8>>)>(
        session,
        ks,
        "user_sync",
        "user_id, log_partition, log_offset, event",
    )
    .await?;
    copied += copy_each(feeds, |(owner, partition, offset, event)| async move {
        let Some(event) = event else {
            return Ok(());
        };
        // An event this build cannot read was not in any feed it serves.
        let Ok(Some((stamp, _))) = Event::decode(&event) else {
            return Ok(());
        };
        let owner = parsed(UserId::parse("user_id", &owner))?;
        let at = LogPosition {
            partition: partition.max(0) as u32,
            offset,
        };
        write(session, st.feed_row(owner, at, stamp.at, event)).await
    })
    .await?;
    Ok(copied)
}

//! Data copies a migration makes when a new read-model table must start
//! out holding what an existing one already knows, so an upgrade needs no
//! replay of the log.

use futures_util::TryStreamExt;
use parley_domain::{ConversationId, StoreError};
use scylla::client::session::Session;

use crate::{execution_error, statements::user_marker_upsert};

/// Rows copied at once.
const COPIES_IN_FLIGHT: usize = 64;

/// Every row of `read_markers` into both participants' rows of
/// `user_read_markers`, at the write timestamp it has: the projector
/// writes both tables with the marker's own time, so a copy and a later
/// marker the projector writes meanwhile settle on the later one.
pub(crate) async fn copy_read_markers_to_users(
    session: &Session,
    ks: &str,
) -> Result<u64, StoreError> {
    let insert = session
        .prepare(user_marker_upsert(ks))
        .await
        .map_err(StoreError::unavailable)?;
    let insert = &insert;
    let rows = session
        .query_iter(
            format!("SELECT conversation_id, reader, up_to, at, WRITETIME(up_to) FROM {ks}.read_markers"),
            (),
        )
        .await
        .map_err(StoreError::unavailable)?
        .rows_stream::<(String, String, String, i64, i64)>()
        .map_err(StoreError::unexpected)?;
    let copied = std::sync::atomic::AtomicU64::new(0);
    rows.map_err(StoreError::unavailable)
        .try_for_each_concurrent(COPIES_IN_FLIGHT, |(conv, reader, up_to, at, ts)| {
            let copied = &copied;
            async move {
                let (a, b) = ConversationId::parse(&conv)
                    .map_err(StoreError::unexpected)?
                    .participants();
                for user in [a, b] {
                    session
                        .execute_unpaged(insert, (user.to_string(), &conv, &reader, &up_to, at, ts))
                        .await
                        .map_err(execution_error)?;
                }
                copied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
        })
        .await?;
    Ok(copied.into_inner())
}

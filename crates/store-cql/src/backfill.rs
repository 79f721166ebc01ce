//! Data copies a migration makes when a new read-model table must start
//! out holding what an existing one already knows, so an upgrade needs no
//! replay of the log.

use futures_util::TryStreamExt;
use parley_domain::{StoreError, Timestamp};
use scylla::client::session::Session;

use crate::{execution_error, revocations::day_of, statements::revocation_insert};

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

//! Logged-out sessions: rows of `revocations`, partitioned by the day
//! they were stamped and clustered by time, so what is new since a read is
//! one slice at the end of today's partition. What a process keeps in
//! memory, and how often it reads, is [`parley_domain::logouts`]'s.

use async_trait::async_trait;
use parley_domain::{
    auth::Session,
    logouts::{Logout, LogoutStore},
    StoreError,
};

use crate::{rows_error, Cql};

const DAY_MS: i64 = 24 * 3600 * 1000;
/// Rows per read of one day.
const PAGE: i32 = 1000;

pub(crate) fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

impl Cql {
    /// Every logout of `day` stamped after `after` (ms), page by page.
    async fn read_day(
        &self,
        day: i64,
        after: i64,
        found: &mut Vec<Logout>,
    ) -> Result<(), StoreError> {
        let mut cursor = (after, String::new());
        loop {
            let rows = self
                .run(
                    &self.st.revocations_after,
                    (day, cursor.0, cursor.1.as_str(), PAGE),
                )
                .await?
                .into_rows_result()
                .map_err(rows_error)?;
            let page: Vec<(i64, String, i64)> = rows
                .rows::<(i64, String, i64)>()
                .map_err(rows_error)?
                .collect::<Result<_, _>>()
                .map_err(rows_error)?;
            let full = page.len() == PAGE as usize;
            for (at, session_id, expires_at) in page {
                found.push(Logout {
                    session_id: session_id.clone(),
                    expires_at,
                });
                cursor = (at, session_id);
            }
            if !full {
                return Ok(());
            }
        }
    }
}

#[async_trait]
impl LogoutStore for Cql {
    async fn record(&self, session: &Session, at_ms: i64) -> Result<(), StoreError> {
        // Kept until the token would have expired anyway.
        let ttl = (session.expires_at - at_ms / 1000).clamp(1, i32::MAX as i64) as i32;
        let id = session.session_id.as_str();
        // `revoked_sessions` is what processes of the release before
        // `revocations` ask, so a logout during a rolling upgrade reaches
        // them too.
        futures_util::try_join!(
            self.run(
                &self.st.revocation_insert,
                (day_of(at_ms), at_ms, id, session.expires_at, ttl)
            ),
            self.run(&self.st.revoke, (id, ttl)),
        )?;
        Ok(())
    }

    async fn stamped_between(&self, from_ms: i64, to_ms: i64) -> Result<Vec<Logout>, StoreError> {
        let mut found = Vec::new();
        for day in day_of(from_ms)..=day_of(to_ms) {
            self.read_day(day, from_ms.saturating_sub(1), &mut found)
                .await?;
        }
        Ok(found)
    }

    /// Every process reaches the same nodes, and a logout is a write to
    /// them: while they are down, a logout fails as well.
    fn outage_stops_logouts(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_split_at_utc_midnight() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(DAY_MS - 1), 0);
        assert_eq!(day_of(DAY_MS), 1);
        assert_eq!(day_of(-1), -1);
    }
}

//! Each user's events by log offset. The projector keeps only the index
//! (`sync_feed` in `parley.db`: user, offset); the events themselves are
//! read from the log, so a message's body is not stored a third time.

use std::sync::Arc;

use async_trait::async_trait;
use parley_domain::{ports::SyncFeed, RecordedEvent, StoreError, UserId};
use rusqlite::{params, OptionalExtension};

use crate::{db::Db, log::decode};

pub struct SqliteSyncFeed {
    /// `parley.db`: the index.
    db: Arc<Db>,
    /// `log.db`: the events.
    log: Arc<Db>,
}

impl SqliteSyncFeed {
    pub(crate) fn new(db: Arc<Db>, log: Arc<Db>) -> Self {
        Self { db, log }
    }
}

#[async_trait]
impl SyncFeed for SqliteSyncFeed {
    async fn user_events(
        &self,
        user: UserId,
        partition: u32,
        after: Option<i64>,
        upto: i64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if partition != 0 {
            return Ok(Vec::new());
        }
        let after = after.unwrap_or(0);
        let offsets: Vec<i64> = self
            .db
            .read(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT log_offset FROM sync_feed
                     WHERE user_id = ?1 AND log_offset > ?2 AND log_offset <= ?3
                     ORDER BY log_offset LIMIT ?4",
                )?;
                let rows = st
                    .query_map(params![user.to_string(), after, upto, limit as i64], |r| {
                        r.get(0)
                    })?;
                rows.collect()
            })
            .await?;
        if offsets.is_empty() {
            return Ok(Vec::new());
        }
        let found = self
            .log
            .read(move |c| {
                let mut st =
                    c.prepare_cached(r#"SELECT payload FROM events WHERE "offset" = ?1"#)?;
                let mut out = Vec::with_capacity(offsets.len());
                for offset in offsets {
                    let payload: Option<Vec<u8>> =
                        st.query_row([offset], |r| r.get(0)).optional()?;
                    out.push((offset, payload));
                }
                Ok(out)
            })
            .await?;
        let mut events = Vec::with_capacity(found.len());
        for (offset, payload) in found {
            let payload = payload.ok_or_else(|| {
                StoreError::unexpected_msg(format!(
                    "the sync feed names offset {offset}, not in the log"
                ))
            })?;
            // Only events this build can read get a feed row; `decode`
            // warns and skips should the log say otherwise.
            events.extend(decode(offset, &payload));
        }
        Ok(events)
    }
}

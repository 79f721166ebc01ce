//! Logged-out sessions, known to every process without a store read per
//! request.
//!
//! A logout is rare and every authenticated request asks about one, so
//! each process keeps the whole list in memory and reads only what is new,
//! at most once per [`REFRESH_EVERY`]. Asking the store per session cost a
//! read on most sends and socket connects: a user who sends every few
//! seconds was never in a per-session cache long enough to hit it.
//!
//! Logouts are rows of `revocations`, partitioned by the day they happened
//! and clustered by time, so "what is new" is one slice at the end of
//! today's partition. A process reads a day only once a session issued on
//! or before it asks (a session cannot have been logged out before it was
//! issued), so it never needs to know how long tokens live.

use std::{
    collections::HashMap,
    sync::RwLock,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use parley_domain::{auth::Session, ports::SessionRevocations, StoreError, Timestamp};

use crate::{rows_error, Cql};

/// How old the list may be before a request reads what is new.
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// While another request is reading, a list this old still answers, so
/// requests do not queue behind the read.
const STALE_AFTER: Duration = Duration::from_secs(3);
/// Each read starts this far before the previous one ended: a logout is
/// stamped with its writer's clock, and may become visible a little after
/// that time, so a read that began just after it could have missed it.
/// Processes' clocks must agree within this (NTP keeps them within
/// milliseconds): a logout stamped by a clock further behind reaches a
/// running process only when it starts again. Re-reading a minute of
/// logouts each second costs little, as logouts are rare.
const OVERLAP_MS: i64 = 60_000;
/// A writer's clock may be this far off ours; days are read with margin.
const CLOCK_SKEW_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * 3600 * 1000;
/// Rows per read of one day.
const PAGE: i32 = 1000;
/// How often expired sessions are dropped from memory.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

pub(crate) fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// What this process knows of the `revocations` table.
#[derive(Default)]
pub(crate) struct Known {
    /// Session id → Unix seconds its token expires.
    ids: HashMap<String, i64>,
    /// The earliest day read in full; `None` before the first read.
    from_day: Option<i64>,
    /// Every logout stamped before this (ms) has been read.
    read_to_ms: i64,
    read_at: Option<Instant>,
    pruned_at: Option<Instant>,
}

impl Known {
    /// `Some(answer)` when the list can answer for a session issued on or
    /// after `day` without a read, given how old it may be.
    fn answer(&self, session_id: &str, day: i64, max_age: Duration) -> Option<bool> {
        if self.ids.contains_key(session_id) {
            return Some(true);
        }
        let covered = self.from_day.is_some_and(|d| d <= day);
        let fresh = self.read_at.is_some_and(|at| at.elapsed() < max_age);
        (covered && fresh).then_some(false)
    }
}

/// The list, and the lock one reader at a time holds.
#[derive(Default)]
pub(crate) struct Revocations {
    known: RwLock<Known>,
    reading: tokio::sync::Mutex<()>,
}

impl Revocations {
    fn answer(&self, session_id: &str, day: i64, max_age: Duration) -> Option<bool> {
        self.known
            .read()
            .ok()
            .and_then(|k| k.answer(session_id, day, max_age))
    }

    fn remember(&self, session_id: String, expires_at: i64) {
        if let Ok(mut k) = self.known.write() {
            k.ids.insert(session_id, expires_at);
        }
    }
}

impl Cql {
    /// Reads the logouts this process has not seen: the days before what
    /// it holds back to `day`, and what is new since its last read.
    async fn catch_up(&self, day: i64) -> Result<(), StoreError> {
        let now = Timestamp::now().millis();
        let (from_day, read_to) = match self.revocations.known.read() {
            Ok(k) => (k.from_day, k.read_to_ms),
            Err(_) => return Err(StoreError::unexpected_msg("revocation list poisoned")),
        };
        let mut found: Vec<(String, i64)> = Vec::new();
        let newest = day_of(now + CLOCK_SKEW_MS);
        // Days never read are read whole; the ones read before, from a
        // little before where the last read ended.
        let (older, recent, since) = match from_day {
            Some(first) => {
                let since = read_to - OVERLAP_MS;
                let from = day_of(since - CLOCK_SKEW_MS).max(first);
                (day..first, from..=newest, since)
            }
            None => (day..day, day..=newest, i64::MIN),
        };
        for d in older {
            self.read_day(d, i64::MIN, &mut found).await?;
        }
        for d in recent {
            self.read_day(d, since, &mut found).await?;
        }
        let mut k = self
            .revocations
            .known
            .write()
            .map_err(|_| StoreError::unexpected_msg("revocation list poisoned"))?;
        k.ids.extend(found);
        k.from_day = Some(from_day.map_or(day, |first| first.min(day)));
        k.read_to_ms = now;
        k.read_at = Some(Instant::now());
        if k.pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            let now_s = now / 1000;
            k.ids.retain(|_, expires_at| *expires_at >= now_s);
            k.pruned_at = Some(Instant::now());
        }
        Ok(())
    }

    /// Every logout of `day` stamped after `after` (ms), page by page.
    async fn read_day(
        &self,
        day: i64,
        after: i64,
        found: &mut Vec<(String, i64)>,
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
                found.push((session_id.clone(), expires_at));
                cursor = (at, session_id);
            }
            if !full {
                return Ok(());
            }
        }
    }
}

#[async_trait]
impl SessionRevocations for Cql {
    async fn revoke(&self, session: &Session) -> Result<(), StoreError> {
        let now = Timestamp::now().millis();
        // Kept until the token would have expired anyway.
        let ttl = (session.expires_at - now / 1000).clamp(1, i32::MAX as i64) as i32;
        let id = session.session_id.as_str();
        // `revoked_sessions` is what processes of the release before
        // `revocations` ask, so a logout during a rolling upgrade reaches
        // them too.
        futures_util::try_join!(
            self.run(
                &self.st.revocation_insert,
                (day_of(now), now, id, session.expires_at, ttl)
            ),
            self.run(&self.st.revoke, (id, ttl)),
        )?;
        self.revocations
            .remember(session.session_id.clone(), session.expires_at);
        Ok(())
    }

    async fn is_revoked(&self, session: &Session) -> Result<bool, StoreError> {
        let id = session.session_id.as_str();
        let day = day_of((session.issued_at * 1000).saturating_sub(CLOCK_SKEW_MS));
        let list = &self.revocations;
        if let Some(answer) = list.answer(id, day, REFRESH_EVERY) {
            return Ok(answer);
        }
        let _reading = match list.reading.try_lock() {
            Ok(guard) => guard,
            Err(_) => match list.answer(id, day, STALE_AFTER) {
                Some(answer) => return Ok(answer),
                None => list.reading.lock().await,
            },
        };
        // Whoever held the lock may have just read what this needs.
        if let Some(answer) = list.answer(id, day, REFRESH_EVERY) {
            return Ok(answer);
        }
        match self.catch_up(day).await {
            Ok(()) => {}
            // Nobody can log out while the store is down (a logout is a
            // write), so what was read before it went down still holds.
            // A session older than anything read is let through: its
            // token's signature and expiry were still checked.
            Err(e @ StoreError::Unavailable(_)) => {
                metrics::counter!("parley_auth_revocation_unchecked_total").increment(1);
                tracing::warn!(error = %e.chain(), "cannot read logouts; using what was read before");
            }
            Err(e) => return Err(e),
        }
        Ok(list.answer(id, day, Duration::MAX).unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(ids: &[&str], from_day: Option<i64>, read: Option<Instant>) -> Known {
        Known {
            ids: ids.iter().map(|s| (s.to_string(), i64::MAX)).collect(),
            from_day,
            read_to_ms: 0,
            read_at: read,
            pruned_at: None,
        }
    }

    #[test]
    fn a_listed_session_is_revoked_however_old_the_list() {
        let k = known(&["a"], None, None);
        assert_eq!(k.answer("a", 5, REFRESH_EVERY), Some(true));
    }

    #[test]
    fn an_unlisted_session_needs_a_fresh_list_that_reaches_back_to_its_day() {
        let now = Some(Instant::now());
        assert_eq!(
            known(&[], Some(5), now).answer("b", 5, REFRESH_EVERY),
            Some(false)
        );
        assert_eq!(known(&[], Some(5), now).answer("b", 4, REFRESH_EVERY), None);
        assert_eq!(known(&[], None, now).answer("b", 5, REFRESH_EVERY), None);
        let old = Instant::now().checked_sub(Duration::from_secs(2));
        assert_eq!(known(&[], Some(5), old).answer("b", 5, REFRESH_EVERY), None);
        assert_eq!(
            known(&[], Some(5), old).answer("b", 5, STALE_AFTER),
            Some(false)
        );
    }

    #[test]
    fn days_split_at_utc_midnight() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(DAY_MS - 1), 0);
        assert_eq!(day_of(DAY_MS), 1);
        assert_eq!(day_of(-1), -1);
    }
}

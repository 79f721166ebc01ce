//! The logout list every process keeps, for every backend.
//!
//! A logout is rare and every authenticated request asks about one, so
//! each process keeps the whole list in memory and reads only what is new,
//! at most once per [`REFRESH_EVERY`]. Asking the store per session would
//! cost a read on most sends and socket connects: a user who sends every
//! few seconds is never in a per-session cache long enough to hit it.
//!
//! A logout is stamped with its writer's clock. The list reads back only
//! as far as the oldest session asked about could have been logged out (a
//! session cannot be logged out before it was issued), in whole days, so
//! it never needs to know how long tokens live.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use async_trait::async_trait;

use crate::{auth::Session, ports::SessionRevocations, StoreError, Timestamp};

/// How old the list may be before a request reads what is new.
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// While another request is reading, a list this old still answers, so
/// requests do not queue behind the read.
const STALE_AFTER: Duration = Duration::from_secs(3);
/// Each read starts this far before the previous one ended: a logout may
/// become visible a little after its stamp, so a read that began just
/// after it could have missed it. Processes' clocks must agree within this
/// (NTP keeps them within milliseconds): a logout stamped by a clock
/// further behind reaches a running process only when it starts again.
/// Re-reading a minute of logouts each second costs little, as logouts
/// are rare.
const OVERLAP_MS: i64 = 60_000;
/// A writer's clock may be this far off ours; stamps are read with margin.
const CLOCK_SKEW_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * 3600 * 1000;
/// How often expired sessions are dropped from memory.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// One logged-out session, as a store gives it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logout {
    pub session_id: String,
    /// Unix seconds its token expires: after that it needs no listing.
    pub expires_at: i64,
}

/// Where logouts are kept. The store only writes and reads rows; what is
/// in memory, how fresh it is and what a store outage means is
/// [`LogoutList`]'s.
#[async_trait]
pub trait LogoutStore: Send + Sync {
    /// Keeps `session`'s logout, stamped `at_ms`, until its token expires.
    async fn record(&self, session: &Session, at_ms: i64) -> Result<(), StoreError>;
    /// Every unexpired logout stamped in `from_ms..=to_ms`. More is allowed
    /// (a store may give every unexpired one); less is not.
    async fn stamped_between(&self, from_ms: i64, to_ms: i64) -> Result<Vec<Logout>, StoreError>;
    /// Whether a store this process cannot reach is one nobody can log out
    /// through either (a cluster every process reaches the same way), so
    /// what was read before still holds. A local file that another process
    /// may still write is not: there a failed read fails the request.
    fn outage_stops_logouts(&self) -> bool;
}

/// Whether a list may answer from what it read before, after a read of
/// `store` failed with `e`. A session older than anything read is then
/// let through: its token's signature and expiry were still checked.
fn answer_from_memory(e: &StoreError, outage_stops_logouts: bool) -> bool {
    outage_stops_logouts && matches!(e, StoreError::Unavailable(_))
}

/// What this process knows of the store's logouts.
#[derive(Default)]
struct Known {
    /// Session id → Unix seconds its token expires.
    ids: HashMap<String, i64>,
    /// Every logout stamped from here (ms, the start of a day) on was
    /// read; `None` before the first read.
    from_ms: Option<i64>,
    /// Every logout stamped before this (ms) was read.
    read_to_ms: i64,
    read_at: Option<Instant>,
    pruned_at: Option<Instant>,
}

impl Known {
    /// `Some(answer)` when the list can answer for a session that could
    /// only have been logged out from `need_ms` on, given how old it may be.
    fn answer(&self, session_id: &str, need_ms: i64, max_age: Duration) -> Option<bool> {
        if self.ids.contains_key(session_id) {
            return Some(true);
        }
        let covered = self.from_ms.is_some_and(|from| from <= need_ms);
        let fresh = self.read_at.is_some_and(|at| at.elapsed() < max_age);
        (covered && fresh).then_some(false)
    }

    /// The stamp ranges a read must cover for sessions from `need_ms` on:
    /// the older ones never read, and what is new since the last read.
    fn to_read(&self, need_ms: i64, now_ms: i64) -> Vec<(i64, i64)> {
        let newest = now_ms + CLOCK_SKEW_MS;
        match self.from_ms {
            None => vec![(need_ms, newest)],
            Some(from) => {
                let mut ranges = Vec::with_capacity(2);
                if need_ms < from {
                    ranges.push((need_ms, from - 1));
                }
                ranges.push(((self.read_to_ms - OVERLAP_MS).max(from), newest));
                ranges
            }
        }
    }
}

/// The first millisecond of the day of the earliest stamp a logout of a
/// session issued at `issued_at` (Unix seconds) could carry.
fn earliest_logout_ms(issued_at: i64) -> i64 {
    let ms = issued_at.saturating_mul(1000).saturating_sub(CLOCK_SKEW_MS);
    ms.div_euclid(DAY_MS).saturating_mul(DAY_MS)
}

/// [`SessionRevocations`] on any [`LogoutStore`]: an in-memory list that
/// one request at a time brings up to date.
pub struct LogoutList {
    store: Arc<dyn LogoutStore>,
    known: RwLock<Known>,
    reading: tokio::sync::Mutex<()>,
}

impl LogoutList {
    pub fn new(store: Arc<dyn LogoutStore>) -> Self {
        Self {
            store,
            known: RwLock::new(Known::default()),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    fn answer(&self, session_id: &str, need_ms: i64, max_age: Duration) -> Option<bool> {
        self.known
            .read()
            .ok()
            .and_then(|k| k.answer(session_id, need_ms, max_age))
    }

    /// Reads what this process has not seen of the logouts a session from
    /// `need_ms` on could have.
    async fn catch_up(&self, need_ms: i64) -> Result<(), StoreError> {
        let now = Timestamp::now().millis();
        let ranges = self
            .known
            .read()
            .map_err(|_| StoreError::unexpected_msg("logout list poisoned"))?
            .to_read(need_ms, now);
        let mut found = Vec::new();
        for (from, to) in ranges {
            found.extend(self.store.stamped_between(from, to).await?);
        }
        let mut k = self
            .known
            .write()
            .map_err(|_| StoreError::unexpected_msg("logout list poisoned"))?;
        k.ids
            .extend(found.into_iter().map(|l| (l.session_id, l.expires_at)));
        k.from_ms = Some(k.from_ms.map_or(need_ms, |from| from.min(need_ms)));
        k.read_to_ms = now;
        k.read_at = Some(Instant::now());
        if k.pruned_at.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            let now_s = now / 1000;
            k.ids.retain(|_, expires_at| *expires_at >= now_s);
            k.pruned_at = Some(Instant::now());
        }
        Ok(())
    }
}

#[async_trait]
impl SessionRevocations for LogoutList {
    async fn revoke(&self, session: &Session) -> Result<(), StoreError> {
        self.store
            .record(session, Timestamp::now().millis())
            .await?;
        if let Ok(mut k) = self.known.write() {
            k.ids.insert(session.session_id.clone(), session.expires_at);
        }
        Ok(())
    }

    async fn is_revoked(&self, session: &Session) -> Result<bool, StoreError> {
        let id = session.session_id.as_str();
        let need = earliest_logout_ms(session.issued_at);
        if let Some(answer) = self.answer(id, need, REFRESH_EVERY) {
            return Ok(answer);
        }
        let _reading = match self.reading.try_lock() {
            Ok(guard) => guard,
            Err(_) => match self.answer(id, need, STALE_AFTER) {
                Some(answer) => return Ok(answer),
                None => self.reading.lock().await,
            },
        };
        // Whoever held the lock may have just read what this needs.
        if let Some(answer) = self.answer(id, need, REFRESH_EVERY) {
            return Ok(answer);
        }
        if let Err(e) = self.catch_up(need).await {
            if !answer_from_memory(&e, self.store.outage_stops_logouts()) {
                return Err(e);
            }
            metrics::counter!("parley_auth_revocation_unchecked_total").increment(1);
            tracing::warn!(error = %e.chain(), "cannot read logouts; using what was read before");
        }
        Ok(self.answer(id, need, Duration::MAX).unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(ids: &[&str], from_ms: Option<i64>, read: Option<Instant>) -> Known {
        Known {
            ids: ids.iter().map(|s| (s.to_string(), i64::MAX)).collect(),
            from_ms,
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
    fn an_unlisted_session_needs_a_fresh_list_that_reaches_back_far_enough() {
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
    fn a_read_covers_the_older_days_never_read_and_what_is_new() {
        let mut k = known(&[], Some(10 * DAY_MS), None);
        k.read_to_ms = 10 * DAY_MS + 500_000;
        let now = 10 * DAY_MS + 600_000;
        assert_eq!(
            k.to_read(8 * DAY_MS, now),
            vec![
                (8 * DAY_MS, 10 * DAY_MS - 1),
                (10 * DAY_MS + 500_000 - OVERLAP_MS, now + CLOCK_SKEW_MS)
            ]
        );
        assert_eq!(
            k.to_read(10 * DAY_MS, now),
            vec![(10 * DAY_MS + 500_000 - OVERLAP_MS, now + CLOCK_SKEW_MS)]
        );
        assert_eq!(
            Known::default().to_read(3 * DAY_MS, now),
            vec![(3 * DAY_MS, now + CLOCK_SKEW_MS)]
        );
    }

    #[test]
    fn a_session_is_looked_for_from_the_day_a_skewed_clock_could_stamp_it() {
        // Issued one minute into day 2: a clock an hour behind stamps day 1.
        assert_eq!(earliest_logout_ms((2 * DAY_MS + 60_000) / 1000), DAY_MS);
        assert_eq!(
            earliest_logout_ms((2 * DAY_MS + CLOCK_SKEW_MS) / 1000),
            2 * DAY_MS
        );
        // A token's times are signed by us, but arithmetic on them never overflows.
        assert_eq!(earliest_logout_ms(i64::MIN), i64::MIN);
    }

    #[test]
    fn only_an_outage_of_a_store_nobody_can_log_out_through_is_answered_from_memory() {
        let down = StoreError::unavailable_msg("no node answers");
        let broken = StoreError::unexpected_msg("a row that does not decode");
        assert!(answer_from_memory(&down, true));
        assert!(!answer_from_memory(&down, false));
        assert!(!answer_from_memory(&broken, true));
        assert!(!answer_from_memory(&broken, false));
    }
}

//! Rate limits per key (client address, username, user): GCRA from
//! `governor`, with the keyed state bounded in memory. Used by the HTTP
//! roles, and meant for the socket side too ("frames per user").

use std::{
    fmt,
    hash::{BuildHasher, Hash},
    num::NonZeroU32,
    str::FromStr,
    sync::Mutex,
    time::{Duration, Instant},
};

use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota};

use crate::problem::Problem;

/// `count` requests per `per`, in bursts of up to `count`; or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate(Option<(NonZeroU32, Duration)>);

impl Rate {
    pub const OFF: Rate = Rate(None);

    pub fn per(count: u32, per: Duration) -> Self {
        match NonZeroU32::new(count) {
            Some(n) if !per.is_zero() => Self(Some((n, per))),
            _ => Self::OFF,
        }
    }

    pub fn is_off(&self) -> bool {
        self.0.is_none()
    }
}

/// `30/min`, `5/s`, `20/h`, or `off`.
impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self::OFF);
        }
        let bad = || format!("{s}: a rate is N/s, N/min, N/h (N ≥ 1), or off");
        let (n, unit) = s.split_once('/').ok_or_else(bad)?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "min" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        match NonZeroU32::new(n) {
            Some(n) => Ok(Self(Some((n, per)))),
            None => Err(bad()),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some((n, per)) => {
                let unit = match per.as_secs() {
                    1 => "s",
                    60 => "min",
                    3600 => "h",
                    _ => return write!(f, "{n}/{}s", per.as_secs_f64()),
                };
                write!(f, "{n}/{unit}")
            }
        }
    }
}

/// A limit was reached; the key may try again after the duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    pub what: &'static str,
    pub retry_after: Duration,
}

impl From<Limited> for Problem {
    fn from(l: Limited) -> Self {
        Problem::too_many(format!("too many {}; slow down", l.what), l.retry_after)
    }
}

/// Keys whose state is tracked one by one before further keys share
/// [`SHARED_BUCKETS`] buckets by hash.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// Buckets shared by the keys beyond `max_keys` while the table is full.
const SHARED_BUCKETS: u64 = 4096;
/// How often a full table is swept of keys back at a fresh state.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// One rate, applied per key.
///
/// Memory stays bounded whatever keys a client invents: keys are hashed
/// (with a per-process random key, so nobody can aim for collisions), at
/// most `max_keys` are tracked one by one, and a sweep drops the ones whose
/// state is back to fresh. While the table is still full (someone is
/// rotating keys faster than the rate forgets them) new keys share 4096
/// buckets: still limited, only less precisely.
pub struct Limiter {
    /// What is being limited, plural ("logins"): the 429's words and the
    /// metric label.
    what: &'static str,
    limiter: Option<Limits>,
}

struct Limits {
    exact: DefaultKeyedRateLimiter<u64>,
    shared: DefaultKeyedRateLimiter<u64>,
    hasher: std::hash::RandomState,
    max_keys: usize,
    pruned_at: Mutex<Instant>,
}

impl Limiter {
    pub fn new(what: &'static str, rate: Rate) -> Self {
        Self::with_max_keys(what, rate, DEFAULT_MAX_KEYS)
    }

    pub fn with_max_keys(what: &'static str, rate: Rate, max_keys: usize) -> Self {
        let limiter = rate.0.and_then(|(n, per)| {
            let quota = Quota::with_period(per / n.get())?.allow_burst(n);
            Some(Limits {
                exact: DefaultKeyedRateLimiter::dashmap(quota),
                shared: DefaultKeyedRateLimiter::dashmap(quota),
                hasher: std::hash::RandomState::new(),
                max_keys: max_keys.max(1),
                pruned_at: Mutex::new(Instant::now()),
            })
        });
        Self { what, limiter }
    }

    /// Takes one request of `key`'s allowance, or says how long to wait.
    pub fn check<K: Hash + ?Sized>(&self, key: &K) -> Result<(), Limited> {
        let Some(l) = &self.limiter else {
            return Ok(());
        };
        let h = l.hasher.hash_one(key);
        let (limiter, key) = if l.exact.len() < l.max_keys || l.prune() {
            (&l.exact, h)
        } else {
            (&l.shared, h % SHARED_BUCKETS)
        };
        limiter.check_key(&key).map_err(|not_until| {
            metrics::counter!("parley_rate_limited_total", "limit" => self.what).increment(1);
            Limited {
                what: self.what,
                retry_after: not_until.wait_time_from(limiter.clock().now()),
            }
        })
    }

    /// Keys tracked one by one now.
    pub fn tracked_keys(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| l.exact.len())
    }
}

impl Limits {
    /// Sweeps the full table (at most once per [`PRUNE_EVERY`]); whether
    /// it has room now.
    fn prune(&self) -> bool {
        let Ok(mut at) = self.pruned_at.try_lock() else {
            return false;
        };
        if at.elapsed() < PRUNE_EVERY {
            return false;
        }
        *at = Instant::now();
        self.exact.retain_recent();
        self.exact.shrink_to_fit();
        self.exact.len() < self.max_keys
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("what", &self.what)
            .field("on", &self.limiter.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        for s in ["30/min", "5/s", "20/h", "off"] {
            assert_eq!(s.parse::<Rate>().unwrap().to_string(), s);
        }
        for bad in ["", "0/s", "5", "5/day", "-1/s", "x/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_key_gets_its_burst_then_waits_and_others_are_not_affected() {
        let l = Limiter::new("tries", "3/min".parse().unwrap());
        for _ in 0..3 {
            assert!(l.check("alice").is_ok());
        }
        let refused = l.check("alice").unwrap_err();
        assert!(
            refused.retry_after > Duration::from_secs(10)
                && refused.retry_after <= Duration::from_secs(20),
            "{refused:?}"
        );
        assert!(l.check("bob").is_ok());
        assert!(Limiter::new("tries", Rate::OFF).check("alice").is_ok());
    }

    #[test]
    fn rotating_keys_do_not_grow_the_table_past_its_bound() {
        let l = Limiter::with_max_keys("tries", "1/h".parse().unwrap(), 100);
        let mut refused = 0;
        for i in 0..10_000u32 {
            refused += u32::from(l.check(&i).is_err());
        }
        assert!(l.tracked_keys() <= 100, "{}", l.tracked_keys());
        // The keys past the bound share buckets, so most are still limited.
        assert!(refused > 5_000, "{refused}");
    }
}

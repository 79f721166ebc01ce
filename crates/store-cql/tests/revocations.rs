//! Logouts on a real Cassandra, beyond the cases every store shares
//! (tests/contract): a logout stamped by a clock behind, one from days
//! before in an older day's partition, and the logouts an earlier release
//! recorded surviving the upgrade.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::{config, forget_migrations_from, session, store_on, LATEST};
use parley_domain::{
    auth::Session, logouts::LogoutList, ports::SessionRevocations, Timestamp, UserId,
};
use parley_store_cql::{Cql, CqlConfig};

const DAY_S: i64 = 24 * 3600;

/// A session issued `age_s` seconds ago, valid for another hour.
fn issued(age_s: i64) -> Session {
    let now = Timestamp::now().millis() / 1000;
    Session {
        user_id: UserId::new(),
        session_id: format!("s{:x}", UserId::new().as_uuid().as_u128()),
        issued_at: now - age_s,
        expires_at: now + 3600,
    }
}

/// A logout of `s` stamped `at` (ms), written as another process would,
/// behind the store's back.
async fn logout_stamped(config: &CqlConfig, s: &Session, at: i64) {
    let ks = &config.keyspace;
    session(config)
        .await
        .query_unpaged(
            format!(
                "INSERT INTO {ks}.revocations (day, at, session_id, expires_at) VALUES (?, ?, ?, ?)"
            ),
            (
                at.div_euclid(DAY_S * 1000),
                at,
                s.session_id.as_str(),
                s.expires_at,
            ),
        )
        .await
        .expect("write a logout");
}

/// What one process keeps: the logout list on its own connection.
fn process(store: Cql) -> LogoutList {
    LogoutList::new(Arc::new(store))
}

async fn connect(config: &CqlConfig) -> LogoutList {
    process(Cql::connect(config).await.expect("connect"))
}

async fn revoked(store: &LogoutList, s: &Session) -> bool {
    store.is_revoked(s).await.expect("is_revoked")
}

/// Waits until `store` says `s` is logged out; fails with `never` after
/// 30 s (a process reads new logouts about once a second).
async fn eventually_revoked(store: &LogoutList, s: &Session, never: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !revoked(store, s).await {
        assert!(Instant::now() < deadline, "{never}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A logout recorded by a process whose clock is half a minute behind
/// ours lands before the end of what another process has already read;
/// each read starts a minute back, so it is still found.
#[tokio::test]
async fn a_logout_stamped_by_a_clock_behind_still_arrives() {
    let config = config("revoke_skew");
    let store = process(store_on(&config).await);
    let late = issued(120);
    assert!(!revoked(&store, &late).await);
    logout_stamped(&config, &late, Timestamp::now().millis() - 30_000).await;
    eventually_revoked(&store, &late, "the late-stamped logout was never read").await;
}

/// A logout three days ago sits in that day's partition. A process that
/// has so far read only today's must read back to the day the asking
/// session was issued.
#[tokio::test]
async fn a_logout_from_days_ago_holds_for_a_session_issued_before_it() {
    let config = config("revoke_old");
    let store = process(store_on(&config).await);
    let old = issued(5 * DAY_S);
    logout_stamped(&config, &old, Timestamp::now().millis() - 3 * DAY_S * 1000).await;
    assert!(!revoked(&store, &issued(60)).await);
    assert!(revoked(&store, &old).await);
}

/// Logouts recorded by a release before `revocations` (in
/// `revoked_sessions` only) are copied by `migrate`.
#[tokio::test]
async fn migrating_copies_the_logouts_an_earlier_release_recorded() {
    let config = config("revoke_mig");
    store_on(&config).await;
    let s = session(&config).await;
    let ks = &config.keyspace;
    let earlier = issued(60);
    s.query_unpaged(
        format!("INSERT INTO {ks}.revoked_sessions (session_id) VALUES (?)"),
        (earlier.session_id.as_str(),),
    )
    .await
    .expect("an earlier release's logout");
    let before = connect(&config).await;
    assert!(!revoked(&before, &earlier).await, "not yet copied");
    forget_migrations_from(&s, ks, 4).await;
    assert_eq!(Cql::migrate(&config).await.expect("migrate"), LATEST);
    let after = connect(&config).await;
    assert!(revoked(&after, &earlier).await);
    assert!(!revoked(&after, &issued(60)).await);
}

//! A user's sync feed spans buckets of log offsets. These drive the store
//! against a real Cassandra with events far apart in the log, which the
//! HTTP suite cannot make, and upgrade a keyspace from before the feed.

mod common;

use common::{config, forget_migrations_from, messages, session, store_on, LATEST};
use parley_domain::{
    ports::{ReadModelWriter, SyncFeed},
    LogPosition, RecordedEvent, Timestamp, UserId,
};
use parley_store_cql::{Cql, SYNC_BUCKET_OFFSETS};

/// `n` messages between `a` and `b` in log partition `partition`, at the
/// given offsets.
fn at_offsets(a: UserId, b: UserId, partition: u32, offsets: &[i64]) -> Vec<RecordedEvent> {
    let mut unused = 0;
    let mut events = messages(
        a,
        b,
        Timestamp::now().millis() - 10_000,
        offsets.len(),
        &mut unused,
    );
    for (e, offset) in events.iter_mut().zip(offsets) {
        e.position = LogPosition {
            partition,
            offset: *offset,
        };
    }
    events
}

fn positions(events: &[RecordedEvent]) -> Vec<(u32, i64)> {
    events
        .iter()
        .map(|e| (e.position.partition, e.position.offset))
        .collect()
}

/// Everything `user` has in `partition` after `after` up to `upto`,
/// `page` at a time.
async fn paged(
    store: &Cql,
    user: UserId,
    partition: u32,
    mut after: Option<i64>,
    upto: i64,
    page: usize,
) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    loop {
        let got = store
            .user_events(user, partition, after, upto, page)
            .await
            .expect("read the feed");
        assert!(got.len() <= page);
        let full = got.len() == page;
        after = got.last().map(|e| e.position.offset).or(after);
        out.extend(got);
        if !full {
            return out;
        }
    }
}

#[tokio::test]
async fn a_backlog_walks_every_bucket_it_spans_and_no_other_partition() {
    let store = store_on(&config("sync_buckets")).await;
    let (a, b) = (UserId::new(), UserId::new());
    let n = SYNC_BUCKET_OFFSETS;
    // Three buckets with empty ones between them, and, in another
    // partition, events at the same offsets.
    let offsets = [3, 4, 2 * n + 1, 2 * n + 2, 2 * n + 3, 7 * n, 7 * n + 9];
    let here = at_offsets(a, b, 4, &offsets);
    let there = at_offsets(a, b, 5, &offsets[..3]);
    store.apply(&there).await.expect("apply");
    store.apply(&here).await.expect("apply");
    store.apply(&here).await.expect("apply again");

    for user in [a, b] {
        let all = paged(&store, user, 4, None, 8 * n, 2).await;
        assert_eq!(all, here, "every event once, in log order");
        let some = paged(&store, user, 4, Some(4), 7 * n, 2).await;
        assert_eq!(
            positions(&some),
            positions(&here[2..6]),
            "after is exclusive, upto inclusive"
        );
        let none = paged(&store, user, 4, Some(7 * n + 9), 9 * n, 2).await;
        assert!(none.is_empty());
    }
    let stranger = paged(&store, UserId::new(), 4, None, 8 * n, 10).await;
    assert!(stranger.is_empty());
}

/// Migration 5 on a keyspace at version 4 (its tables gone again and its
/// record forgotten), and once more with them there, as after a migration
/// cut short before it was recorded.
#[tokio::test]
async fn the_sync_feed_migrates_onto_an_older_keyspace() {
    let config = config("sync_mig");
    drop(store_on(&config).await);
    let s = session(&config).await;
    let ks = &config.keyspace;
    for table in ["user_sync", "user_sync_buckets"] {
        s.query_unpaged(format!("DROP TABLE {ks}.{table}"), ())
            .await
            .expect("drop");
    }
    forget_migrations_from(&s, ks, 5).await;
    assert_eq!(Cql::migrate(&config).await.expect("migrate"), LATEST);
    forget_migrations_from(&s, ks, 1).await;
    assert_eq!(
        Cql::migrate(&config).await.expect("every migration again"),
        LATEST
    );
    let store = store_on(&config).await;
    let (a, b) = (UserId::new(), UserId::new());
    let events = at_offsets(a, b, 0, &[1, 2]);
    store.apply(&events).await.expect("apply");
    assert_eq!(paged(&store, b, 0, None, 2, 10).await, events);
}

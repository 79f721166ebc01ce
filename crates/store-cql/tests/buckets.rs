//! Timelines span 10-day buckets. These drive the store
//! against a real Cassandra with messages stamped in several buckets,
//! which the HTTP suite cannot make: its messages are all sent now.

mod common;

use common::{config, ids, ids_of, messages, store_on};
use parley_domain::{
    ports::{ReadModelWriter, TimelineReader},
    ConversationId, RecordedEvent, Timestamp, UserId,
};
use parley_store_cql::{bucket_of, Cql, BUCKET_MS};

async fn store() -> Cql {
    store_on(&config("buckets")).await
}

/// The first millisecond of the bucket `back` buckets before the current one.
fn bucket_start(back: i64) -> i64 {
    (bucket_of(Timestamp::now().millis()) - back) * BUCKET_MS
}

/// Applies, oldest bucket first, `n` messages between `a` and `b` at the
/// start of each `(back, n)` bucket; the events in log order.
async fn apply_in_buckets(
    store: &Cql,
    (a, b): (UserId, UserId),
    buckets: &[(i64, usize)],
    offset: &mut i64,
) -> Vec<RecordedEvent> {
    let events: Vec<RecordedEvent> = buckets
        .iter()
        .flat_map(|&(back, n)| messages(a, b, bucket_start(back), n, offset))
        .collect();
    store.apply(&events).await.expect("apply");
    events
}

#[tokio::test]
async fn pages_walk_every_bucket_newest_first() {
    let store = store().await;
    let (a, b) = (UserId::new(), UserId::new());
    let mut offset = 0;
    // Three buckets with a gap between the first two: the current one,
    // one two buckets back, and one four back, each with 30 messages.
    let events = apply_in_buckets(&store, (a, b), &[(4, 30), (2, 30), (0, 30)], &mut offset).await;

    let mut want = ids(&events);
    want.reverse();
    let conv = ConversationId::between(a, b);
    let (mut got, mut before) = (Vec::new(), None);
    loop {
        let page = store.page(conv, before, 20).await.expect("page");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 20);
        before = page.last().map(|m| m.id);
        got.extend(page.into_iter().map(|m| m.id));
    }
    assert_eq!(
        got, want,
        "every message once, newest first, across buckets"
    );

    // A page that starts in an empty bucket finds the older ones below it.
    let quiet = (UserId::new(), UserId::new());
    let old = apply_in_buckets(&store, quiet, &[(3, 5)], &mut offset).await;
    let first = store
        .page(ConversationId::between(quiet.0, quiet.1), None, 20)
        .await
        .expect("page");
    let mut want = ids(&old);
    want.reverse();
    assert_eq!(ids_of(&first), want);
}

#[tokio::test]
async fn walks_past_one_read_of_the_bucket_list() {
    let store = store().await;
    let (a, b) = (UserId::new(), UserId::new());
    let mut offset = 0;
    // One message in each of 20 buckets: more than one read of the bucket
    // list returns (16).
    let spread: Vec<(i64, usize)> = (0..20).rev().map(|back| (back, 1)).collect();
    let events = apply_in_buckets(&store, (a, b), &spread, &mut offset).await;
    let all = ids(&events);
    let conv = ConversationId::between(a, b);

    let mut newest_first = all.clone();
    newest_first.reverse();
    let whole = store.page(conv, None, 50).await.expect("page");
    assert_eq!(
        ids_of(&whole),
        newest_first,
        "one page spans all 20 buckets"
    );
    let below = store.page(conv, Some(all[19]), 50).await.expect("page");
    assert_eq!(ids_of(&below), newest_first[1..].to_vec());
}

//! What a message costs the store in writes, counted twice: by Cassandra
//! itself (`system_views.local_write_latency`, one count per partition
//! each table applied) and by Parley's `/metrics` (one request per
//! statement or batch, `parley_cql_request_seconds{statement}`).

mod common;

use std::collections::BTreeMap;

use common::{config, session, store_on};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use parley_domain::{ports::ReadModelWriter, EventId, LogPosition, RecordedEvent, Timestamp};
use parley_projector::scenario::{Script, Step};
use scylla::client::session::Session;

/// Parley's write requests, as `/metrics` names them.
const WRITES: &[&str] = &[
    "timeline_write",
    "bucket_write",
    "markers_write",
    "user_rows_write",
    "directory_write",
];

/// Writes each table of `ks` has applied so far.
async fn cassandra_writes(s: &Session, ks: &str) -> BTreeMap<String, i64> {
    s.query_unpaged(
        "SELECT table_name, count FROM system_views.local_write_latency WHERE keyspace_name = ?",
        (ks,),
    )
    .await
    .expect("read the table metrics")
    .into_rows_result()
    .expect("rows")
    .rows::<(String, i64)>()
    .expect("typed")
    .map(|r| r.expect("row"))
    .collect()
}

/// Write requests so far, by name.
fn parley_writes(metrics: &PrometheusHandle) -> BTreeMap<String, i64> {
    let text = metrics.render();
    let mut out = BTreeMap::new();
    for name in WRITES {
        let key = format!("parley_cql_request_seconds_count{{statement=\"{name}\"}} ");
        let n = text
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        out.insert((*name).to_owned(), n as i64);
    }
    out
}

fn delta(before: &BTreeMap<String, i64>, after: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v != 0)
        .collect()
}

#[tokio::test]
async fn a_message_in_an_existing_conversation_costs_at_most_four_writes() {
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .expect("install a recorder");
    let config = config("writes");
    let store = store_on(&config).await;
    let s = session(&config).await;
    let mut script = Script::new(
        2,
        Timestamp::from_millis(Timestamp::now().millis() - 60_000),
    );
    script.step(Step::Send { from: 0, to: 1 });
    const N: usize = 20;
    for i in 0..N {
        script.step(Step::Send {
            from: i % 2,
            to: (i + 1) % 2,
        });
    }
    let log: Vec<RecordedEvent> = script
        .events()
        .iter()
        .enumerate()
        .map(|(i, e)| RecordedEvent {
            position: LogPosition {
                partition: 0,
                offset: i as i64 + 1,
            },
            id: EventId::new(),
            at: Timestamp::now(),
            event: e.clone(),
        })
        .collect();
    // The first message opens the conversation.
    store.apply(&log[..1]).await.expect("apply");
    let (c0, p0) = (
        cassandra_writes(&s, &config.keyspace).await,
        parley_writes(&metrics),
    );
    // Then one message per batch, as a projector keeping up with a
    // trickle applies them: the most each message can cost.
    for e in &log[1..] {
        store.apply(std::slice::from_ref(e)).await.expect("apply");
    }
    let c = delta(&c0, &cassandra_writes(&s, &config.keyspace).await);
    let p = delta(&p0, &parley_writes(&metrics));
    let per = |m: &BTreeMap<String, i64>| m.values().sum::<i64>() as f64 / N as f64;
    eprintln!(
        "per message: Cassandra {:.2} {c:?}; Parley {:.2} {p:?}",
        per(&c),
        per(&p)
    );
    assert!(per(&c) <= 4.0, "Cassandra counted {c:?} for {N} messages");
    assert!(per(&p) <= 4.0, "Parley sent {p:?} for {N} messages");
    assert_eq!(
        c.get("timeline").copied(),
        Some(N as i64),
        "one timeline write a message: {c:?}"
    );
}

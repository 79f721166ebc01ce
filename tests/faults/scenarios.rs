//! One test per fault. Each starts from a whole cluster, runs the load a
//! few seconds, injects its fault, brings every server back while the load
//! goes on, and then checks the history.

use std::time::Duration;

use tokio::{sync::Mutex, time::Instant};

use crate::{
    checker::check,
    cluster::{self, Server},
    load::Load,
    roles::{Parley, Role},
};

/// How long the load may take to have a send accepted, at its start or
/// once the cluster is whole again: a producer that lost its broker
/// retries for its delivery timeout, and six JVMs share the machine.
const SENDS_RESUME: Duration = Duration::from_secs(60);

/// Whether the load gets past `count` accepted sends in time.
async fn accepted_beyond(load: &Load, count: usize) -> bool {
    let deadline = Instant::now() + SENDS_RESUME;
    while load.accepted() <= count {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// One fault at a time: the cluster is shared.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Conversations under load; each user sends one message per `PACE`.
const PAIRS: usize = 4;
const PACE: Duration = Duration::from_millis(100);
/// Load before the fault and after the cluster is whole again.
const BEFORE: Duration = Duration::from_secs(3);
const AFTER: Duration = Duration::from_secs(3);
/// How long a killed server stays dead under load.
const OUTAGE: Duration = Duration::from_secs(10);

async fn run(fault: &str, pace: Duration, inject: impl AsyncFnOnce(&mut Parley)) {
    let _serial = SERIAL.lock().await;
    cluster::assert_replicated_settings();
    cluster::restore().await;
    let begun = Instant::now();
    let mut parley = Parley::start().await;
    let load = Load::start(&parley, PAIRS, pace).await;
    eprintln!(
        "{fault}: Parley and its clients ready in {:?}",
        begun.elapsed()
    );
    assert!(
        accepted_beyond(&load, 0).await,
        "{fault}: nothing accepted before the fault"
    );
    tokio::time::sleep(BEFORE).await;
    let injected = Instant::now();
    inject(&mut parley).await;
    let healed = load.accepted();
    assert!(
        accepted_beyond(&load, healed).await,
        "{fault}: no send accepted within {SENDS_RESUME:?} once the cluster was whole again"
    );
    tokio::time::sleep(AFTER).await;
    let fault_took = injected.elapsed();
    let (history, t) = load.finish().await;
    let v = check(&history);
    let row = serde_json::json!({
        "fault": fault,
        "accepted": v.accepted,
        "unavailable_ms": t.unavailable.as_millis(),
        "longest_gap_ms": t.longest_gap.as_millis(),
        "failed_attempts": t.failed_attempts,
        "read_lag_ms": t.read_lag.as_millis(),
        "settle_ms": t.settle.as_millis(),
        "lost": v.lost,
        "duplicated": v.duplicated,
        "fault_and_recovery_ms": fault_took.as_millis(),
    });
    eprintln!("fault result: {row}");
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults.jsonl");
    let line = format!("{row}\n");
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&out)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    assert!(
        v.lost == 0 && v.duplicated == 0 && v.problems.is_empty(),
        "{fault}: {} of {} accepted sends lost, {} duplicated; {:#?}",
        v.lost,
        v.accepted,
        v.duplicated,
        v.problems
    );
}

/// A broker that is not the active controller, so this fault is about
/// the data path alone.
fn a_plain_broker() -> u8 {
    let controller = cluster::active_controller();
    [3, 2, 1].into_iter().find(|n| *n != controller).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_killed_during_a_burst() {
    // No pause between sends: as many in flight as the clients can make.
    run(
        "kill -9 of one broker during a burst",
        Duration::ZERO,
        async |_| {
            cluster::kill(Server::Kafka(a_plain_broker())).await;
            tokio::time::sleep(OUTAGE).await;
            cluster::restore().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn active_controller_killed() {
    run("kill -9 of the active KRaft controller", PACE, async |_| {
        cluster::kill(Server::Kafka(cluster::active_controller())).await;
        tokio::time::sleep(OUTAGE).await;
        cluster::restore().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partition_leader_killed() {
    run("kill -9 of a partition leader", PACE, async |p| {
        let leader = cluster::partition_leader(p.topic(), 0).await;
        cluster::kill(Server::Kafka(leader)).await;
        tokio::time::sleep(OUTAGE).await;
        cluster::restore().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cassandra_node_killed() {
    run("kill -9 of one Cassandra node", PACE, async |_| {
        cluster::kill(Server::Cassandra(3)).await;
        tokio::time::sleep(OUTAGE).await;
        cluster::restore().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_and_node_down_at_once() {
    run(
        "one broker and one Cassandra node down at once",
        PACE,
        async |_| {
            cluster::kill(Server::Kafka(a_plain_broker())).await;
            cluster::kill(Server::Cassandra(2)).await;
            tokio::time::sleep(OUTAGE).await;
            cluster::restore().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restart_of_every_role() {
    run("rolling restart of every Parley role", PACE, async |p| {
        p.rolling_restart().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projector_killed_while_a_node_is_down() {
    run(
        "projector killed while a Cassandra node is down",
        PACE,
        async |p| {
            cluster::kill(Server::Cassandra(1)).await;
            tokio::time::sleep(Duration::from_secs(3)).await;
            p.kill_and_replace(Role::Projector).await;
            tokio::time::sleep(OUTAGE).await;
            cluster::restore().await;
        },
    )
    .await;
}

//! `parley-bench projection`: appends N events through the real append
//! path, then times the projector catching up on them and a full replay.
//! It runs in-process against the backend its flags name (use a fresh
//! data dir or keyspace), because replay needs the read models to itself.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::Context;
use futures_util::{stream, StreamExt};
use parley_bench::Report;
use parley_domain::{commands::SendMessage, ports::PROJECTOR_GROUP, UserId};
use parley_projector::Projector;
use tokio_util::sync::CancellationToken;

use parley::{
    backend,
    backend::Ports,
    cli::{Backend, BackendArgs},
};

/// Appends in flight at once (the log batches them).
const IN_FLIGHT: usize = 512;

pub async fn run(
    b: &BackendArgs,
    events: u64,
    conversations: u64,
    json: bool,
) -> anyhow::Result<()> {
    let ports = match b.backend {
        Backend::Embedded => Ports::embedded(&backend::open_embedded(b)?),
        Backend::Cluster => {
            backend::migrate(b).await?;
            Ports::cluster(b)
                .await
                .context("cannot reach Kafka and the CQL store")?
        }
    };
    let users: Vec<UserId> = (0..conversations.max(1) * 2)
        .map(|_| UserId::new())
        .collect();
    eprintln!("appending {events} events...");
    let done = AtomicU64::new(0);
    let started = Instant::now();
    let failures = stream::iter(0..events)
        .map(|i| {
            let pair = (i % conversations.max(1)) as usize * 2;
            let (from, to) = if i % 2 == 0 {
                (users[pair], users[pair + 1])
            } else {
                (users[pair + 1], users[pair])
            };
            let (ports, done) = (&ports, &done);
            async move {
                let cmd =
                    SendMessage::decide(from, &to.to_string(), format!("projection {i}"), None)
                        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                ports.appender.append(cmd.into_pending()).await?;
                let k = done.fetch_add(1, Ordering::Relaxed) + 1;
                if k % 100_000 == 0 {
                    eprintln!("{k}/{events} appended");
                }
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .filter(|r| std::future::ready(r.is_err()))
        .count()
        .await;
    let append_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(failures == 0, "{failures} appends failed");

    // The projector, as it runs in production, catching up on the backlog.
    eprintln!("projecting...");
    let end = ports.log.latest().await?;
    let projector = Projector {
        log: ports.log.clone(),
        writer: ports.writer.clone(),
    };
    let stop = CancellationToken::new();
    let live = {
        let (p, stop) = (projector.clone(), stop.clone());
        tokio::spawn(async move { p.run(stop).await })
    };
    let started = Instant::now();
    loop {
        // A fresh Kafka answers "not coordinator" for a moment while it
        // loads its offsets topic; only a lasting failure ends the run.
        match ports.log.committed(PROJECTOR_GROUP).await {
            Ok(w) if w.covers_all(&end) => break,
            Ok(_) => {}
            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                tracing::debug!(error = %e, "projector position not readable yet");
            }
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let project_secs = started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = live.await;

    eprintln!("replaying...");
    let started = Instant::now();
    let replayed = projector.replay().await.context("replay failed")?;
    let replay_secs = started.elapsed().as_secs_f64();
    ports.close(Duration::from_secs(5)).await;

    let mut r = Report::default();
    r.count("events", "events appended", events);
    r.number(
        "append_per_sec",
        "append rate (durable)",
        events as f64 / append_secs,
        "events/s",
    );
    r.number(
        "project_per_sec",
        "projector catching up",
        events as f64 / project_secs,
        "events/s",
    );
    r.count("replayed", "events replayed (whole log)", replayed);
    r.number("replay_secs", "replay wall time", replay_secs, "s");
    r.number(
        "replay_per_sec",
        "replay rate",
        replayed as f64 / replay_secs,
        "events/s",
    );
    r.print("projection", json);
    Ok(())
}

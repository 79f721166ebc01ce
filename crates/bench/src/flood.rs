//! Login flood: many clients trying wrong passwords as fast as they are
//! answered (ignoring Retry-After, as an attacker would), while another
//! user's requests are timed; the same requests are first timed without
//! the flood. What it shows: whether password hashing, its queue and the
//! rate limits keep one client's flood from everyone else, and what the
//! flood costs the server in memory.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::Context;
use hdrhistogram::Histogram;

use crate::{
    client::{Target, User},
    report::{histogram, Report},
};

pub async fn run(
    target: &Target,
    run_id: &str,
    clients: usize,
    seconds: u64,
    rate: f64,
) -> anyhow::Result<Report> {
    let victim = format!("bench_{run_id}_victim");
    target.register(&victim).await?;
    let me = target.register(&format!("bench_{run_id}_other")).await?;
    let peer = target.register(&format!("bench_{run_id}_peer")).await?;
    let phase = Duration::from_secs(seconds);
    // The other user is another client: its own connections, never one
    // a flood client is waiting on.
    let other = Target::new(&target.url, &target.ws, target.source_ips)?;

    eprintln!("timing another user's requests for {seconds}s without a flood...");
    let (idle, idle_failed) = timed(&other, &me, &peer, rate, phase).await;
    let rss_before = target
        .metric(&target.url, "parley_process_resident_bytes")
        .await?;

    eprintln!("{clients} clients flood login for {seconds}s...");
    let until = tokio::time::Instant::now() + phase;
    let flooders: Vec<_> = (0..clients)
        .map(|i| {
            let (target, victim) = (target.clone(), victim.clone());
            tokio::spawn(async move {
                let body = format!(r#"{{"username":"{victim}","password":"wrong guess {i}"}}"#);
                let mut statuses = BTreeMap::<u16, u64>::new();
                while tokio::time::Instant::now() < until {
                    let status = match target.hot.post_public("/v1/auth/login", &body).await {
                        Ok(a) => a.status,
                        Err(_) => 0,
                    };
                    *statuses.entry(status).or_default() += 1;
                }
                statuses
            })
        })
        .collect();
    let sampler = {
        let target = target.clone();
        tokio::spawn(async move {
            let mut peak = 0.0f64;
            while tokio::time::Instant::now() < until {
                if let Ok(rss) = target
                    .metric(&target.url, "parley_process_resident_bytes")
                    .await
                {
                    peak = peak.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            peak
        })
    };
    let (flooded, flooded_failed) = timed(&other, &me, &peer, rate, phase).await;
    let mut statuses = BTreeMap::<u16, u64>::new();
    for f in flooders {
        for (k, v) in f.await.context("a flood client panicked")? {
            *statuses.entry(k).or_default() += v;
        }
    }
    let rss_peak = sampler
        .await
        .context("the RSS sampler panicked")?
        .max(rss_before);

    let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99) as f64 / 1000.0;
    let mut r = Report::default();
    r.latency("idle", "other user's requests, no flood", &idle);
    r.latency("flood", "other user's requests, during the flood", &flooded);
    r.number(
        "p99_ratio",
        "p99 during the flood ÷ without",
        p99(&flooded) / p99(&idle).max(0.001),
        "×",
    );
    r.count(
        "other_failed",
        "other user's requests not answered 2xx",
        idle_failed + flooded_failed,
    );
    r.statuses("flood_statuses", "flood answers by status", &statuses);
    r.number(
        "rss_before_mib",
        "server RSS before the flood",
        rss_before / 1048576.0,
        "MiB",
    );
    r.number(
        "rss_growth_mib",
        "server RSS growth at the flood's peak",
        (rss_peak - rss_before) / 1048576.0,
        "MiB",
    );
    r.count("clients", "flood clients", clients as u64);
    Ok(r)
}

/// Another user's requests at `rate` per second for `length`: a send, then
/// a page of that conversation's history, alternately. Their round trips,
/// and how many were not answered 2xx.
async fn timed(
    target: &Target,
    me: &User,
    peer: &User,
    rate: f64,
    length: Duration,
) -> (Histogram<u64>, u64) {
    let mut h = histogram();
    let mut failed = 0;
    let started = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let history = format!("/v1/conversations/{}/messages?limit=20", peer.id);
    let mut i = 0u64;
    while started.elapsed() < length {
        let t = Instant::now();
        let ok = if i.is_multiple_of(2) {
            target.send(me, peer, &format!("o{i}"), false).await.0 == 202
        } else {
            matches!(target.hot.get(&history, &me.token).await, Ok(a) if a.status == 200)
        };
        let _ = h.record((t.elapsed().as_micros() as u64).max(1));
        failed += u64::from(!ok);
        i += 1;
        let next = started + gap * i as u32;
        tokio::time::sleep(next.saturating_duration_since(Instant::now())).await;
    }
    (h, failed)
}

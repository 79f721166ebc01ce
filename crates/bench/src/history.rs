//! History pages: does a page cost the same in a 1 M-message conversation
//! as in a 1 k one, and how many pages/s can be read?

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use futures_util::{stream, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;

use crate::{
    client::{Target, User},
    report::{histogram, Progress, Report},
};

const PAGE: usize = 50;

pub async fn run(
    target: &Target,
    run_id: &str,
    messages: usize,
    small: usize,
    concurrency: usize,
    read_seconds: u64,
) -> anyhow::Result<Report> {
    let u = crate::users(target, run_id, 4).await?;
    let (big, tiny) = ((&u[0], &u[1]), (&u[2], &u[3]));
    let seeded = Instant::now();
    seed(target, [(big, messages), (tiny, small)]).await?;
    let seed_secs = seeded.elapsed().as_secs_f64();

    // Both conversations are read once before the measured walks, so the
    // ratio compares sizes under the same cache conditions: otherwise the
    // big conversation's only walk would meet every page cold while the
    // small one's repeated walks meet them warm.
    eprintln!("warming: one walk of each conversation...");
    walk(target, big, &mut histogram()).await?;
    walk(target, tiny, &mut histogram()).await?;
    eprintln!("walking the {messages}-message conversation...");
    let mut big_pages = histogram();
    let cursors = walk(target, big, &mut big_pages).await?;
    eprintln!("walking the {small}-message conversation...");
    let mut small_pages = histogram();
    let walks = (big_pages.len() / (small / PAGE).max(1) as u64).clamp(1, 200);
    for _ in 0..walks {
        walk(target, tiny, &mut small_pages).await?;
    }

    eprintln!("reading random pages on {concurrency} connections for {read_seconds}s...");
    let (reads, read_latency, read_secs) =
        random_reads(target, big, &cursors, concurrency, read_seconds).await?;

    let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99) as f64;
    let mut r = Report::default();
    r.count(
        "messages",
        "messages in the big conversation",
        messages as u64,
    );
    r.number(
        "seed_per_sec",
        "seeding rate (HTTP sends)",
        (messages + small) as f64 / seed_secs,
        "msg/s",
    );
    r.latency(
        "big_page",
        &format!("page of {PAGE}, {messages}-message conversation"),
        &big_pages,
    );
    r.latency(
        "small_page",
        &format!("page of {PAGE}, {small}-message conversation"),
        &small_pages,
    );
    r.number(
        "p99_ratio",
        "p99 ratio big ÷ small",
        p99(&big_pages) / p99(&small_pages).max(1.0),
        "",
    );
    r.number(
        "pages_per_sec",
        "random page reads",
        reads as f64 / read_secs,
        "pages/s",
    );
    r.latency("read", "random page read", &read_latency);
    Ok(r)
}

/// Sends each conversation's messages (alternating direction) through the
/// real append path, then waits until the newest of each is readable. The
/// small conversation's messages are spread evenly among the big one's, as
/// a real conversation's are spread over time: seeded in one burst after
/// the big one, it would sit in one place of the store (one SSTable on
/// Cassandra) while the big one spans many, and the ratio would measure
/// that rather than the conversations' sizes.
async fn seed(target: &Target, convs: [((&User, &User), usize); 2]) -> anyhow::Result<()> {
    let [(big, n_big), (small, n_small)] = convs;
    let n = n_big + n_small;
    eprintln!("seeding {n_big} + {n_small} messages...");
    let done = AtomicU64::new(0);
    let progress = std::sync::Mutex::new(Progress::default());
    let newest = [
        std::sync::Mutex::new(None::<uuid::Uuid>),
        std::sync::Mutex::new(None::<uuid::Uuid>),
    ];
    let failures = AtomicU64::new(0);
    stream::iter(0..n)
        .for_each_concurrent(64, |i| {
            // Message i is the small conversation's when it crosses the next
            // multiple of n / n_small.
            let c = usize::from((i + 1) * n_small / n > i * n_small / n);
            let (a, b) = if c == 1 { small } else { big };
            let (from, to) = if i % 2 == 0 { (a, b) } else { (b, a) };
            let (done, progress, newest, failures) = (&done, &progress, &newest[c], &failures);
            async move {
                let (status, id) = target.send(from, to, &format!("history{i}"), true).await;
                if status != 202 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                if let (Some(id), Ok(mut m)) = (
                    id.and_then(|s| uuid::Uuid::parse_str(&s).ok()),
                    newest.lock(),
                ) {
                    *m = (*m).max(Some(id));
                }
                let k = done.fetch_add(1, Ordering::Relaxed) + 1;
                if let Ok(mut p) = progress.lock() {
                    p.tick(|| format!("{k}/{n} sent"));
                }
            }
        })
        .await;
    let failed = failures.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} of {n} seeding sends failed");
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    for ((a, b), newest) in [big, small].into_iter().zip(&newest) {
        let newest = newest
            .lock()
            .ok()
            .and_then(|m| *m)
            .context("nothing was sent")?
            .to_string();
        loop {
            let page = get_page(target, a, b, None).await?.1;
            if page.messages.first().map(|m| m.id.as_str()) == Some(newest.as_str()) {
                break;
            }
            if Instant::now() > deadline {
                bail!("the newest message never became readable");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// What the bench needs from a page; the messages themselves are checked
/// for shape but not kept, so the load generator spends its CPU on
/// requests rather than on building JSON trees.
#[derive(Deserialize)]
struct Page {
    messages: Vec<PageMessage>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct PageMessage {
    id: String,
}

/// How long after `since` the message `id` first shows in the newest page
/// of `me`'s conversation with `peer`, polled every 20 ms; `None` when it
/// has not shown within `cap`. A push reaches the recipient without the
/// read models, so this is what tells whether they keep up with the rate.
/// A caller that starts polling late gets an upper bound: the latency mode
/// asks once every push is in, so a shorter lag shows as that wait.
pub(crate) async fn shown_after(
    target: &Target,
    (me, peer): (&User, &User),
    id: &str,
    since: Instant,
    cap: Duration,
) -> anyhow::Result<Option<Duration>> {
    loop {
        let page = get_page(target, me, peer, None).await?.1;
        if page.messages.iter().any(|m| m.id == id) {
            return Ok(Some(since.elapsed()));
        }
        if since.elapsed() >= cap {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One history page; the time is taken when the whole body has arrived.
async fn get_page(
    target: &Target,
    me: &User,
    peer: &User,
    before: Option<&str>,
) -> anyhow::Result<(Duration, Page)> {
    let mut path = format!("/v1/conversations/{}/messages?limit={PAGE}", peer.id);
    if let Some(c) = before {
        path.push_str("&before=");
        path.push_str(c);
    }
    let t = Instant::now();
    let r = target.hot.get(&path, &me.token).await?;
    let took = t.elapsed();
    let body = r.body;
    if r.status != 200 {
        bail!(
            "history page: {} {}",
            r.status,
            String::from_utf8_lossy(&body)
        );
    }
    Ok((took, serde_json::from_slice(&body)?))
}

/// Reads the whole conversation newest first, one page at a time; returns
/// every cursor it was given.
async fn walk(
    target: &Target,
    (a, b): (&User, &User),
    h: &mut Histogram<u64>,
) -> anyhow::Result<Vec<String>> {
    let (mut cursor, mut cursors) = (None::<String>, Vec::new());
    let mut progress = Progress::default();
    loop {
        let (took, page) = get_page(target, a, b, cursor.as_deref()).await?;
        let _ = h.record((took.as_micros() as u64).max(1));
        match page.next_cursor {
            Some(c) => {
                cursors.push(c.clone());
                cursor = Some(c);
            }
            None => return Ok(cursors),
        }
        progress.tick(|| format!("{} pages read", cursors.len()));
    }
}

async fn random_reads(
    target: &Target,
    (a, b): (&User, &User),
    cursors: &[String],
    concurrency: usize,
    seconds: u64,
) -> anyhow::Result<(u64, Histogram<u64>, f64)> {
    if cursors.is_empty() {
        bail!("no cursors to read from: the conversation has a single page");
    }
    let cursors = Arc::new(cursors.to_vec());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers = (0..concurrency).map(|_| {
        let (target, cursors, a, b) = (target.clone(), cursors.clone(), a.clone(), b.clone());
        tokio::spawn(async move {
            let (mut h, mut n) = (histogram(), 0u64);
            while Instant::now() < deadline {
                let c = &cursors[fastrand::usize(..cursors.len())];
                let (took, _) = get_page(&target, &a, &b, Some(c)).await?;
                let _ = h.record((took.as_micros() as u64).max(1));
                n += 1;
            }
            Ok::<_, anyhow::Error>((n, h))
        })
    });
    let (mut total, mut all) = (0, histogram());
    for w in futures_util::future::join_all(workers).await {
        let (n, h) = w??;
        total += n;
        all.add(h)?;
    }
    Ok((total, all, started.elapsed().as_secs_f64()))
}

//! Parley's load generator, the API modes of the `parley-bench` binary. It
//! drives a running Parley only through its public HTTP and WebSocket API,
//! as clients would, and prints what it measured (a table, or `--json`).
//! Progress goes to stderr. The server binary does not link it.

mod client;
mod flood;
mod history;
mod http1;
mod latency;
mod reconnect;
mod report;

use std::{sync::Arc, time::Duration};

use anyhow::bail;
use clap::{Args, Subcommand};

use client::Target;
use latency::{Listeners, StepPlan};
pub use report::Report;
use report::{histogram, Progress};

/// Where the load goes and how the result is printed: flags of every mode.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// command-api and query-api base URL (or `parley dev`'s).
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// ws-push base URLs, comma-separated (default: --url). Sockets are
    /// spread over them.
    #[arg(long, global = true, value_delimiter = ',')]
    pub ws: Vec<String>,
    /// Sockets bind 127.0.0.1 ..= 127.0.0.N in turn.
    #[arg(long, global = true, default_value_t = 16)]
    pub source_ips: u8,
    /// Print one JSON object instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Mode {
    /// Closed loop: as many accepted sends/s as `concurrency` keep-alive
    /// connections get.
    Throughput {
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 100)]
        users: usize,
    },
    /// Open loop at a fixed rate with many sockets: send → push latency,
    /// drops and duplicates, and how long after it was accepted the last
    /// send showed in history (whether the read models kept up).
    Latency {
        #[arg(long, default_value_t = 2000.0)]
        rate: f64,
        #[arg(long, default_value_t = 10_000)]
        sockets: usize,
        #[arg(long, default_value_t = 1000)]
        users: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Seconds at the start left out of the latency histogram.
        #[arg(long, default_value_t = 5)]
        warmup: u64,
    },
    /// Open-loop steps of growing rate until send → push p99 passes the
    /// bound (or sends fail or are dropped); reports the highest rate that
    /// held.
    Saturate {
        #[arg(long, default_value_t = 1000.0)]
        start_rate: f64,
        #[arg(long, default_value_t = 1.25)]
        factor: f64,
        #[arg(long, default_value_t = 40_000.0)]
        max_rate: f64,
        #[arg(long, default_value_t = 10)]
        step_seconds: u64,
        #[arg(long, default_value_t = 50.0)]
        p99_ms: f64,
        #[arg(long, default_value_t = 1000)]
        sockets: usize,
        #[arg(long, default_value_t = 200)]
        users: usize,
        /// Seconds of unmeasured sending at the start rate before the first
        /// step: right after registering, the server is still settling, and
        /// a first step measured then would report the settling, not the
        /// rate.
        #[arg(long, default_value_t = 10)]
        warmup: u64,
    },
    /// Seeds one conversation with `messages` messages (and one with 1,000),
    /// walks both page by page, then reads random pages at `concurrency`.
    History {
        #[arg(long, default_value_t = 1_000_000)]
        messages: usize,
        #[arg(long, default_value_t = 1000)]
        small: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        read_seconds: u64,
    },
    /// Reconnect storm: sockets on a ws-push instance (--ws) that
    /// `--restart-cmd` restarts; messages sent through --url while it is
    /// down; every socket reconnects with the `seq` it last processed.
    Reconnect {
        #[arg(long, default_value_t = 20_000)]
        sockets: usize,
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// Shell command that restarts the ws-push instance and returns.
        #[arg(long)]
        restart_cmd: String,
    },
    /// Clients try wrong passwords as fast as they are answered while
    /// another user's sends and history pages are timed (and first timed
    /// without the flood); reports both p99s and the server's RSS growth.
    LoginFlood {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Length of each phase (without, then with the flood).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The other user's requests per second.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
    },
    /// Opens as many idle authenticated sockets as asked (or as the
    /// machine allows) and reports the server's memory per socket.
    Sockets {
        #[arg(long, default_value_t = 10_000)]
        sockets: usize,
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// Seconds to keep the sockets open after measuring, so several
        /// load generators (one process holds at most ~19,900 sockets)
        /// can hold theirs at the same time.
        #[arg(long, default_value_t = 0)]
        hold: u64,
    },
}

pub async fn run(mode: Mode, args: &BenchArgs) -> anyhow::Result<()> {
    let target = Target::new(&args.url, &args.ws, args.source_ips)?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..6].to_owned();
    let (name, report) = match mode {
        Mode::Throughput {
            concurrency,
            seconds,
            users,
        } => (
            "throughput",
            throughput(&target, &run_id, concurrency, seconds, users).await?,
        ),
        Mode::Latency {
            rate,
            sockets,
            users,
            seconds,
            warmup,
        } => (
            "latency",
            latency(&target, &run_id, rate, sockets, users, seconds, warmup).await?,
        ),
        Mode::Saturate {
            start_rate,
            factor,
            max_rate,
            step_seconds,
            p99_ms,
            sockets,
            users,
            warmup,
        } => (
            "saturate",
            saturate(
                &target,
                &run_id,
                start_rate,
                factor,
                max_rate,
                step_seconds,
                p99_ms,
                sockets,
                users,
                warmup,
            )
            .await?,
        ),
        Mode::History {
            messages,
            small,
            concurrency,
            read_seconds,
        } => (
            "history",
            history::run(&target, &run_id, messages, small, concurrency, read_seconds).await?,
        ),
        Mode::Reconnect {
            sockets,
            users,
            restart_cmd,
        } => (
            "reconnect",
            reconnect::run(&target, &run_id, sockets, users, &restart_cmd).await?,
        ),
        Mode::LoginFlood {
            clients,
            seconds,
            rate,
        } => (
            "login-flood",
            flood::run(&target, &run_id, clients, seconds, rate).await?,
        ),
        Mode::Sockets {
            sockets,
            users,
            hold,
        } => (
            "sockets",
            idle_sockets(&target, &run_id, sockets, users, hold).await?,
        ),
    };
    report.print(name, args.json);
    Ok(())
}

async fn users(target: &Target, run_id: &str, n: usize) -> anyhow::Result<Arc<Vec<client::User>>> {
    if n < 2 {
        bail!("at least 2 users are needed");
    }
    eprintln!("registering {n} users...");
    Ok(Arc::new(target.register_users(run_id, n).await?))
}

async fn open_sockets(
    target: &Target,
    users: &[client::User],
    n: usize,
) -> anyhow::Result<Vec<(usize, client::Socket)>> {
    eprintln!("opening {n} sockets...");
    let progress = std::sync::Mutex::new(Progress::default());
    let opened = std::sync::atomic::AtomicUsize::new(0);
    target
        .sockets(users, n, 64, |_| {
            let k = opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if let Ok(mut p) = progress.lock() {
                p.tick(|| format!("{k}/{n} sockets open"));
            }
        })
        .await
}

async fn throughput(
    target: &Target,
    run_id: &str,
    concurrency: usize,
    seconds: u64,
    n_users: usize,
) -> anyhow::Result<Report> {
    let users = users(target, run_id, n_users).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    eprintln!("sending for {seconds}s on {concurrency} connections...");
    let started = std::time::Instant::now();
    let workers = (0..concurrency).map(|_| {
        let (target, users) = (target.clone(), users.clone());
        tokio::spawn(async move {
            let (mut h, mut statuses, mut accepted) =
                (histogram(), std::collections::BTreeMap::new(), 0u64);
            let mut i = 0u64;
            while tokio::time::Instant::now() < deadline {
                let from = fastrand::usize(..users.len());
                let to = (from + 1 + fastrand::usize(..users.len() - 1)) % users.len();
                let t = std::time::Instant::now();
                let (status, _, wait) = target
                    .send_full(&users[from], &users[to], &format!("t{i}"), false)
                    .await;
                let _ = h.record((t.elapsed().as_micros() as u64).max(1));
                *statuses.entry(status).or_insert(0u64) += 1;
                accepted += u64::from(status == 202);
                i += 1;
                // A closed loop waits as told rather than hammer a server
                // that limits or sheds load; the refusals are counted.
                if let (429 | 503, Some(wait)) = (status, wait) {
                    tokio::time::sleep(wait.min(deadline - tokio::time::Instant::now())).await;
                }
            }
            (h, statuses, accepted)
        })
    });
    let (mut h, mut statuses, mut accepted) =
        (histogram(), std::collections::BTreeMap::new(), 0u64);
    for w in futures_util::future::join_all(workers).await {
        let (wh, ws, wa) = w?;
        h.add(wh)?;
        for (k, v) in ws {
            *statuses.entry(k).or_insert(0) += v;
        }
        accepted += wa;
    }
    let secs = started.elapsed().as_secs_f64();
    let mut r = Report::default();
    r.number(
        "accepted_per_sec",
        "accepted durable sends/s",
        accepted as f64 / secs,
        "/s",
    );
    r.count("accepted", "accepted sends", accepted);
    r.statuses("statuses", "answers by status", &statuses);
    refusal_rows(&mut r, &statuses);
    r.latency("http", "send round trip", &h);
    r.count("concurrency", "connections", concurrency as u64);
    Ok(r)
}

#[allow(clippy::too_many_arguments)]
async fn latency(
    target: &Target,
    run_id: &str,
    rate: f64,
    sockets: usize,
    n_users: usize,
    seconds: u64,
    warmup: u64,
) -> anyhow::Result<Report> {
    let users = users(target, run_id, n_users).await?;
    let listeners = Listeners::start(&users, open_sockets(target, &users, sockets).await?);
    eprintln!("sending {rate}/s for {seconds}s (first {warmup}s are warm-up)...");
    let s = listeners
        .step(
            target,
            &users,
            StepPlan {
                step: 0,
                rate,
                duration: Duration::from_secs(seconds),
                warmup: Duration::from_secs(warmup),
                grace: Duration::from_secs(10),
            },
        )
        .await;
    listeners.stop();
    let mut r = Report::default();
    step_rows(&mut r, &s, sockets);
    history_row(&mut r, target, &users, s.last.as_ref()).await;
    Ok(r)
}

/// How soon the last send showed in history. Every figure above is
/// measured by now, so a history that cannot be read (a `--url` that serves
/// only the command API, a store that is down) is said in this row instead
/// of discarding the run; the JSON has `null`.
async fn history_row(
    r: &mut Report,
    target: &Target,
    users: &[client::User],
    last: Option<&latency::Last>,
) {
    let (key, label) = ("history_lag_ms", "last send shown in history within");
    let Some(last) = last else {
        return r.add(
            key,
            label,
            serde_json::Value::Null,
            "no send accepted".into(),
        );
    };
    let pair = (&users[last.from], &users[last.to]);
    let cap = Duration::from_secs(HISTORY_CAP_SECS);
    let why = match history::shown_after(target, pair, &last.id, last.accepted_at, cap).await {
        Ok(Some(d)) => return r.number(key, label, d.as_secs_f64() * 1000.0, "ms"),
        Ok(None) => format!("not within {HISTORY_CAP_SECS} s"),
        Err(e) => format!("not read: {e:#}"),
    };
    eprintln!("last send in history: {why}");
    r.add(key, label, serde_json::Value::Null, why);
}

/// How long a latency run waits for its last send to reach history. The
/// read models of a system that cannot keep up with the rate are minutes
/// behind by the end of a run, and "not within" says so.
const HISTORY_CAP_SECS: u64 = 60;

fn step_rows(r: &mut Report, s: &latency::Step, sockets: usize) {
    r.number("rate", "offered rate", s.rate, "msg/s");
    r.number("achieved_rate", "sends issued", s.achieved_rate, "msg/s");
    r.count("sockets", "sockets", sockets as u64);
    r.count("offered", "sends offered", s.offered);
    r.count("accepted", "sends accepted (202)", s.accepted);
    r.statuses("statuses", "answers by status", &s.statuses);
    refusal_rows(r, &s.statuses);
    r.latency("push", "send → push (recipient sockets)", &s.push);
    r.latency("http", "send round trip", &s.http);
    r.count("drops", "accepted but never pushed", s.drops);
    r.count("duplicates", "pushed twice to one socket", s.duplicates);
}

/// Sends the server refused as too many (429) or shed as busy (503): a
/// run with either measured the server's limits, not its speed.
fn refusal_rows(r: &mut Report, statuses: &std::collections::BTreeMap<u16, u64>) {
    let n = |s| statuses.get(&s).copied().unwrap_or(0);
    r.count("rate_limited", "refused as too many (429)", n(429));
    r.count("busy", "shed as busy (503)", n(503));
}

#[allow(clippy::too_many_arguments)]
async fn saturate(
    target: &Target,
    run_id: &str,
    start_rate: f64,
    factor: f64,
    max_rate: f64,
    step_seconds: u64,
    p99_ms: f64,
    sockets: usize,
    n_users: usize,
    warmup: u64,
) -> anyhow::Result<Report> {
    let users = users(target, run_id, n_users).await?;
    let listeners = Listeners::start(&users, open_sockets(target, &users, sockets).await?);
    if warmup > 0 {
        eprintln!("warming up at {start_rate:.0}/s for {warmup}s...");
        let all = Duration::from_secs(warmup);
        let plan = StepPlan {
            step: 0,
            rate: start_rate,
            duration: all,
            warmup: all,
            grace: Duration::from_secs(1),
        };
        listeners.step(target, &users, plan).await;
    }
    let (mut rate, mut best, mut step, mut steps) = (start_rate, None::<f64>, 1u32, Vec::new());
    while rate <= max_rate {
        let s = listeners
            .step(
                target,
                &users,
                StepPlan {
                    step,
                    rate,
                    duration: Duration::from_secs(step_seconds),
                    warmup: Duration::from_secs(2.min(step_seconds / 2)),
                    grace: Duration::from_secs(5),
                },
            )
            .await;
        let p99 = s.push.value_at_quantile(0.99) as f64 / 1000.0;
        let held = s.accepted == s.offered
            && s.drops == 0
            && p99 <= p99_ms
            && s.achieved_rate >= 0.95 * rate;
        eprintln!(
            "step {step}: {rate:.0}/s offered, {} accepted, p99 {p99:.2} ms, {} dropped: {}",
            s.accepted,
            s.drops,
            if held { "held" } else { "did not hold" }
        );
        let n = |code| s.statuses.get(&code).copied().unwrap_or(0);
        steps.push(serde_json::json!({
            "rate": rate, "accepted": s.accepted, "offered": s.offered, "p99_ms": p99,
            "drops": s.drops, "held": held, "rate_limited": n(429), "busy": n(503),
        }));
        if !held {
            break;
        }
        best = Some(rate);
        rate *= factor;
        step += 1;
    }
    listeners.stop();
    let mut r = Report::default();
    r.number("p99_bound_ms", "p99 bound", p99_ms, "ms");
    r.number(
        "best_rate",
        "highest rate that held",
        best.unwrap_or(0.0),
        "msg/s",
    );
    r.add(
        "steps",
        "steps",
        serde_json::json!(steps),
        format!("{} (see --json)", steps.len()),
    );
    r.count("sockets", "sockets", sockets as u64);
    Ok(r)
}

async fn idle_sockets(
    target: &Target,
    run_id: &str,
    n: usize,
    n_users: usize,
    hold: u64,
) -> anyhow::Result<Report> {
    let users = users(target, run_id, n_users.clamp(2, n.max(2))).await?;
    let rss = |t: Target| async move {
        let mut sum = 0.0;
        for base in &t.ws {
            sum += t.metric(base, "parley_process_resident_bytes").await?;
        }
        Ok::<f64, anyhow::Error>(sum)
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss(target.clone()).await?;
    let mut open = Vec::with_capacity(n);
    let mut failed = None;
    let mut progress = Progress::default();
    for (i, u) in (0..n).map(|i| (i, &users[i % users.len()])) {
        match target.socket(u).await {
            Ok(s) => open.push(s),
            Err(e) => {
                failed = Some(format!("socket {i}: {e}"));
                break;
            }
        }
        progress.tick(|| format!("{}/{n} sockets open", open.len()));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss(target.clone()).await?;
    let mut server_sockets = 0.0;
    for base in &target.ws {
        server_sockets += target
            .metric(base, "parley_ws_sockets")
            .await
            .unwrap_or(0.0);
    }
    let mut r = Report::default();
    r.count("opened", "idle authenticated sockets", open.len() as u64);
    r.number(
        "server_sockets",
        "sockets the server counts",
        server_sockets,
        "",
    );
    r.number(
        "rss_before_mib",
        "server RSS before",
        before / 1048576.0,
        "MiB",
    );
    r.number(
        "rss_after_mib",
        "server RSS with sockets",
        after / 1048576.0,
        "MiB",
    );
    let per = if open.is_empty() {
        0.0
    } else {
        (after - before) / open.len() as f64 / 1024.0
    };
    r.number("kib_per_socket", "server RSS per socket", per, "KiB");
    r.add(
        "stopped_by",
        "stopped by",
        serde_json::json!(failed),
        failed
            .clone()
            .unwrap_or_else(|| "nothing (all opened)".into()),
    );
    if hold > 0 {
        eprintln!("holding {} sockets for {hold} s", open.len());
        tokio::time::sleep(Duration::from_secs(hold)).await;
    }
    for s in open {
        client::close(s).await;
    }
    Ok(r)
}

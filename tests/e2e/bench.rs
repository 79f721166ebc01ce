//! A short run of every load-generator mode against a real server, so the
//! tool keeps working. Tiny numbers, no timing assertions: each run must
//! finish, account for every send, and lose nothing.

use serde_json::Value;

use crate::helpers::{bench_binary, migrate, Deployment, Process};

async fn bench(url: &str, args: &[&str]) -> Value {
    let out = tokio::process::Command::new(bench_binary())
        .args(["--json", "--url", url, "--source-ips", "4"])
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "bench {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bench {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[tokio::test]
async fn every_bench_mode_runs_and_accounts_for_every_send() {
    let d = Deployment::new();
    let p = Process::start(&d).await;
    let url = format!("http://{}", p.addr);
    p.client().await;

    let t = bench(
        &url,
        &[
            "throughput",
            "--seconds",
            "1",
            "--users",
            "4",
            "--concurrency",
            "4",
        ],
    )
    .await;
    assert!(t["accepted"].as_u64().unwrap() > 0, "{t}");
    assert_eq!(t["statuses"]["202"], t["accepted"], "{t}");

    let l = bench(
        &url,
        &[
            "latency",
            "--rate",
            "50",
            "--sockets",
            "20",
            "--users",
            "5",
            "--seconds",
            "2",
            "--warmup",
            "1",
        ],
    )
    .await;
    // Warm-up sends are offered, accepted and checked for drops too.
    assert_eq!(l["offered"], 100, "{l}");
    assert_eq!(l["accepted"], 100, "{l}");
    assert_eq!(l["drops"], 0, "{l}");
    assert_eq!(l["duplicates"], 0, "{l}");
    // The histograms leave out the same first second (sends 0..50 by
    // their intended time): 50 round trips, and the 4 pushes to the
    // recipient's sockets of each.
    assert_eq!(l["http"]["count"], 50, "{l}");
    assert_eq!(l["push"]["count"], 200, "{l}");
    // At 50 sends/s the read models keep up: the last send reaches history.
    assert!(l["history_lag_ms"].as_f64().is_some(), "{l}");

    let s = bench(
        &url,
        &[
            "saturate",
            "--start-rate",
            "20",
            "--factor",
            "2",
            "--max-rate",
            "40",
            "--step-seconds",
            "1",
            "--sockets",
            "10",
            "--users",
            "5",
            "--p99-ms",
            "60000",
            "--warmup",
            "1",
        ],
    )
    .await;
    // Whether a step holds depends on the machine's load (its p99 and
    // achieved rate); what it accounts for does not.
    let steps = s["steps"].as_array().unwrap();
    assert!(!steps.is_empty() && steps.len() <= 2, "{s}");
    for step in steps {
        assert_eq!(step["accepted"], step["offered"], "{s}");
        assert_eq!(step["drops"], 0, "{s}");
    }
    let held = steps.iter().take_while(|st| st["held"] == true).count();
    assert!(
        held + 1 >= steps.len(),
        "a step ran after one that failed: {s}"
    );
    let best = held
        .checked_sub(1)
        .map_or(0.0, |i| steps[i]["rate"].as_f64().unwrap());
    assert_eq!(s["best_rate"].as_f64().unwrap(), best, "{s}");

    let h = bench(
        &url,
        &[
            "history",
            "--messages",
            "120",
            "--small",
            "60",
            "--read-seconds",
            "1",
            "--concurrency",
            "2",
        ],
    )
    .await;
    assert_eq!(
        h["big_page"]["count"], 3,
        "120 messages are 3 pages of 50: {h}"
    );
    assert!(h["read"]["count"].as_u64().unwrap() > 0, "{h}");

    let k = bench(&url, &["sockets", "--sockets", "30", "--users", "3"]).await;
    assert_eq!(k["opened"], 30, "{k}");
    assert!(k["server_sockets"].as_f64().unwrap() >= 30.0, "{k}");
    assert!(k["rss_after_mib"].as_f64().unwrap() > 0.0, "{k}");

    // The projection benchmark runs in-process on a deployment of its own.
    let own = Deployment::new();
    let out = tokio::process::Command::new(bench_binary())
        .args([
            "projection",
            "--json",
            "--events",
            "500",
            "--conversations",
            "5",
        ])
        .args(own.flags())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["events"], 500, "{j}");
    assert_eq!(j["replayed"], 500, "{j}");
}

/// With the roles in their own processes, `--url` names the command API,
/// which serves no history: the latency run still reports everything it
/// measured, and says it could not read history instead of failing.
#[tokio::test]
async fn a_latency_run_whose_history_cannot_be_read_keeps_its_figures() {
    let d = Deployment::new();
    migrate(&d).await;
    let mut roles = Vec::new();
    for role in ["command-api", "projector", "ws-push"] {
        let p = Process::spawn(&["serve", role], &d, &[]).await;
        p.client().await;
        roles.push(p);
    }
    let (commands, push) = (
        format!("http://{}", roles[0].addr),
        format!("http://{}", roles[2].addr),
    );
    let l = bench(
        &commands,
        &[
            "--ws",
            &push,
            "latency",
            "--rate",
            "50",
            "--sockets",
            "4",
            "--users",
            "2",
            "--seconds",
            "1",
            "--warmup",
            "0",
        ],
    )
    .await;
    assert_eq!(l["offered"], 50, "{l}");
    assert_eq!(l["accepted"], 50, "{l}");
    assert_eq!(l["drops"], 0, "{l}");
    assert_eq!(l["push"]["count"], 100, "{l}");
    assert!(l["history_lag_ms"].is_null(), "{l}");
}

/// Against a server that limits sends, a closed-loop run counts the 429s,
/// waits as told between them, and still accounts for every send.
#[tokio::test]
async fn a_run_against_limits_counts_the_refusals() {
    let d = Deployment::new();
    let p = Process::spawn(&["dev"], &d, &["--send-limit-per-user", "5/s"]).await;
    p.client().await;
    let url = format!("http://{}", p.addr);
    let t = bench(
        &url,
        &[
            "throughput",
            "--seconds",
            "2",
            "--users",
            "2",
            "--concurrency",
            "4",
        ],
    )
    .await;
    let limited = t["rate_limited"].as_u64().unwrap();
    assert!(limited > 0, "{t}");
    assert_eq!(t["statuses"]["429"].as_u64().unwrap(), limited, "{t}");
    assert_eq!(t["statuses"]["202"], t["accepted"], "{t}");
    // Waiting out each Retry-After (1 s) keeps the refusals few.
    assert!(limited < 100, "{t}");
}

/// The login flood runs against a server with its default limits and
/// accounts for both phases; the other user is answered throughout.
#[tokio::test]
async fn a_login_flood_run_reports_both_phases() {
    let d = Deployment::new();
    let p = Process::spawn(
        &["dev"],
        &d,
        &[
            "--login-limit-per-address",
            "30/min",
            "--login-limit-per-username",
            "10/min",
            "--hash-threads",
            "1",
        ],
    )
    .await;
    p.client().await;
    let url = format!("http://{}", p.addr);
    let f = bench(
        &url,
        &[
            "login-flood",
            "--clients",
            "8",
            "--seconds",
            "1",
            "--rate",
            "10",
        ],
    )
    .await;
    assert_eq!(f["idle"]["count"], 10, "{f}");
    assert_eq!(f["flood"]["count"], 10, "{f}");
    assert_eq!(f["other_failed"], 0, "{f}");
    assert!(f["flood_statuses"]["429"].as_u64().unwrap() > 0, "{f}");
    assert!(f["rss_growth_mib"].as_f64().is_some(), "{f}");
}

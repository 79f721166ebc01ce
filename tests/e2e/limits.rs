//! Rate limits and the bounded password hashing: what a client that asks
//! too often sees, and that the rest of the server does not notice.

use std::time::{Duration, Instant};

use reqwest::header;
use serde_json::json;

use crate::helpers::{spawn_app_with, Deployment, Process, Reply, TestApp, PASSWORD};

fn rate(s: &str) -> parley_http_kit::limit::Rate {
    s.parse().unwrap()
}

/// A 429 problem with a `Retry-After` of at least a second.
fn limited(r: &Reply) {
    r.problem(429);
    let after: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(after >= 1, "Retry-After {after}");
}

async fn login(app: &TestApp, username: &str, password: &str, forwarded: Option<&str>) -> Reply {
    let mut req = app
        .http
        .post(app.url("/v1/auth/login"))
        .json(&json!({"username": username, "password": password}));
    if let Some(f) = forwarded {
        req = req.header("x-forwarded-for", f);
    }
    let res = req.send().await.unwrap();
    Reply {
        status: res.status(),
        headers: res.headers().clone(),
        text: res.text().await.unwrap(),
    }
}

#[tokio::test]
async fn logins_and_registrations_are_limited_per_address_and_username() {
    let app = spawn_app_with(Deployment::new(), |c| {
        c.limits.register_per_address = rate("3/min");
        c.limits.login_per_address = rate("5/min");
        c.limits.login_per_username = rate("3/min");
    })
    .await;
    let alice = app.register("alice").await;
    app.register("bob").await;
    app.register("carol").await;
    let r = app
        .post(
            "/v1/auth/register",
            None,
            json!({"username": "dave", "password": PASSWORD}),
        )
        .await;
    limited(&r);
    let found = app.get("/v1/users?query=dave", Some(&alice.token)).await;
    assert_eq!(found.json()["users"], json!([]), "dave was not created");

    // Guessing alice's password: three tries, then 429 even with the
    // right one.
    for _ in 0..3 {
        login(&app, "alice", "wrong password", None)
            .await
            .problem(401);
    }
    limited(&login(&app, "alice", PASSWORD, None).await);
    // Another account from the same address has what the address has left.
    assert_eq!(login(&app, "bob", PASSWORD, None).await.status, 200);
    limited(&login(&app, "carol", PASSWORD, None).await);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_key() {
    let configure = |trust: bool| {
        move |c: &mut parley::ServeConfig| {
            c.limits.login_per_address = rate("2/min");
            c.http.trust_forwarded_for = trust;
        }
    };
    let proxied = spawn_app_with(Deployment::new(), configure(true)).await;
    for _ in 0..2 {
        login(
            &proxied,
            "nobody",
            "wrong password",
            Some("127.0.0.9, 127.0.0.2"),
        )
        .await
        .problem(401);
    }
    limited(&login(&proxied, "nobody", "wrong password", Some("127.0.0.2")).await);
    // Another client is not affected. The entry the proxy wrote is the
    // last; what a client put before it changes nothing.
    login(&proxied, "nobody", "wrong password", Some("127.0.0.3"))
        .await
        .problem(401);
    login(
        &proxied,
        "nobody",
        "wrong password",
        Some("127.0.0.2, 127.0.0.3"),
    )
    .await
    .problem(401);
    limited(&login(&proxied, "nobody", "wrong password", Some("127.0.0.3")).await);

    // Without the flag the header is the client's word, and ignored.
    let direct = spawn_app_with(Deployment::new(), configure(false)).await;
    for f in ["127.0.0.2", "127.0.0.3"] {
        login(&direct, "nobody", "wrong password", Some(f))
            .await
            .problem(401);
    }
    limited(&login(&direct, "nobody", "wrong password", Some("127.0.0.4")).await);
}

#[tokio::test]
async fn sends_are_limited_per_user() {
    let app = spawn_app_with(Deployment::new(), |c| {
        c.limits.sends_per_user = rate("3/min");
    })
    .await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    for i in 0..3 {
        app.send(&a, &b, &format!("m{i}")).await;
    }
    let r = app
        .post(
            "/v1/messages",
            Some(&a.token),
            json!({"to": b.id, "body": "one too many"}),
        )
        .await;
    limited(&r);
    // Bob is not slowed down by Alice.
    app.send(&b, &a, "reply").await;
    let h = app.history_of_len(&a, &b, 4).await;
    assert_eq!(h.len(), 4);
    assert!(h.iter().all(|m| m["body"] != "one too many"));
}

async fn rss(app: &TestApp) -> f64 {
    app.get("/metrics", None)
        .await
        .text
        .lines()
        .find_map(|l| l.strip_prefix("parley_process_resident_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap()
}

/// 64 clients trying wrong passwords at once (rate limits off, so only the
/// hashing pool stands in the way): the server's memory stays bounded,
/// clients beyond the queue hear 503 + Retry-After at once, and another
/// user's requests keep working.
#[tokio::test]
async fn a_flood_of_wrong_logins_does_not_take_the_server() {
    let d = Deployment::new();
    let p = Process::spawn(&["dev"], &d, &["--hash-threads", "1", "--hash-queue", "8"]).await;
    let app = p.client().await;
    let (victim, other, peer) = (
        app.register("victim").await,
        app.register("other").await,
        app.register("peer").await,
    );
    let _ = victim;
    // The same requests with nobody attacking, for what this machine
    // takes at its slowest right now.
    let mut idle = Duration::ZERO;
    for _ in 0..10 {
        let t = Instant::now();
        assert_eq!(app.get("/v1/me", Some(&other.token)).await.status, 200);
        app.send(&other, &peer, "before").await;
        idle = idle.max(t.elapsed());
    }
    let before = rss(&app).await;
    let flood_until = Instant::now() + Duration::from_secs(4);
    let attackers: Vec<_> = (0..64)
        .map(|i| {
            let app = TestApp {
                addr: app.addr.clone(),
                http: reqwest::Client::new(),
                shutdown: Default::default(),
                _deployment: None,
            };
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                while Instant::now() < flood_until {
                    let r = login(&app, "victim", &format!("wrong password {i}"), None).await;
                    if r.status == 503 {
                        assert!(r.headers.contains_key(header::RETRY_AFTER));
                    }
                    statuses.push(r.status.as_u16());
                }
                statuses
            })
        })
        .collect();
    let mut peak = before;
    let mut slowest = Duration::ZERO;
    let mut served = 0;
    while Instant::now() < flood_until {
        let t = Instant::now();
        assert_eq!(app.get("/v1/me", Some(&other.token)).await.status, 200);
        app.send(&other, &peer, "still here").await;
        slowest = slowest.max(t.elapsed());
        served += 1;
        peak = peak.max(rss(&app).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut statuses = Vec::new();
    for a in attackers {
        statuses.extend(a.await.unwrap());
    }
    let refused = statuses.iter().filter(|s| **s == 503).count();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(refused + checked, statuses.len(), "{statuses:?}");
    assert!(
        refused > 0 && checked > 0,
        "{refused} refused, {checked} checked"
    );
    let growth_mib = (peak - before) / 1048576.0;
    eprintln!(
        "{} wrong logins ({checked} checked, {refused} turned away); RSS +{growth_mib:.0} MiB; \
         the other user's slowest me+send {slowest:?} over {served} ({idle:?} unattacked)",
        statuses.len()
    );
    assert!(growth_mib < 128.0, "RSS grew by {growth_mib:.0} MiB");
    // Hashing on the request threads would hold the other user for the
    // whole flood; a queue wait beside a busy pool is a small multiple.
    let bound = (idle * 10).max(Duration::from_secs(2));
    assert!(slowest < bound, "{slowest:?}, over {bound:?}");
}

use std::{collections::HashSet, path::PathBuf, time::Duration};

use parley::cli::Backend;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::helpers::{migrate, Deployment, Process, TestApp, User};

/// One outage at a time: the servers are shared.
static SERIAL: Mutex<()> = Mutex::const_new(());

fn infra(script: &str, args: &[&str]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("infra/local")
        .join(script);
    let status = std::process::Command::new(&path)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    assert!(status.success(), "infra/local/{script} {args:?} failed");
}

/// Brings every server back when a test ends, even by panic, so one
/// failure does not cascade into the next test.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        infra("up", &[]);
    }
}

async fn outage() -> (tokio::sync::MutexGuard<'static, ()>, Restore) {
    let guard = SERIAL.lock().await;
    infra("up", &[]);
    (guard, Restore)
}

fn cluster() -> Deployment {
    Deployment::on(Backend::Cluster)
}

/// A client that does not wait for readiness.
fn raw_client(p: &Process) -> TestApp {
    TestApp {
        addr: p.addr.clone(),
        http: reqwest::Client::new(),
        shutdown: tokio_util::sync::CancellationToken::new(),
        _deployment: None,
    }
}

/// Waits (up to `secs`) until the conversation holds `n` messages, reading
/// through whatever 503s a recovering store still gives.
async fn history_eventually(app: &TestApp, a: &User, b: &User, n: usize, secs: u64) -> Vec<Value> {
    let path = format!("/v1/conversations/{}/messages?limit=200", b.id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let r = app.get(&path, Some(&a.token)).await;
        if r.status == 200 {
            let page = r.json();
            if page["messages"].as_array().unwrap().len() >= n.min(200) {
                return app.history_of_len(a, b, n).await;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "history never reached {n} messages (last answer {} {})",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ids(history: &[Value]) -> Vec<String> {
    history
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn sends_keep_working_while_cassandra_is_down_and_history_catches_up() {
    let (_serial, _restore) = outage().await;
    let d = cluster();
    let p = Process::start(&d).await;
    let app = p.client().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let mut b_sock = app.socket(&b).await;
    let mut sent = vec![app.send(&a, &b, "before").await["id"].clone()];
    b_sock.expect("message").await;
    let carol = app.register("carol").await;
    let r = app
        .post("/v1/auth/logout", Some(&carol.token), json!({}))
        .await;
    assert_eq!(r.status, 204);

    infra("down", &["--keep-data", "cassandra"]);
    assert_eq!(app.get("/readyz", None).await.status, 503);
    // Sessions are checked against the last answer while the store is
    // away: a logged-out one stays logged out.
    app.post(
        "/v1/messages",
        Some(&carol.token),
        json!({"to": b.id, "body": "from a dead session"}),
    )
    .await
    .problem(401);
    for i in 0..10 {
        let m = app.send(&a, &b, &format!("during {i}")).await;
        // Live pushes come from the log; they do not need the store.
        assert_eq!(b_sock.expect("message").await["message"]["id"], m["id"]);
        sent.push(m["id"].clone());
    }
    infra("up", &["cassandra"]);

    let h = history_eventually(&app, &a, &b, 11, 90).await;
    let mut got = ids(&h);
    assert_eq!(got.len(), 11, "nothing lost, nothing duplicated");
    got.reverse();
    let want: Vec<String> = sent
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, want, "history holds every send once, in order");
}

#[tokio::test]
async fn sends_answer_503_while_kafka_is_down_and_recover_after() {
    let (_serial, _restore) = outage().await;
    let d = cluster();
    let p = Process::start(&d).await;
    let app = p.client().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let first = app.send(&a, &b, "before").await;

    infra("down", &["--keep-data", "kafka"]);
    let r = app
        .post(
            "/v1/messages",
            Some(&a.token),
            json!({"to": b.id, "body": "lost in the outage"}),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(
        r.headers.get("retry-after").is_some(),
        "503 without Retry-After"
    );
    assert_eq!(r.problem(503)["status"], 503);
    // A send with a client_id claims its key (in Cassandra, which is up)
    // before the produce fails: the claim is left holding an event that
    // never reached the log.
    let retried = json!({"to": b.id, "body": "retried by its client", "client_id": "outage-1"});
    let r = app
        .post("/v1/messages", Some(&a.token), retried.clone())
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    infra("up", &["kafka"]);

    // The same client retries; the producer reconnects on its own.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let after = loop {
        let r = app
            .post(
                "/v1/messages",
                Some(&a.token),
                json!({"to": b.id, "body": "after"}),
            )
            .await;
        if r.status == 202 {
            break r.json()["message"].clone();
        }
        assert_eq!(r.status, 503, "{}", r.text);
        assert!(
            tokio::time::Instant::now() < deadline,
            "sends never recovered"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // The client retries with the same client_id: the event its claim
    // holds is produced now, once; a second retry gets the same message.
    let r = app
        .post("/v1/messages", Some(&a.token), retried.clone())
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let late = r.json()["message"].clone();
    assert_eq!(late["body"], "retried by its client");
    let r = app.post("/v1/messages", Some(&a.token), retried).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(
        r.json()["message"]["id"],
        late["id"],
        "one message per client_id"
    );
    let h = history_eventually(&app, &a, &b, 3, 60).await;
    // Its id was minted at the first attempt, so it sorts where the client
    // first sent it.
    assert_eq!(
        ids(&h),
        vec![
            after["id"].as_str().unwrap(),
            late["id"].as_str().unwrap(),
            first["id"].as_str().unwrap()
        ]
    );
    assert!(
        h.iter().all(|m| m["body"] != "lost in the outage"),
        "a 503 send appeared"
    );
}

#[tokio::test]
async fn a_projector_killed_mid_burst_loses_and_duplicates_nothing() {
    let (_serial, _restore) = outage().await;
    let d = cluster();
    migrate(&d).await;
    let commands = Process::spawn(&["serve", "command-api"], &d, &[]).await;
    let queries = Process::spawn(&["serve", "query-api"], &d, &[]).await;
    let mut projector = Process::spawn(&["serve", "projector"], &d, &[]).await;
    let (c, q) = (commands.client().await, queries.client().await);
    projector.client().await;
    let (a, b) = (c.register("alice").await, c.register("bob").await);

    let burst = {
        let (c, a, b) = (
            TestApp {
                addr: c.addr.clone(),
                http: reqwest::Client::new(),
                shutdown: Default::default(),
                _deployment: None,
            },
            User {
                id: a.id.clone(),
                token: a.token.clone(),
            },
            User {
                id: b.id.clone(),
                token: b.token.clone(),
            },
        );
        tokio::spawn(async move {
            let sends = (0..300).map(|i| {
                let (c, a, b) = (&c, &a, &b);
                async move {
                    c.send(a, b, &format!("burst {i}")).await["id"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                }
            });
            futures_util::future::join_all(sends).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    projector.child.start_kill().unwrap();
    projector.child.wait().await.unwrap();
    let acked: HashSet<String> = burst.await.unwrap().into_iter().collect();
    assert_eq!(acked.len(), 300);

    let restarted = Process::spawn(&["serve", "projector"], &d, &[]).await;
    restarted.client().await;
    let h = history_eventually(&q, &a, &b, 300, 90).await;
    let got = ids(&h);
    assert_eq!(got.len(), 300, "each message exactly once");
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), acked);
}

#[tokio::test]
async fn roles_started_before_kafka_and_cassandra_wait_then_serve() {
    let (_serial, _restore) = outage().await;
    let d = cluster();
    migrate(&d).await;
    infra("down", &["--keep-data", "all"]);

    let mut roles = Vec::new();
    for role in ["command-api", "query-api", "projector", "ws-push"] {
        roles.push(Process::spawn(&["serve", role], &d, &[]).await);
    }
    for p in &roles {
        let app = raw_client(p);
        assert_eq!(app.get("/healthz", None).await.status, 200);
        let r = app.get("/readyz", None).await;
        assert_eq!(r.status, 503, "{}", r.text);
        let r = app.get("/v1/me", None).await;
        assert_eq!(r.status, 503, "{}", r.text);
        assert!(r.headers.get("retry-after").is_some());
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for p in &mut roles {
        assert!(
            p.child.try_wait().unwrap().is_none(),
            "a role exited instead of waiting"
        );
    }

    infra("up", &[]);
    let mut clients = Vec::new();
    for p in &roles {
        clients.push(p.client().await);
    }
    let (c, q, ws) = (&clients[0], &clients[1], &clients[3]);
    let (a, b) = (c.register("alice").await, c.register("bob").await);
    let mut b_sock = ws.socket(&b).await;
    let m = c.send(&a, &b, "hello after the outage").await;
    assert_eq!(b_sock.expect("message").await["message"]["id"], m["id"]);
    let h = history_eventually(q, &a, &b, 1, 60).await;
    assert_eq!(h[0]["id"], m["id"]);
}

//! Tests that need a real `parley` process: kill -9, SIGTERM, replay, and
//! refusing to start without a secret.

use std::{collections::HashSet, time::Duration};

use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{binary, run_parley, Deployment, Frame, Process, Socket, User};

async fn snapshot(
    app: &crate::helpers::TestApp,
    a: &User,
    b: &User,
) -> (Vec<Value>, Vec<Value>, Value, Value) {
    (
        app.history(a, b).await,
        app.history(b, a).await,
        app.inbox(a).await,
        app.inbox(b).await,
    )
}

#[tokio::test]
async fn acknowledged_sends_survive_kill_9() {
    let d = Deployment::new();
    let mut p = Process::start(&d).await;
    let app = p.client().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let sends = (0..200).map(|i| {
        let app = &app;
        let (a, b) = (&a, &b);
        async move {
            app.send(a, b, &format!("durable {i}")).await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    });
    let acked: HashSet<String> = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .collect();
    assert_eq!(acked.len(), 200);
    p.child.start_kill().unwrap();
    p.child.wait().await.unwrap();
    let p2 = Process::start(&d).await;
    let app = p2.client().await;
    let h = app.history_of_len(&a, &b, 200).await;
    let ids: Vec<String> = h
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 200, "each message exactly once");
    assert_eq!(ids.iter().cloned().collect::<HashSet<_>>(), acked);
}

#[tokio::test]
async fn sigterm_drains_and_replay_rebuilds_identical_read_models() {
    let d = Deployment::new();
    let mut p = Process::start(&d).await;
    let app = p.client().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let mut last = Value::Null;
    for i in 0..30 {
        let (from, to) = if i % 4 == 0 { (&b, &a) } else { (&a, &b) };
        last = app.send(from, to, &format!("m{i}")).await;
    }
    app.history_of_len(&a, &b, 30).await;
    app.mark_read(&b, &a, &last["id"]).await;
    // Wait for the read marker to be projected, then take the snapshot.
    for _ in 0..200 {
        if app.inbox(&b).await["conversations"][0]["unread_count"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let before = snapshot(&app, &a, &b).await;
    assert_eq!(before.3["conversations"][0]["unread_count"], 0);
    assert!(before
        .1
        .iter()
        .filter(|m| m["to"] == b.id.as_str())
        .all(|m| m["read_at"].is_string()));
    let mut open_socket = app.socket(&a).await;
    // A socket still inside its auth window is told too, rather than
    // holding the drain up until the window closes it with 4401.
    let mut unauthenticated = Socket::connect(app.ws_url().into_client_request().unwrap()).await;
    let pid = p.child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    // Sockets are told the server is going away, not just cut off. A 202
    // means durable, not dispatched: under load the last events (the read
    // receipt, even messages) can still reach this socket first.
    loop {
        match open_socket.frame().await {
            Frame::Closed(code) => {
                assert_eq!(code, Some(1001));
                break;
            }
            Frame::Json(v) => assert!(
                v["type"] == "read" || v["type"] == "message",
                "unexpected frame before the close: {v}"
            ),
        }
    }
    assert!(
        matches!(unauthenticated.frame().await, Frame::Closed(Some(1001))),
        "a socket still authenticating hears 1001 at shutdown"
    );
    let status = tokio::time::timeout(Duration::from_secs(20), p.child.wait())
        .await
        .expect("parley did not stop within 20 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "SIGTERM exit: {status:?}");

    // Replay into a fresh keyspace on the cluster (in place on SQLite),
    // then serve from it and compare with what the live one showed.
    let fresh = d.replay_target();
    let target = fresh.as_ref().unwrap_or(&d);
    let out = run_parley(&["replay"], target).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("replayed"));

    let p2 = Process::start(target).await;
    let app = p2.client().await;
    let after = snapshot(&app, &a, &b).await;
    assert_eq!(after.0.len(), 30);
    assert_eq!(before, after);
}

#[tokio::test]
async fn production_roles_refuse_to_start_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(binary())
        .args([
            "serve",
            "query-api",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("PARLEY_JWT_SECRET")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("JWT secret"));
}

#[tokio::test]
async fn migrate_creates_the_schema() {
    let d = Deployment::new();
    for _ in 0..2 {
        // Twice: migrating an up-to-date schema is a no-op, not an error.
        let out = run_parley(&["migrate"], &d).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        match d.backend {
            parley::cli::Backend::Embedded => {
                assert!(said.contains("schema at version 6"), "{said}");
                assert!(d.dir.path().join("parley.db").exists());
                assert!(d.dir.path().join("log.db").exists());
            }
            parley::cli::Backend::Cluster => {
                assert!(
                    said.contains(&format!("keyspace {} at version 6", d.keyspace)),
                    "{said}"
                )
            }
        }
    }
}

/// Under a umask that lets everyone read new files, the data files (and
/// one left world-readable by an older version) are the owner's alone.
#[cfg(unix)]
#[tokio::test]
async fn data_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let d = Deployment::new();
    let embedded = d.backend == parley::cli::Backend::Embedded;
    if embedded {
        let old = d.dir.path().join("parley.db");
        std::fs::write(&old, b"").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    // Without a secret, `dev` generates one into the data dir.
    let p = Process::spawn_after("umask 022 && unset PARLEY_JWT_SECRET", &["dev"], &d, &[]).await;
    let app = p.client().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    app.send(&a, &b, "private").await;
    app.history_of_len(&b, &a, 1).await;
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(d.dir.path()).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert_eq!(mode & 0o077, 0, "{name} is {:o}", mode & 0o777);
        seen.push(name);
    }
    seen.sort();
    let expected: &[&str] = if embedded {
        &[
            "jwt-secret",
            "log.db",
            "log.db-shm",
            "log.db-wal",
            "parley.db",
            "parley.db-shm",
            "parley.db-wal",
        ]
    } else {
        // The cluster keeps its data elsewhere.
        &["jwt-secret"]
    };
    assert_eq!(seen, expected);
}

/// The `kid` a token's header names.
fn kid(token: &str) -> String {
    use base64::Engine;
    let head = token.split('.').next().unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .unwrap();
    serde_json::from_slice::<Value>(&json).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `parley dev` with these JWT keys (and no secret).
async fn start_with_keys(d: &Deployment, keys: String) -> (Process, crate::helpers::TestApp) {
    let p = Process::spawn_after(
        "unset PARLEY_JWT_SECRET",
        &["dev"],
        d,
        &["--jwt-keys", &keys],
    )
    .await;
    let app = p.client().await;
    (p, app)
}

/// A key put in front of the old one signs new tokens while the old one's
/// tokens keep working; tokens of a key the server does not hold (another
/// id, or a known id with another secret) are refused, and so are the old
/// key's once it is removed.
#[tokio::test]
async fn jwt_keys_rotate_without_logging_anyone_out() {
    const OLD: &str = "old=0123456789abcdef0123456789abcdef";
    const NEW: &str = "new=fedcba9876543210fedcba9876543210";
    let d = Deployment::new();
    let (mut first, app) = start_with_keys(&d, OLD.into()).await;
    let alice = app.register("alice").await;
    assert_eq!(kid(&alice.token), "old");
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();

    let (_rotated, app) = start_with_keys(&d, format!("{NEW},{OLD}")).await;
    assert_eq!(app.get("/v1/me", Some(&alice.token)).await.status, 200);
    let again = app
        .post(
            "/v1/auth/login",
            None,
            serde_json::json!({"username": "alice", "password": crate::helpers::PASSWORD}),
        )
        .await;
    let fresh = again.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(kid(&fresh), "new");
    assert_eq!(app.get("/v1/me", Some(&fresh)).await.status, 200);

    // Tokens from servers holding other keys.
    for keys in [
        "stranger=0123456789abcdef0123456789abcdef",
        "old=another-secret-another-secret-xx",
    ] {
        let elsewhere = Deployment::new();
        let (_p, other) = start_with_keys(&elsewhere, keys.into()).await;
        let foreign = other.register("mallory").await;
        app.get("/v1/me", Some(&foreign.token)).await.problem(401);
    }
    drop(_rotated);

    let (_retired, app) = start_with_keys(&d, NEW.into()).await;
    app.get("/v1/me", Some(&alice.token)).await.problem(401);
    assert_eq!(app.get("/v1/me", Some(&fresh)).await.status, 200);
}

#[tokio::test]
async fn jwt_keys_and_secret_are_not_both_accepted() {
    let d = Deployment::new();
    let out = tokio::process::Command::new(binary())
        .args(["dev", "--listen", "127.0.0.1:0"])
        .args(d.flags())
        .args(["--jwt-keys", "k=0123456789abcdef0123456789abcdef"])
        .env("PARLEY_JWT_SECRET", crate::helpers::TEST_SECRET)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not both"));
}

//! Every role in its own process, with two ws-push instances: what a user
//! connected to one instance sees of a user connected to the other.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{migrate, Deployment, Frame, Process, TestApp};

/// `parley serve <role>` for each role, plus a second ws-push.
struct Topology {
    _processes: Vec<Process>,
    commands: TestApp,
    queries: TestApp,
    push_a: TestApp,
    push_b: TestApp,
}

async fn start(d: &Deployment) -> Topology {
    migrate(d).await;
    let mut processes = Vec::new();
    for role in [
        "command-api",
        "query-api",
        "projector",
        "ws-push",
        "ws-push",
    ] {
        processes.push(Process::spawn(&["serve", role], d, &[]).await);
    }
    let mut clients = Vec::new();
    for p in &processes {
        clients.push(p.client().await);
    }
    let mut clients = clients.into_iter();
    let (commands, queries, _projector, push_a, push_b) = (
        clients.next().unwrap(),
        clients.next().unwrap(),
        clients.next().unwrap(),
        clients.next().unwrap(),
        clients.next().unwrap(),
    );
    Topology {
        _processes: processes,
        commands,
        queries,
        push_a,
        push_b,
    }
}

#[tokio::test]
async fn messages_and_receipts_cross_ws_push_instances() {
    let d = Deployment::new();
    let t = start(&d).await;
    let (alice, bob) = (
        t.commands.register("alice").await,
        t.commands.register("bob").await,
    );
    // Each role serves only its own routes.
    assert_eq!(
        t.queries
            .post("/v1/messages", Some(&alice.token), json!({}))
            .await
            .status,
        404
    );
    let mut a_sock = t.push_a.socket(&alice).await;
    let mut b_sock = t.push_b.socket(&bob).await;

    let sent = t.commands.send(&alice, &bob, "across instances").await;
    let got = b_sock.expect("message").await;
    assert_eq!(got["message"]["id"], sent["id"]);
    assert_eq!(got["message"]["body"], "across instances");
    // The sender's own socket, on the other instance, hears it too.
    assert_eq!(a_sock.expect("message").await["message"]["id"], sent["id"]);

    // Delivery receipt: ack on instance B, receipt on instance A.
    b_sock
        .send(json!({"type": "ack", "message_id": sent["id"]}))
        .await;
    let delivered = a_sock.expect("delivered").await;
    assert_eq!(delivered["message_id"], sent["id"]);

    // Read receipt: marked through command-api, pushed to A.
    t.commands.mark_read(&bob, &alice, &sent["id"]).await;
    let read = a_sock.expect("read").await;
    assert_eq!(read["up_to"], sent["id"]);
    assert_eq!(read["by"], bob.id.as_str());
    // The reader's own devices hear of it too, to clear their unread state.
    assert_eq!(b_sock.expect("read").await["up_to"], sent["id"]);

    // A reply the other way, and both receipts visible through query-api.
    let reply = t.commands.send(&bob, &alice, "and back").await;
    assert_eq!(a_sock.expect("message").await["message"]["id"], reply["id"]);
    assert_eq!(b_sock.expect("message").await["message"]["id"], reply["id"]);
    let mut settled = false;
    for _ in 0..400 {
        let h = t.queries.history(&alice, &bob).await;
        let first = h.iter().find(|m| m["id"] == sent["id"]);
        if h.len() == 2
            && first.is_some_and(|m| m["delivered_at"].is_string() && m["read_at"].is_string())
        {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        settled,
        "query-api never showed both messages with their receipts"
    );

    // SIGTERM: every role drains and exits 0; sockets hear 1001.
    let mut t = t;
    for p in &t._processes {
        let pid = p.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
    }
    a_sock.expect_close(1001).await;
    b_sock.expect_close(1001).await;
    for p in &mut t._processes {
        let status = tokio::time::timeout(Duration::from_secs(30), p.child.wait())
            .await
            .expect("a role did not stop within 30 s of SIGTERM")
            .unwrap();
        assert!(status.success(), "SIGTERM exit: {status:?}");
    }
}

/// A logout through command-api ends the session on the other processes
/// too: each keeps the logouts in memory and reads new ones within about
/// a second, so a socket or a request with the token is refused soon
/// after, by a ws-push and a query-api that had already let it in.
#[tokio::test]
async fn a_logout_reaches_every_process() {
    let d = Deployment::new();
    let t = start(&d).await;
    let (gina, other) = (
        t.commands.register("gina").await,
        t.commands.register("hal").await,
    );
    // Sockets of the session, open on both instances when it logs out.
    let mut open = [t.push_a.socket(&gina).await, t.push_b.socket(&gina).await];
    let mut other_sock = t.push_b.socket(&other).await;
    assert_eq!(t.queries.get("/v1/me", Some(&gina.token)).await.status, 200);
    let r = t
        .commands
        .post("/v1/auth/logout", Some(&gina.token), json!({}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    for s in &mut open {
        s.expect_close(4401).await;
    }
    other_sock.send(json!({"type": "ping"})).await;
    other_sock.expect("pong").await;
    let mut refused = (false, false);
    for _ in 0..200 {
        if !refused.0 {
            let mut s = t.push_a.bearer_socket(&gina.token).await;
            refused.0 = match s.frame().await {
                Frame::Closed(code) => {
                    assert_eq!(code, Some(4401));
                    true
                }
                Frame::Json(v) => {
                    assert_eq!(v["type"], "ready");
                    false
                }
            };
        }
        if !refused.1 {
            let me = t.queries.get("/v1/me", Some(&gina.token)).await;
            refused.1 = me.status == 401;
            assert!(matches!(me.status.as_u16(), 200 | 401), "{}", me.text);
        }
        if refused == (true, true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        refused,
        (true, true),
        "(ws-push, query-api) refused the token"
    );
    // Other sessions are untouched.
    t.push_b.socket(&other).await;
    assert_eq!(
        t.queries.get("/v1/me", Some(&other.token)).await.status,
        200
    );
}

//! Sync tokens at each seam: what a socket that reconnects with the `seq`
//! of the last frame it processed receives, whether its backlog comes
//! from ws-push's memory or the store, from another instance, after a
//! restart or a replay; and which tokens are refused.

use std::collections::HashSet;

use parley_domain::{LogPosition, SyncToken};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{
    migrate, run_parley, spawn_app, spawn_app_with, Deployment, Frame, Process, Socket, TestApp,
    User,
};

/// ws-push memory settings (KiB) to run a case under: everything from
/// memory, nothing (every backlog from the store), and a little (the
/// older part of a backlog from the store, the rest from memory).
const MEMORIES: [(&str, u64); 3] = [("memory", 64 * 1024), ("store", 0), ("both", 8)];

fn push(kib: u64) -> impl FnOnce(&mut parley::ServeConfig) {
    move |c| c.push.sync_memory_bytes = (kib * 1024) as usize
}

/// Reads frames until `want` message frames have come, then asserts one
/// `synced` came among them or right after and nothing else follows.
/// Returns the messages and how many came before `synced`.
async fn drain_messages(s: &mut Socket, want: usize) -> (Vec<Value>, usize) {
    let (mut got, mut synced_after) = (Vec::new(), None);
    while got.len() < want || synced_after.is_none() {
        let f = s.next().await;
        match f["type"].as_str() {
            Some("message") => got.push(f["message"].clone()),
            Some("synced") => {
                assert!(synced_after.is_none(), "synced twice");
                synced_after = Some(got.len());
            }
            _ => panic!("unexpected frame {f}"),
        }
    }
    s.assert_quiet(300).await;
    (got, synced_after.unwrap_or_default())
}

async fn store_reads(app: &TestApp) -> f64 {
    let text = app.get("/metrics", None).await.text;
    text.lines()
        .filter(|l| l.starts_with("parley_ws_sync_store_reads_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `parley dev` in a process of its own, so its `/metrics` count only
/// its own store reads.
#[tokio::test]
async fn a_backlog_is_what_was_missed_once_in_order_then_live() {
    for (memory, kib) in MEMORIES {
        let d = Deployment::new();
        let p = Process::spawn(&["dev"], &d, &["--sync-memory-kib", &kib.to_string()]).await;
        let app = p.client().await;
        let (a, b) = (app.register("alice").await, app.register("bob").await);
        let mut s = app.socket(&b).await;
        let first = app.send(&a, &b, "m0").await;
        assert_eq!(s.expect("message").await["message"], first);
        let since = s.last_seq();
        drop(s);
        let mut missed = Vec::new();
        for i in 1..=30 {
            missed.push(app.send(&a, &b, &format!("m{i}")).await);
            if i == 3 {
                // Bob's own message from another device counts too.
                missed.push(app.send(&b, &a, "from bob's phone").await);
            }
        }
        let mut s = app.socket_since(&b, &since).await;
        let (got, _) = drain_messages(&mut s, missed.len()).await;
        assert_eq!(got, missed, "{memory}: every message once, in order");
        let live = app.send(&a, &b, "live").await;
        assert_eq!(s.expect("message").await["message"], live, "{memory}");
        s.assert_quiet(300).await;
        let reads = store_reads(&app).await;
        match memory {
            "memory" => assert_eq!(reads, 0.0, "a recent backlog needs no store read"),
            _ => assert!(reads >= 1.0, "{memory}: the store served the backlog"),
        }
    }
}

/// A client that drops at any frame of a backlog and comes back with the
/// last `seq` it processed gets the rest, and nothing twice.
#[tokio::test]
async fn a_drop_in_the_middle_of_a_backlog_loses_nothing() {
    for (memory, kib) in MEMORIES {
        let app = spawn_app_with(Deployment::new(), push(kib)).await;
        let (a, b) = (app.register("alice").await, app.register("bob").await);
        let since = app.socket(&b).await.last_seq();
        let mut missed = Vec::new();
        for i in 0..24 {
            missed.push(app.send(&a, &b, &format!("m{i}")).await);
        }
        let (mut got, mut since) = (Vec::new(), since);
        // Drop after 1, then 5, then 9 messages of each backlog. A 202 is
        // not a dispatch: messages the instance had not dispatched yet
        // come after `synced`, live, and count the same.
        for take in [1, 5, 9] {
            let mut s = app.socket_since(&b, &since).await;
            let mut taken = 0;
            while taken < take {
                let f = s.next().await;
                match f["type"].as_str() {
                    Some("message") => {
                        got.push(f["message"].clone());
                        taken += 1;
                    }
                    Some("synced") => {}
                    _ => panic!("{memory}: unexpected frame {f}"),
                }
            }
            since = s.last_seq();
        }
        let mut s = app.socket_since(&b, &since).await;
        let (rest, _) = drain_messages(&mut s, missed.len() - got.len()).await;
        got.extend(rest);
        assert_eq!(got, missed, "{memory}");
    }
}

/// Receipts made while a device was away reach it once: the delivery
/// receipt of a message it sent from another device, and the read
/// receipt, which also reaches the reader's own other devices.
#[tokio::test]
async fn receipts_made_while_away_arrive_once() {
    for (memory, kib) in MEMORIES {
        let app = spawn_app_with(Deployment::new(), push(kib)).await;
        let (a, b) = (app.register("alice").await, app.register("bob").await);
        let mut laptop = app.socket(&a).await;
        let mut bob_tablet = app.socket(&b).await;
        let mut bob_phone = app.socket(&b).await;
        let sent = app.send(&a, &b, "from alice's phone").await;
        assert_eq!(laptop.expect("message").await["message"], sent);
        let since = laptop.last_seq();
        drop(laptop);
        bob_tablet.expect("message").await;
        bob_phone.expect("message").await;
        bob_phone
            .send(json!({"type": "ack", "message_id": sent["id"]}))
            .await;
        app.mark_read(&b, &a, &sent["id"]).await;
        let read = bob_tablet.expect("read").await;
        assert_eq!(read["up_to"], sent["id"], "{memory}");
        assert_eq!(bob_phone.expect("read").await["up_to"], sent["id"]);

        let mut laptop = app.socket_since(&a, &since).await;
        let (mut delivered, mut reads, mut synced) = (0, 0, 0);
        while delivered == 0 || reads == 0 || synced == 0 {
            let f = laptop.next().await;
            match f["type"].as_str() {
                Some("delivered") => {
                    assert_eq!(f["message_id"], sent["id"]);
                    delivered += 1;
                }
                Some("read") => {
                    assert_eq!((&f["up_to"], &f["by"]), (&sent["id"], &json!(b.id)));
                    reads += 1;
                }
                Some("synced") => synced += 1,
                _ => panic!("{memory}: unexpected frame {f}"),
            }
        }
        laptop.assert_quiet(300).await;
        assert_eq!((delivered, reads, synced), (1, 1, 1), "{memory}");
    }
}

/// A token of another data dir or topic, a garbled one, or one past the
/// end of the log cannot be served: 4409, so the client reads its inbox
/// again and connects without `since`.
#[tokio::test]
async fn a_token_that_cannot_be_served_closes_with_4409() {
    let other = spawn_app().await;
    let foreign = other.socket(&other.register("olga").await).await.last_seq();
    let app = spawn_app().await;
    let u = app.register("alice").await;
    let mine = app.socket(&u).await.last_seq();
    let mut ahead = SyncToken::parse_any(&mine).unwrap();
    ahead.positions.advance(LogPosition {
        partition: 0,
        offset: 1 << 40,
    });
    for bad in [foreign.as_str(), "garbage", &ahead.encode()] {
        let mut s = app.bearer_socket_since(&u.token, Some(bad)).await;
        s.expect_close(4409).await;
        // The same in a first `auth` frame.
        let mut s = Socket::connect(app.ws_url().into_client_request().unwrap()).await;
        s.send(json!({"type": "auth", "token": u.token, "since": bad}))
            .await;
        s.expect_close(4409).await;
    }
    // The token this server minted works either way.
    app.socket_since(&u, &mine).await.expect("synced").await;
    let mut s = Socket::connect(app.ws_url().into_client_request().unwrap()).await;
    s.send(json!({"type": "auth", "token": u.token, "since": mine}))
        .await;
    assert_eq!(s.expect("ready").await["seq"], mine.as_str());
    s.expect("synced").await;
}

/// The roles as separate processes, with two ws-push instances.
struct Roles {
    processes: Vec<Process>,
    commands: TestApp,
}

impl Roles {
    async fn start(d: &Deployment) -> Self {
        migrate(d).await;
        let mut processes = Vec::new();
        for role in ["command-api", "query-api", "projector"] {
            processes.push(Process::spawn(&["serve", role], d, &[]).await);
        }
        let commands = processes[0].client().await;
        Self {
            processes,
            commands,
        }
    }

    async fn ws_push(&mut self, d: &Deployment, extra: &[&str]) -> TestApp {
        let p = Process::spawn(&["serve", "ws-push"], d, extra).await;
        let client = p.client().await;
        self.processes.push(p);
        client
    }
}

/// Sends `n` messages from `a` to `b`, then has `b` sync from `since` on
/// `push`: exactly those arrive.
async fn missed_arrive(
    roles: &Roles,
    push: &TestApp,
    (a, b): (&User, &User),
    since: &str,
    n: usize,
) -> String {
    let mut missed = Vec::new();
    for i in 0..n {
        missed.push(roles.commands.send(a, b, &format!("m{i}")).await);
    }
    let mut s = push.socket_since(b, since).await;
    let (got, _) = drain_messages(&mut s, n).await;
    assert_eq!(got, missed);
    s.last_seq()
}

/// A token minted by one instance is served by another, and by an
/// instance started after the one that minted it was killed.
#[tokio::test]
async fn a_token_is_good_on_any_instance_and_after_a_restart() {
    let d = Deployment::new();
    let mut roles = Roles::start(&d).await;
    let push_a = roles.ws_push(&d, &[]).await;
    let push_b = roles.ws_push(&d, &[]).await;
    let (a, b) = (
        roles.commands.register("alice").await,
        roles.commands.register("bob").await,
    );
    let since = push_a.socket(&b).await.last_seq();
    let since = missed_arrive(&roles, &push_b, (&a, &b), &since, 10).await;
    // Kill the first instance and start another, with nothing in memory
    // (every backlog from the store) and with the default memory.
    let mut first = roles.processes.remove(3);
    first.child.kill().await.unwrap();
    let store_only = roles.ws_push(&d, &["--sync-memory-kib", "0"]).await;
    let since = missed_arrive(&roles, &store_only, (&a, &b), &since, 10).await;
    let fresh = roles.ws_push(&d, &[]).await;
    missed_arrive(&roles, &fresh, (&a, &b), &since, 10).await;
}

/// After `parley replay` rebuilt the read models (in place on the
/// embedded backend, into a fresh keyspace on the cluster), a token minted
/// before it is served from the rebuilt store.
#[tokio::test]
async fn a_token_from_before_a_replay_is_served_after_it() {
    let d = Deployment::new();
    let mut roles = Roles::start(&d).await;
    let push = roles.ws_push(&d, &[]).await;
    let (a, b) = (
        roles.commands.register("alice").await,
        roles.commands.register("bob").await,
    );
    let since = push.socket(&b).await.last_seq();
    let mut missed = Vec::new();
    for i in 0..15 {
        missed.push(roles.commands.send(&a, &b, &format!("m{i}")).await);
    }
    // Every process stops before the replay.
    drop(roles);
    let fresh = d.replay_target();
    let target = fresh.as_ref().unwrap_or(&d);
    let out = run_parley(&["replay"], target).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut roles = Roles::start(target).await;
    let push = roles.ws_push(target, &["--sync-memory-kib", "0"]).await;
    let mut s = push.socket_since(&b, &since).await;
    let (got, _) = drain_messages(&mut s, missed.len()).await;
    assert_eq!(got, missed);
    let seen: HashSet<&Value> = got.iter().map(|m| &m["id"]).collect();
    assert_eq!(seen.len(), missed.len());
    // And it goes on live.
    let live = roles.commands.send(&a, &b, "live").await;
    match s.frame().await {
        Frame::Json(f) => assert_eq!(f["message"], live),
        Frame::Closed(c) => panic!("closed ({c:?})"),
    }
}

//! What a socket client cannot do to the server: open sockets from a
//! foreign page with the cookie, hold more than its share, send frames too
//! big or too fast, or keep listening after its session ended.

use std::time::{Duration, Instant};

use parley_http_kit::limit::Rate;
use reqwest::header;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{spawn_app, spawn_app_with, Deployment, Frame, Socket, TestApp, User};

/// The upgrade request with the session cookie and `origin`.
async fn cookie_upgrade(app: &TestApp, user: &User, origin: Option<&str>) -> Result<Socket, u16> {
    let mut req = app.ws_url().into_client_request().unwrap();
    let h = req.headers_mut();
    h.insert(
        header::COOKIE,
        format!("parley_session={}", user.token).parse().unwrap(),
    );
    if let Some(o) = origin {
        h.insert(header::ORIGIN, o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(Socket { ws, seq: None }),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

#[tokio::test]
async fn a_cookie_upgrade_from_a_foreign_page_is_refused() {
    let app = spawn_app_with(Deployment::new(), |c| {
        c.http.allowed_origins =
            parley_http_kit::origin::Origins::parse(&["https://app.example"]).unwrap();
    })
    .await;
    let u = app.register("alice").await;
    assert_eq!(
        cookie_upgrade(&app, &u, Some("https://evil.example"))
            .await
            .err(),
        Some(403),
        "cross-site WebSocket hijacking"
    );
    let own = format!("http://{}", app.addr);
    for origin in [Some(own.as_str()), Some("https://app.example"), None] {
        let mut s = cookie_upgrade(&app, &u, origin)
            .await
            .unwrap_or_else(|status| panic!("{origin:?}: {status}"));
        s.expect("ready").await;
    }
    // A token in a header is not the browser's doing: any origin may.
    let mut req = app.ws_url().into_client_request().unwrap();
    req.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {}", u.token).parse().unwrap(),
    );
    req.headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    Socket::connect(req).await.expect("ready").await;
}

#[tokio::test]
async fn a_user_holds_at_most_the_sockets_allowed() {
    let app = spawn_app_with(Deployment::new(), |c| c.push.max_sockets_per_user = 3).await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(app.socket(&a).await);
    }
    app.bearer_socket(&a.token).await.expect_close(4429).await;
    // Others are not affected, and a socket that goes frees its place.
    app.socket(&b).await;
    held.pop().unwrap().ws.close(None).await.unwrap();
    // The server notices the close a moment later.
    let mut freed = false;
    for _ in 0..50 {
        let mut s = app.bearer_socket(&a.token).await;
        if let Frame::Json(v) = s.frame().await {
            assert_eq!(v["type"], "ready");
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(freed, "a closed socket never freed its place");
}

#[tokio::test]
async fn a_frame_over_64_kib_closes_the_socket_with_1009() {
    let app = spawn_app().await;
    let u = app.register("alice").await;
    let mut s = app.socket(&u).await;
    s.send_raw(&format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "x".repeat(100 * 1024)
    ))
    .await;
    s.expect_close(1009).await;
    // The server is fine.
    let mut s = app.socket(&u).await;
    s.send(json!({"type": "ping"})).await;
    s.expect("pong").await;
}

/// A logout ends that session's open sockets (4401) within a few
/// seconds; the user's other sessions keep theirs.
#[tokio::test]
async fn a_logout_closes_that_sessions_sockets_with_4401() {
    let app = spawn_app().await;
    let u = app.register("alice").await;
    let login = app
        .post(
            "/v1/auth/login",
            None,
            json!({"username": "alice", "password": crate::helpers::PASSWORD}),
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.text);
    let phone = User {
        id: u.id.clone(),
        token: login.json()["token"].as_str().unwrap().to_owned(),
    };
    let mut laptop_socks = [app.socket(&u).await, app.socket(&u).await];
    let mut phone_sock = app.socket(&phone).await;
    let r = app.post("/v1/auth/logout", Some(&u.token), json!({})).await;
    assert_eq!(r.status, 204, "{}", r.text);
    for s in &mut laptop_socks {
        s.expect_close(4401).await;
    }
    phone_sock.send(json!({"type": "ping"})).await;
    phone_sock.expect("pong").await;
}

/// A user's frames beyond the rate wait their turn: every one is answered,
/// none faster than the rate, and other users are not slowed.
#[tokio::test]
async fn a_users_frames_are_throttled_not_dropped() {
    let app = spawn_app_with(Deployment::new(), |c| {
        c.limits.frames_per_user = Rate::per(10, Duration::from_secs(1));
    })
    .await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let (mut one, mut two) = (app.socket(&a).await, app.socket(&a).await);
    let mut bystander = app.socket(&b).await;
    let started = Instant::now();
    // 40 frames over two sockets of one user: 10 at once, then 10 a second.
    for _ in 0..20 {
        one.send(json!({"type": "ping"})).await;
        two.send(json!({"type": "ping"})).await;
    }
    let asked = Instant::now();
    bystander.send(json!({"type": "ping"})).await;
    bystander.expect("pong").await;
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "another user waited {:?}",
        asked.elapsed()
    );
    for s in [&mut one, &mut two] {
        for _ in 0..20 {
            s.expect("pong").await;
        }
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2500),
        "40 frames at 10/s (bursts of 10) took only {took:?}"
    );
}

use std::time::Duration;

use reqwest::header;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{spawn_app, Socket};

#[tokio::test]
async fn three_ways_to_authenticate_and_4401_otherwise() {
    let app = spawn_app().await;
    let u = app.register("alice").await;
    // Bearer header.
    app.socket(&u).await;
    // Cookie.
    let mut req = app.ws_url().into_client_request().unwrap();
    req.headers_mut().insert(
        header::COOKIE,
        format!("parley_session={}", u.token).parse().unwrap(),
    );
    let mut s = Socket::connect(req).await;
    assert_eq!(s.expect("ready").await["user_id"], u.id.as_str());
    s.expect("synced").await;
    // First frame.
    let mut s = Socket::connect(app.ws_url().into_client_request().unwrap()).await;
    s.send(json!({"type": "auth", "token": u.token})).await;
    assert_eq!(s.expect("ready").await["user_id"], u.id.as_str());
    s.expect("synced").await;
    // Bad token in a header, in a first frame, or a first frame of the wrong kind.
    let mut req = app.ws_url().into_client_request().unwrap();
    req.headers_mut()
        .insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
    Socket::connect(req).await.expect_close(4401).await;
    let mut s = Socket::connect(app.ws_url().into_client_request().unwrap()).await;
    s.send(json!({"type": "auth", "token": "nope"})).await;
    s.expect_close(4401).await;
    let mut s = Socket::connect(app.ws_url().into_client_request().unwrap()).await;
    s.send(json!({"type": "ping"})).await;
    s.expect_close(4401).await;
}

#[tokio::test]
async fn silence_instead_of_auth_is_closed_after_five_seconds() {
    let app = spawn_app().await;
    let mut s = Socket::connect(app.ws_url().into_client_request().unwrap()).await;
    s.expect_close(4401).await;
}

#[tokio::test]
async fn messages_reach_every_device_of_both_participants() {
    let app = spawn_app().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let mut b_phone = app.socket(&b).await;
    let mut b_laptop = app.socket(&b).await;
    let mut a_laptop = app.socket(&a).await;
    let sent = app.send(&a, &b, "hi everywhere").await;
    for s in [&mut b_phone, &mut b_laptop, &mut a_laptop] {
        let f = s.expect("message").await;
        assert_eq!(f["message"], sent);
    }
    // A third party sees nothing.
    let c = app.register("carol").await;
    let mut c_sock = app.socket(&c).await;
    app.send(&a, &b, "private").await;
    b_phone.expect("message").await;
    c_sock.assert_quiet(300).await;
}

#[tokio::test]
async fn an_ack_becomes_one_delivered_receipt_for_the_sender() {
    let app = spawn_app().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let mut a_sock = app.socket(&a).await;
    let mut b_sock = app.socket(&b).await;
    let sent = app.send(&a, &b, "did you get this?").await;
    a_sock.expect("message").await;
    let got = b_sock.expect("message").await;
    let id = got["message"]["id"].clone();
    b_sock.send(json!({"type": "ack", "message_id": id})).await;
    b_sock.send(json!({"type": "ack", "message_id": id})).await;
    let receipt = a_sock.expect("delivered").await;
    assert_eq!(receipt["message_id"], sent["id"]);
    assert_eq!(receipt["conversation_id"], sent["conversation_id"]);
    assert!(receipt["at"].is_string());
    a_sock.assert_quiet(400).await;
    // The sender cannot ack their own message; unknown ids are errors.
    a_sock.send(json!({"type": "ack", "message_id": id})).await;
    assert_eq!(a_sock.expect("error").await["type"], "error");
    a_sock
        .send(json!({"type": "ack", "message_id": uuid::Uuid::now_v7().to_string()}))
        .await;
    a_sock.expect("error").await;
    a_sock.send(json!({"type": "ack", "message_id": "x"})).await;
    a_sock.expect("error").await;
    for _ in 0..200 {
        let h = app.history(&a, &b).await;
        if h[0]["delivered_at"].is_string() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("history never showed delivered_at");
}

#[tokio::test]
async fn marking_read_sends_a_read_receipt_to_the_peer() {
    let app = spawn_app().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let mut a_sock = app.socket(&a).await;
    let sent = app.send(&a, &b, "read me").await;
    a_sock.expect("message").await;
    app.mark_read(&b, &a, &sent["id"]).await;
    let f = a_sock.expect("read").await;
    assert_eq!(f["up_to"], sent["id"]);
    assert_eq!(f["by"], b.id.as_str());
    assert_eq!(f["conversation_id"], sent["conversation_id"]);
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_socket_stays_open() {
    let app = spawn_app().await;
    let u = app.register("alice").await;
    let mut s = app.socket(&u).await;
    s.send(json!({"type": "dance"})).await;
    assert!(s.expect("error").await["detail"].is_string());
    s.send_raw("{not json").await;
    s.expect("error").await;
    // The resume frame of earlier releases is gone: `since` replaced it.
    s.send(json!({"type": "resume", "after": "nope"})).await;
    s.expect("error").await;
    s.send(json!({"type": "ping"})).await;
    s.expect("pong").await;
}

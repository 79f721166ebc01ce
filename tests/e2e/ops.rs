use parley::cli::Backend;
use serde_json::{json, Value};

use crate::helpers::{backend, spawn_app, PASSWORD};

#[tokio::test]
async fn health_readiness_metrics_and_openapi() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz", None).await.status, 200);
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "ready");
    // ws-push is ready once it has read the recent log into its memory.
    assert_eq!(ready.json()["checks"]["ws-push"], "ok", "{}", ready.text);
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    app.send(&a, &b, "counted").await;
    app.history_of_len(&a, &b, 1).await;
    let metrics = app.get("/metrics", None).await.text;
    for name in [
        "parley_sends_total",
        "parley_send_duration_seconds_bucket",
        "parley_log_commit_seconds_bucket",
        "parley_projector_events_total",
        "parley_http_requests_total",
        "parley_http_request_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    if backend() == Backend::Cluster {
        // Every store request is timed under its statement's name: the
        // history page above read its timeline slice.
        let page = r#"parley_cql_request_seconds_count{statement="timeline_page"}"#;
        assert!(metrics.contains(page), "/metrics lacks {page}");
    }
    let spec = app.get("/openapi.json", None).await.json();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/auth/register", "post"),
        ("/v1/auth/login", "post"),
        ("/v1/auth/logout", "post"),
        ("/v1/me", "get"),
        ("/v1/users", "get"),
        ("/v1/messages", "post"),
        ("/v1/conversations", "get"),
        ("/v1/conversations/{peer_id}/messages", "get"),
        ("/v1/conversations/{peer_id}/read", "post"),
        ("/v1/ws", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "OpenAPI lacks {method} {path}"
        );
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = spawn_app().await;
    app.get("/v2/nothing", None).await.problem(404);
    app.call(reqwest::Method::DELETE, "/v1/messages", None, None)
        .await
        .problem(405);
}

/// No route ever answers with a password or a hash, whatever it is asked.
#[tokio::test]
async fn no_response_leaks_a_password_or_hash() {
    let app = spawn_app().await;
    let mut bodies: Vec<String> = Vec::new();
    let reg = app
        .post(
            "/v1/auth/register",
            None,
            json!({"username": "leaky", "password": PASSWORD}),
        )
        .await;
    bodies.push(reg.text.clone());
    let token = reg.json()["token"].as_str().unwrap().to_owned();
    let b = app.register("bob").await;
    bodies.push(
        app.post(
            "/v1/auth/login",
            None,
            json!({"username": "leaky", "password": PASSWORD}),
        )
        .await
        .text,
    );
    bodies.push(
        app.post(
            "/v1/auth/login",
            None,
            json!({"username": "leaky", "password": "bad password"}),
        )
        .await
        .text,
    );
    bodies.push(
        app.post(
            "/v1/auth/register",
            None,
            json!({"username": "leaky", "password": PASSWORD}),
        )
        .await
        .text,
    );
    bodies.push(app.get("/v1/me", Some(&token)).await.text);
    bodies.push(app.get("/v1/users?query=l", Some(&token)).await.text);
    let sent = app
        .post(
            "/v1/messages",
            Some(&token),
            json!({"to": b.id, "body": "hi"}),
        )
        .await;
    bodies.push(sent.text.clone());
    app.history_of_len(
        &b,
        &crate::helpers::User {
            id: reg.json()["user"]["id"].as_str().unwrap().into(),
            token: token.clone(),
        },
        1,
    )
    .await;
    bodies.push(app.get("/v1/conversations", Some(&token)).await.text);
    bodies.push(app.get("/v1/conversations", Some(&b.token)).await.text);
    bodies.push(
        app.get(
            &format!("/v1/conversations/{}/messages", b.id),
            Some(&token),
        )
        .await
        .text,
    );
    bodies.push(app.get("/metrics", None).await.text);
    bodies.push(app.get("/readyz", None).await.text);
    for body in &bodies {
        let lower = body.to_lowercase();
        assert!(
            !lower.contains(&PASSWORD.to_lowercase()),
            "password leaked: {body}"
        );
        assert!(!lower.contains("$argon2"), "hash leaked: {body}");
        assert!(
            !lower.contains("password_hash") && !lower.contains("\"hash\""),
            "hash field leaked: {body}"
        );
        if let Ok(v) = serde_json::from_str::<Value>(body) {
            assert!(v.pointer("/user/password").is_none());
        }
    }
}

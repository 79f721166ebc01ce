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
    // The limits the handlers enforce, from the constants they use.
    use parley_domain::{ClientId, DisplayName, MessageBody, Password, Username};
    let schema =
        |name: &str, field: &str| spec["components"]["schemas"][name]["properties"][field].clone();
    let register = |f| schema("RegisterBody", f);
    assert_eq!(register("username")["pattern"], Username::PATTERN);
    assert_eq!(register("password")["minLength"], Password::MIN_BYTES);
    assert_eq!(register("password")["maxLength"], Password::MAX_BYTES);
    assert!(register("password")["description"]
        .as_str()
        .unwrap()
        .contains("BYTES"));
    assert_eq!(register("display_name")["pattern"], DisplayName::PATTERN);
    assert_eq!(
        schema("SendBody", "body")["maxLength"],
        MessageBody::MAX_CHARS
    );
    assert_eq!(schema("SendBody", "body")["pattern"], MessageBody::PATTERN);
    assert_eq!(
        schema("SendBody", "client_id")["pattern"],
        ClientId::PATTERN
    );
    let history = &spec["paths"]["/v1/conversations/{peer_id}/messages"]["get"]["parameters"];
    let limit = history
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(limit["schema"]["maximum"], 200);
    // The socket's frames, sync tokens and all.
    let frames = serde_json::to_string(&spec["components"]["schemas"]["ServerFrame"]).unwrap();
    for kind in ["ready", "message", "delivered", "read", "synced", "error"] {
        assert!(
            frames.contains(&format!("\"{kind}\"")),
            "ServerFrame lacks {kind}"
        );
    }
    assert!(spec["paths"]["/v1/ws"]["get"]["description"]
        .as_str()
        .unwrap()
        .contains("4409"));
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

/// Made-up methods and paths add no metric series: 500 requests with long
/// random methods leave `/metrics` the size it was.
#[tokio::test]
async fn metric_labels_come_from_a_closed_set() {
    let d = crate::helpers::Deployment::new();
    let p = crate::helpers::Process::start(&d).await;
    let app = p.client().await;
    let odd = |i: usize| {
        let name: String = (0..64)
            .map(|k| char::from(b'A' + ((i * 31 + k * 7) % 26) as u8))
            .collect();
        reqwest::Method::from_bytes(name.as_bytes()).unwrap()
    };
    let path = |i: usize| format!("/v1/nothing-{i}-{}", "x".repeat(200));
    // One of each first (and a scrape), so the series they fall into exist.
    let _ = app.call(odd(0), &path(0), None, None).await;
    let _ = app.call(odd(0), "/v1/messages", None, None).await;
    let _ = app.get("/metrics", None).await;
    let before = app.get("/metrics", None).await.text.len();
    for i in 1..=500 {
        let target = if i % 2 == 0 {
            path(i)
        } else {
            "/v1/messages".to_owned()
        };
        let r = app.call(odd(i), &target, None, None).await;
        assert!(r.status.is_client_error(), "{}", r.status);
    }
    let after = app.get("/metrics", None).await;
    assert!(
        after.text.len() < before + 2048,
        "/metrics grew from {before} to {} bytes",
        after.text.len()
    );
    assert!(after.text.contains(r#"method="other""#));
}

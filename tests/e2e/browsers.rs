//! What a page on another site can make a victim's browser do with the
//! session cookie, and the headers that keep browsers and caches honest.

use reqwest::{header, Method};
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, Deployment, Reply, TestApp, User};

/// A request authenticated by the session cookie only, as a browser sends
/// it, with `Origin` when given.
async fn by_cookie(
    app: &TestApp,
    method: Method,
    path: &str,
    user: &User,
    origin: Option<&str>,
    content_type: &str,
    body: String,
) -> Reply {
    let mut req = app
        .http
        .request(method, app.url(path))
        .header(header::COOKIE, format!("parley_session={}", user.token))
        .header(header::CONTENT_TYPE, content_type)
        .body(body);
    if let Some(o) = origin {
        req = req.header(header::ORIGIN, o);
    }
    let res = req.send().await.unwrap();
    Reply {
        status: res.status(),
        headers: res.headers().clone(),
        text: res.text().await.unwrap(),
    }
}

#[tokio::test]
async fn cookie_writes_from_a_foreign_origin_are_refused_and_change_nothing() {
    let app = spawn_app_with(Deployment::new(), |c| {
        c.http.allowed_origins =
            parley_http_kit::origin::Origins::parse(&["https://app.example"]).unwrap();
    })
    .await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let send = |body: &str| json!({"to": b.id, "body": body}).to_string();
    let json = "application/json";
    let evil = Some("https://evil.example");

    by_cookie(
        &app,
        Method::POST,
        "/v1/messages",
        &a,
        evil,
        json,
        send("csrf"),
    )
    .await
    .problem(403);
    by_cookie(
        &app,
        Method::POST,
        "/v1/auth/logout",
        &a,
        evil,
        json,
        "{}".into(),
    )
    .await
    .problem(403);
    assert_eq!(
        app.get("/v1/me", Some(&a.token)).await.status,
        200,
        "not logged out"
    );
    // JSON dressed as a form post, which a page may send without asking.
    by_cookie(
        &app,
        Method::POST,
        "/v1/messages",
        &a,
        None,
        "text/plain",
        send("plain"),
    )
    .await
    .problem(415);

    // The server's own pages, allowed origins, non-browsers and bearer
    // tokens are not affected.
    let own = format!("http://{}", app.addr);
    for (origin, body) in [
        (Some(own.as_str()), "own"),
        (Some("https://app.example"), "allowed"),
        (None, "no origin"),
    ] {
        let r = by_cookie(
            &app,
            Method::POST,
            "/v1/messages",
            &a,
            origin,
            json,
            send(body),
        )
        .await;
        assert_eq!(r.status, 202, "{origin:?}: {}", r.text);
    }
    let r = app
        .http
        .post(app.url("/v1/messages"))
        .bearer_auth(&a.token)
        .header(header::ORIGIN, "https://evil.example")
        .json(&json!({"to": b.id, "body": "bearer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let h = app.history_of_len(&b, &a, 4).await;
    let mut bodies: Vec<&str> = h.iter().map(|m| m["body"].as_str().unwrap()).collect();
    bodies.sort_unstable();
    assert_eq!(bodies, ["allowed", "bearer", "no origin", "own"]);
}

#[tokio::test]
async fn cors_answers_only_for_allowed_origins() {
    let preflight = |app: &TestApp, origin: &'static str| {
        let req = app
            .http
            .request(Method::OPTIONS, app.url("/v1/messages"))
            .header(header::ORIGIN, origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type");
        async move { req.send().await.unwrap() }
    };
    let closed = spawn_app().await;
    let r = preflight(&closed, "https://app.example").await;
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "{r:?}"
    );

    let open = spawn_app_with(Deployment::new(), |c| {
        c.http.allowed_origins =
            parley_http_kit::origin::Origins::parse(&["https://app.example"]).unwrap();
    })
    .await;
    let r = preflight(&open, "https://app.example").await;
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");
    let r = preflight(&open, "https://evil.example").await;
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "{r:?}"
    );
}

#[tokio::test]
async fn every_answer_is_nosniff_and_private_ones_are_not_stored() {
    let app = spawn_app().await;
    let reg = app
        .post(
            "/v1/auth/register",
            None,
            json!({"username": "carol", "password": crate::helpers::PASSWORD}),
        )
        .await;
    let token = reg.json()["token"].as_str().unwrap().to_owned();
    let login = app
        .post(
            "/v1/auth/login",
            None,
            json!({"username": "carol", "password": crate::helpers::PASSWORD}),
        )
        .await;
    let me = app.get("/v1/me", Some(&token)).await;
    let inbox = app.get("/v1/conversations", Some(&token)).await;
    let refused = app.get("/v1/me", None).await;
    let missing = app.get("/nowhere", None).await;
    let health = app.get("/healthz", None).await;
    for r in [&reg, &login, &me, &inbox, &refused, &missing, &health] {
        assert_eq!(r.headers["x-content-type-options"], "nosniff", "{}", r.text);
    }
    for r in [&reg, &login, &me, &inbox] {
        assert_eq!(r.headers["cache-control"], "no-store", "{}", r.text);
    }
}

use serde_json::json;

use crate::helpers::{spawn_app, PASSWORD};

#[tokio::test]
async fn register_returns_user_token_and_a_strict_cookie() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/v1/auth/register",
            None,
            json!({"username": "Alice", "password": PASSWORD, "display_name": " Alice A. "}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let v = r.json();
    assert_eq!(v["user"]["username"], "alice");
    assert_eq!(v["user"]["display_name"], "Alice A.");
    assert!(v["user"]["created_at"].is_string());
    let token = v["token"].as_str().unwrap();
    let cookie = r.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with(&format!("parley_session={token};")),
        "{cookie}"
    );
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(!cookie.contains("Secure"));
    let keys: Vec<_> = v["user"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys.len(),
        4,
        "user has exactly id, username, display_name, created_at: {keys:?}"
    );
}

#[tokio::test]
async fn usernames_are_unique_case_insensitively() {
    let app = spawn_app().await;
    app.register("bob").await;
    let r = app
        .post(
            "/v1/auth/register",
            None,
            json!({"username": "BOB", "password": PASSWORD}),
        )
        .await;
    r.problem(409);
}

#[tokio::test]
async fn registration_rules_name_the_field() {
    let app = spawn_app().await;
    let cases = [
        (json!({"username": "ab", "password": PASSWORD}), "username"),
        (
            json!({"username": "no spaces", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"username": "carol", "password": "short"}),
            "password",
        ),
        (
            json!({"username": "carol", "password": "x".repeat(1025)}),
            "password",
        ),
        (
            json!({"username": "carol", "password": PASSWORD, "display_name": "   "}),
            "display_name",
        ),
        (json!({"password": PASSWORD}), "username"),
        (json!({"username": 7, "password": PASSWORD}), "username"),
    ];
    for (body, field) in cases {
        let r = app.post("/v1/auth/register", None, body.clone()).await;
        assert_eq!(r.field_error(), field, "{body}");
    }
    // Nothing was created by any of them.
    let u = app.register("dave").await;
    let r = app.get("/v1/users?query=carol", Some(&u.token)).await;
    assert_eq!(r.json()["users"], json!([]));
}

#[tokio::test]
async fn login_succeeds_and_failures_look_the_same() {
    let app = spawn_app().await;
    let u = app.register("erin").await;
    let ok = app
        .post(
            "/v1/auth/login",
            None,
            json!({"username": "ERIN", "password": PASSWORD}),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.json()["user"]["id"], u.id.as_str());
    assert!(ok.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("HttpOnly"));
    let wrong = app
        .post(
            "/v1/auth/login",
            None,
            json!({"username": "erin", "password": "wrong password"}),
        )
        .await;
    let nobody = app
        .post(
            "/v1/auth/login",
            None,
            json!({"username": "nobody", "password": "wrong password"}),
        )
        .await;
    wrong.problem(401);
    nobody.problem(401);
    assert_eq!(wrong.text, nobody.text);
}

#[tokio::test]
async fn me_accepts_bearer_and_cookie_and_refuses_the_rest() {
    let app = spawn_app().await;
    let u = app.register("frank").await;
    let r = app.get("/v1/me", Some(&u.token)).await;
    assert_eq!(r.json()["user"]["username"], "frank");
    let by_cookie = app
        .http
        .get(app.url("/v1/me"))
        .header("cookie", format!("other=1; parley_session={}", u.token))
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), 200);
    app.get("/v1/me", None).await.problem(401);
    app.get("/v1/me", Some("not-a-token")).await.problem(401);
    let forged = format!("{}x", u.token);
    app.get("/v1/me", Some(&forged)).await.problem(401);
}

#[tokio::test]
async fn logout_clears_the_cookie_and_ends_the_session() {
    let app = spawn_app().await;
    let u = app.register("gina").await;
    let r = app.post("/v1/auth/logout", Some(&u.token), json!({})).await;
    assert_eq!(r.status, 204);
    let cookie = r.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("parley_session=;") && cookie.contains("Max-Age=0"),
        "{cookie}"
    );
    app.get("/v1/me", Some(&u.token)).await.problem(401);
    app.post("/v1/auth/logout", None, json!({}))
        .await
        .problem(401);
    // A fresh login works again.
    let again = app
        .post(
            "/v1/auth/login",
            None,
            json!({"username": "gina", "password": PASSWORD}),
        )
        .await;
    let token = again.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(app.get("/v1/me", Some(&token)).await.status, 200);
}

#[tokio::test]
async fn user_search_is_by_prefix_and_bounded() {
    let app = spawn_app().await;
    let me = app.register("searcher").await;
    for i in 0..25 {
        app.register(&format!("sam{i:02}")).await;
    }
    app.register("other").await;
    let r = app.get("/v1/users?query=SAM", Some(&me.token)).await;
    let users = r.json()["users"].as_array().unwrap().clone();
    assert_eq!(users.len(), 20);
    assert!(users
        .iter()
        .all(|u| u["username"].as_str().unwrap().starts_with("sam")));
    assert_eq!(users[0]["username"], "sam00");
    let one = app.get("/v1/users?query=oth", Some(&me.token)).await.json();
    assert_eq!(one["users"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/v1/users", Some(&me.token)).await.field_error(),
        "query"
    );
    assert_eq!(
        app.get("/v1/users?query=a%20b", Some(&me.token))
            .await
            .field_error(),
        "query"
    );
    app.get("/v1/users?query=sam", None).await.problem(401);
}

//! The web chat that `parley dev` serves at `/`: its files with their
//! types and security headers, and the API's 404 still answering every
//! other path.

use reqwest::header;

use crate::helpers::{spawn_app, Deployment, Process};

#[tokio::test]
async fn parley_dev_serves_the_web_chat_with_its_headers() {
    let d = Deployment::new();
    let p = Process::start(&d).await;
    let app = p.client().await;

    let page = app.get("/", None).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let h = &page.headers;
    let get = |name: header::HeaderName| {
        h.get(&name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(get(header::CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(get(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(get(header::CACHE_CONTROL), "no-cache");
    let csp = get(header::CONTENT_SECURITY_POLICY);
    assert!(csp.starts_with("default-src 'self';"), "{csp}");
    for directive in csp.split(';') {
        let sources: Vec<&str> = directive.split_whitespace().skip(1).collect();
        assert!(
            sources.iter().all(|s| *s == "'self'" || *s == "'none'"),
            "only the page's own origin: {directive}"
        );
    }
    assert!(page
        .text
        .contains(r#"<script type="module" src="/app.js">"#));

    for (path, kind) in [
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/app.css", "text/css; charset=utf-8"),
        ("/icon.svg", "image/svg+xml"),
    ] {
        let r = app.get(path, None).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.headers.get(header::CONTENT_TYPE).unwrap(), kind, "{path}");
        assert_eq!(
            r.headers.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(),
            "nosniff"
        );
        assert!(r.headers.contains_key(header::ETAG), "{path}");
        assert!(!r.text.is_empty());
    }

    // Paths that are not files still get the API's answers.
    for path in [
        "/nope",
        "/app.js.map",
        "/index.html",
        "/v1/nope",
        "/assets/app.js",
    ] {
        app.get(path, None).await.problem(404);
    }
    app.call(reqwest::Method::POST, "/", None, Some("{}".into()))
        .await
        .problem(405);
    // And the API itself is there, on the same origin.
    assert_eq!(app.get("/v1/me", None).await.problem(401)["status"], 401);
}

#[tokio::test]
async fn roles_without_dev_serve_no_page() {
    let app = spawn_app().await;
    app.get("/", None).await.problem(404);
    app.get("/app.js", None).await.problem(404);
}

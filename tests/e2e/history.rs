use std::collections::HashSet;

use crate::helpers::spawn_app;

#[tokio::test]
async fn pages_cover_the_history_with_no_gap_and_no_overlap() {
    let app = spawn_app().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let mut sent = Vec::new();
    for i in 0..120 {
        let (from, to) = if i % 3 == 0 { (&b, &a) } else { (&a, &b) };
        sent.push(
            app.send(from, to, &format!("m{i}")).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    app.history_of_len(&a, &b, 120).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut sizes = Vec::new();
    loop {
        let q = match &cursor {
            Some(c) => format!("?before={c}"),
            None => String::new(),
        };
        let page = app.page(&a, &b, &q).await;
        let msgs = page["messages"].as_array().unwrap();
        sizes.push(msgs.len());
        seen.extend(msgs.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        sizes,
        vec![50, 50, 20],
        "default limit 50, last page short, no empty page"
    );
    sent.reverse();
    assert_eq!(seen, sent, "newest first, every message exactly once");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 120);
    // Explicit limits.
    let p = app.page(&a, &b, "?limit=7").await;
    assert_eq!(p["messages"].as_array().unwrap().len(), 7);
    let p = app.page(&a, &b, "?limit=200").await;
    assert_eq!(p["messages"].as_array().unwrap().len(), 120);
    assert!(p["next_cursor"].is_null());
}

#[tokio::test]
async fn history_rules() {
    let app = spawn_app().await;
    let (a, b, c) = (
        app.register("alice").await,
        app.register("bob").await,
        app.register("carol").await,
    );
    app.send(&a, &b, "for bob").await;
    app.send(&a, &c, "for carol").await;
    app.history_of_len(&a, &c, 1).await;
    let path = |q: &str| format!("/v1/conversations/{}/messages{q}", b.id);
    for bad in ["?limit=0", "?limit=201", "?limit=x"] {
        assert_eq!(
            app.get(&path(bad), Some(&a.token)).await.field_error(),
            "limit",
            "{bad}"
        );
    }
    for bad in ["?before=garbage", "?before="] {
        assert_eq!(
            app.get(&path(bad), Some(&a.token)).await.field_error(),
            "before",
            "{bad}"
        );
    }
    let ghost = format!("/v1/conversations/{}/messages", uuid::Uuid::now_v7());
    app.get(&ghost, Some(&a.token)).await.problem(404);
    app.get("/v1/conversations/not-a-user/messages", Some(&a.token))
        .await
        .problem(404);
    app.get(&path(""), None).await.problem(401);
    // A conversation holds only its pair's messages.
    let h = app.history(&b, &a).await;
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["body"], "for bob");
    assert!(app.history(&b, &c).await.is_empty());
}

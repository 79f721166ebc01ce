use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_send_is_accepted_and_lands_in_both_histories() {
    let app = spawn_app().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let m = app.send(&a, &b, "hello bob").await;
    assert_eq!(m["from"], a.id.as_str());
    assert_eq!(m["to"], b.id.as_str());
    assert_eq!(m["body"], "hello bob");
    assert!(m["id"].is_string() && m["sent_at"].is_string() && m["conversation_id"].is_string());
    let seen_by_a = app.history_of_len(&a, &b, 1).await;
    let seen_by_b = app.history_of_len(&b, &a, 1).await;
    assert_eq!(seen_by_a, seen_by_b);
    assert_eq!(seen_by_a[0]["id"], m["id"]);
}

#[tokio::test]
async fn the_sender_is_the_token_never_the_body() {
    let app = spawn_app().await;
    let (a, b, c) = (
        app.register("alice").await,
        app.register("bob").await,
        app.register("carol").await,
    );
    for field in ["from", "sender_id"] {
        let r = app
            .post(
                "/v1/messages",
                Some(&a.token),
                json!({"to": b.id, "body": "x", field: c.id}),
            )
            .await;
        r.problem(403);
    }
    // Naming yourself is allowed; the message is still yours.
    let r = app
        .post(
            "/v1/messages",
            Some(&a.token),
            json!({"to": b.id, "body": "me", "from": a.id}),
        )
        .await;
    assert_eq!(r.status, 202);
    app.post("/v1/messages", None, json!({"to": b.id, "body": "x"}))
        .await
        .problem(401);
    let h = app.history_of_len(&b, &a, 1).await;
    assert_eq!(h.len(), 1, "refused sends appended nothing");
    assert_eq!(h[0]["from"], a.id.as_str());
}

#[tokio::test]
async fn send_rules() {
    let app = spawn_app().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let send = |body: serde_json::Value| {
        let app = &app;
        let token = a.token.clone();
        async move { app.post("/v1/messages", Some(&token), body).await }
    };
    assert_eq!(
        send(json!({"to": b.id, "body": ""})).await.field_error(),
        "body"
    );
    assert_eq!(
        send(json!({"to": b.id, "body": " \n\t"}))
            .await
            .field_error(),
        "body"
    );
    assert_eq!(
        send(json!({"to": b.id, "body": "é".repeat(4097)}))
            .await
            .field_error(),
        "body"
    );
    assert_eq!(send(json!({"to": b.id})).await.field_error(), "body");
    assert_eq!(send(json!({"body": "x"})).await.field_error(), "to");
    assert_eq!(
        send(json!({"to": "not-an-id", "body": "x"}))
            .await
            .field_error(),
        "to"
    );
    assert_eq!(
        send(json!({"to": a.id, "body": "x"})).await.field_error(),
        "to"
    );
    assert_eq!(
        send(json!({"to": b.id, "body": "x", "client_id": ""}))
            .await
            .field_error(),
        "client_id"
    );
    assert_eq!(
        send(json!(["not", "an", "object"])).await.field_error(),
        "body"
    );
    let ghost = uuid::Uuid::now_v7().to_string();
    send(json!({"to": ghost, "body": "x"})).await.problem(404);
    let longest = send(json!({"to": b.id, "body": "é".repeat(4096)})).await;
    assert_eq!(longest.status, 202);
    let h = app.history_of_len(&a, &b, 1).await;
    assert_eq!(h.len(), 1, "only the valid send was appended");
}

#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let app = spawn_app().await;
    let a = app.register("alice").await;
    let r = app
        .call(
            reqwest::Method::POST,
            "/v1/messages",
            Some(&a.token),
            Some("{\"to\":".into()),
        )
        .await;
    r.problem(400);
    let r = app
        .call(
            reqwest::Method::POST,
            "/v1/auth/register",
            None,
            Some("not json".into()),
        )
        .await;
    r.problem(400);
    let huge = json!({"to": a.id, "body": "x".repeat(70 * 1024)}).to_string();
    let r = app
        .call(
            reqwest::Method::POST,
            "/v1/messages",
            Some(&a.token),
            Some(huge),
        )
        .await;
    r.problem(413);
}

#[tokio::test]
async fn repeating_a_client_id_returns_the_first_message_and_other_content_is_a_conflict() {
    let app = spawn_app().await;
    let (a, b, c) = (
        app.register("alice").await,
        app.register("bob").await,
        app.register("carol").await,
    );
    let send = |to: &str, body: &str| {
        app.post(
            "/v1/messages",
            Some(&a.token),
            json!({"to": to, "body": body, "client_id": "c-1"}),
        )
    };
    let first = send(&b.id, "once").await;
    let again = send(&b.id, "once").await;
    assert_eq!(first.status, 202);
    assert_eq!(again.status, 202);
    assert_eq!(first.json()["message"], again.json()["message"]);
    // The same id for another body or another recipient is refused, and
    // the new message is not silently dropped behind a 202.
    send(&b.id, "twice?").await.problem(409);
    send(&c.id, "once").await.problem(409);
    // The same client_id from another sender is another message.
    let other = app
        .post(
            "/v1/messages",
            Some(&b.token),
            json!({"to": a.id, "body": "mine", "client_id": "c-1"}),
        )
        .await;
    assert_ne!(other.json()["message"]["id"], first.json()["message"]["id"]);
    let h = app.history_of_len(&a, &b, 2).await;
    assert_eq!(h.len(), 2);
    assert_eq!(h.iter().filter(|m| m["body"] == "once").count(), 1);
    assert_eq!(h.iter().filter(|m| m["body"] == "twice?").count(), 0);
    app.send(&a, &c, "after").await;
    let with_carol = app.history_of_len(&a, &c, 1).await;
    assert_eq!(with_carol.len(), 1, "nothing reached carol under c-1");
}

#[tokio::test]
async fn a_read_marker_must_name_a_message_of_its_conversation() {
    let app = spawn_app().await;
    let (a, b, c) = (
        app.register("alice").await,
        app.register("bob").await,
        app.register("carol").await,
    );
    for i in 0..2 {
        app.send(&a, &b, &format!("m{i}")).await;
    }
    // Newer than everything Bob has: if taken, it would mark it all read.
    let elsewhere = app.send(&a, &c, "to carol").await;
    app.history_of_len(&a, &c, 1).await;
    let path = format!("/v1/conversations/{}/read", a.id);
    let r = app
        .post(&path, Some(&b.token), json!({"up_to": elsewhere["id"]}))
        .await;
    assert_eq!(r.field_error(), "up_to");
    // An id no message ever had (an hour old, so not one in flight).
    let hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    let ghost = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, hour_ago, 0));
    let r = app
        .post(&path, Some(&b.token), json!({"up_to": ghost.to_string()}))
        .await;
    assert_eq!(r.field_error(), "up_to");
    // Nothing was appended: Bob's two messages are still unread.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.inbox(&b).await["conversations"][0]["unread_count"], 2);
    assert!(app
        .history(&b, &a)
        .await
        .iter()
        .all(|m| m["read_at"].is_null()));
}

/// A client marks read a message the moment it is accepted, before the
/// read side has it: that is a valid marker, never a 422.
#[tokio::test]
async fn marking_read_a_message_just_accepted_is_not_refused() {
    let app = spawn_app().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    for i in 0..20 {
        let m = app.send(&a, &b, &format!("m{i}")).await;
        app.mark_read(&b, &a, &m["id"]).await;
    }
}

#[tokio::test]
async fn reading_a_conversation_updates_unread_counts_and_read_at() {
    let app = spawn_app().await;
    let (a, b) = (app.register("alice").await, app.register("bob").await);
    let mut last = serde_json::Value::Null;
    for i in 0..3 {
        last = app.send(&a, &b, &format!("m{i}")).await;
    }
    app.history_of_len(&b, &a, 3).await;
    let inbox = app.inbox(&b).await;
    assert_eq!(inbox["conversations"][0]["unread_count"], 3);
    assert_eq!(app.inbox(&a).await["conversations"][0]["unread_count"], 0);
    app.mark_read(&b, &a, &last["id"]).await;
    for _ in 0..200 {
        if app.inbox(&b).await["conversations"][0]["unread_count"] == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(app.inbox(&b).await["conversations"][0]["unread_count"], 0);
    let h = app.history(&a, &b).await;
    assert!(h.iter().all(|m| m["read_at"].is_string()), "{h:?}");
    // Rules.
    let path = format!("/v1/conversations/{}/read", a.id);
    assert_eq!(
        app.post(&path, Some(&b.token), json!({"up_to": "x"}))
            .await
            .field_error(),
        "up_to"
    );
    assert_eq!(
        app.post(&path, Some(&b.token), json!({}))
            .await
            .field_error(),
        "up_to"
    );
    let ghost = format!("/v1/conversations/{}/read", uuid::Uuid::now_v7());
    app.post(&ghost, Some(&b.token), json!({"up_to": last["id"]}))
        .await
        .problem(404);
    app.post(&path, None, json!({"up_to": last["id"]}))
        .await
        .problem(401);
}

#[tokio::test]
async fn the_inbox_orders_conversations_by_last_activity() {
    let app = spawn_app().await;
    let (a, b, c) = (
        app.register("alice").await,
        app.register("bob").await,
        app.register("carol").await,
    );
    app.send(&b, &a, "from bob").await;
    let last = app.send(&c, &a, "from carol").await;
    app.history_of_len(&a, &c, 1).await;
    let inbox = app.inbox(&a).await;
    let convs = inbox["conversations"].as_array().unwrap();
    assert_eq!(convs.len(), 2);
    assert_eq!(convs[0]["peer"]["username"], "carol");
    assert_eq!(convs[0]["last_message"]["id"], last["id"]);
    assert_eq!(convs[0]["unread_count"], 1);
    assert_eq!(convs[1]["peer"]["username"], "bob");
    app.send(&a, &b, "reply to bob").await;
    app.history_of_len(&a, &b, 2).await;
    let inbox = app.inbox(&a).await;
    assert_eq!(inbox["conversations"][0]["peer"]["username"], "bob");
    assert_eq!(
        inbox["conversations"][0]["last_message"]["body"],
        "reply to bob"
    );
    app.get("/v1/conversations", None).await.problem(401);
}

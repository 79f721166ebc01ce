//! De-duplication by `client_id`: a send repeated with the same key is
//! appended once, and every repeat gets the first event back, whether the
//! log checks the key in its own transaction (SQLite) or claims it in the
//! CQL store before producing to Kafka.

use parley_domain::{
    commands::SendMessage,
    ports::{Appended, Claim, EventAppender},
    Event, Stamp, StoreError, UserId,
};

use crate::stores::Store;

fn send(from: UserId, to: UserId, body: &str, client_id: &str) -> SendMessage {
    SendMessage::decide(from, &to.to_string(), body.into(), Some(client_id.into()))
        .expect("a valid send")
}

#[tokio::test]
async fn a_repeated_client_id_is_appended_once() {
    for (kind, store) in Store::all().await {
        let appender = store.appender().await;
        let (a, b) = (UserId::new(), UserId::new());
        let first = match appender
            .append(send(a, b, "hello", "c-1").into_pending())
            .await
            .expect("append")
        {
            Appended::New(e) => e,
            Appended::Duplicate(_) => panic!("{kind}: a new key is new"),
        };
        for again in [
            send(a, b, "hello", "c-1"),
            send(a, b, "something else", "c-1"),
        ] {
            let is_retry = match &first.event {
                Event::MessageSent(m) => again.repeats(m),
                other => panic!("{kind}: {other:?}"),
            };
            match appender.append(again.into_pending()).await.expect("append") {
                // The caller tells a retry (same content) from a
                // conflicting reuse of the key by `repeats`.
                Appended::Duplicate(e) => assert_eq!(e, first, "{kind}"),
                Appended::New(e) => panic!("{kind}: appended again: {e:?} (retry: {is_retry})"),
            }
        }
        // The same key from another sender is another key.
        match appender
            .append(send(b, a, "hello", "c-1").into_pending())
            .await
            .expect("append")
        {
            Appended::New(e) => assert_ne!(e.id, first.id, "{kind}"),
            Appended::Duplicate(e) => panic!("{kind}: another sender's key: {e:?}"),
        }
    }
}

/// An appender that claimed a key and was killed before it produced: the
/// retry produces the claimed event (its id, not a new one) exactly once,
/// and a later retry finds it where it landed.
#[tokio::test]
async fn a_key_claimed_by_an_appender_that_died_is_appended_by_the_retry() {
    let store = Store::cql().await;
    let (a, b) = (UserId::new(), UserId::new());
    let pending = send(a, b, "hello", "c-1").into_pending();
    let key = pending.dedup.clone().expect("a keyed send");
    let stamp = Stamp::now();
    let claimed = (pending.build)(stamp);
    let payload = claimed.encode(stamp).expect("encode");
    assert_eq!(
        store.keys().claim(&key, &payload).await.expect("claim"),
        Claim::Won
    );

    let appender = store.appender().await;
    let mut answers = Vec::new();
    for _ in 0..2 {
        match appender
            .append(send(a, b, "hello", "c-1").into_pending())
            .await
            .expect("append")
        {
            Appended::Duplicate(e) => answers.push(e),
            Appended::New(e) => panic!("the claimed event was replaced: {e:?}"),
        }
    }
    assert_eq!(answers[0].id, stamp.id, "the claimed event's id");
    assert_eq!(answers[0].event, claimed);
    assert_eq!(answers[1], answers[0], "the second retry finds it settled");
    let logged: Vec<_> = store.logged().await.into_iter().map(|e| e.id).collect();
    assert_eq!(logged, vec![stamp.id], "in the log once");
}

/// Kafka cannot check a key in the append itself, so its appender alone
/// refuses a keyed event rather than append it without the check.
#[tokio::test]
async fn kafka_without_claims_refuses_a_keyed_event() {
    let store = Store::cql().await;
    let bare = store.kafka().await.appender();
    let (a, b) = (UserId::new(), UserId::new());
    match bare.append(send(a, b, "hello", "c-1").into_pending()).await {
        Err(StoreError::Unexpected(_)) => {}
        Err(e) => panic!("refused as {e:?}"),
        Ok(a) => panic!("appended: {:?}", a.event()),
    }
    assert!(store.logged().await.is_empty(), "nothing reached the log");
}

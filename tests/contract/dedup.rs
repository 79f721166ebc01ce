//! De-duplication by `client_id`: a send repeated with the same key is
//! appended once, and every repeat gets the first event back, whether the
//! log checks the key in its own transaction (SQLite) or claims it in the
//! CQL store before producing to Kafka.

use parley_domain::{commands::SendMessage, ports::Appended, Event, UserId};

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

//! The SQLite backend against its ports, on a real file.

use std::{collections::HashSet, sync::Arc};

use parley_domain::{
    commands::SendMessage,
    ports::{Appended, EventAppender, EventLog, ReadModelWriter, StartFrom, TimelineReader},
    ConversationId, UserId, Watermark,
};
use parley_store_sqlite::Embedded;

fn send(
    from: UserId,
    to: UserId,
    body: &str,
    client: Option<&str>,
) -> parley_domain::ports::PendingEvent {
    SendMessage::decide(from, &to.to_string(), body.into(), client.map(Into::into))
        .expect("valid send")
        .into_pending()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_all_durable_ordered_and_deduplicated() {
    let dir = tempfile::tempdir().expect("dir");
    let backend = Embedded::open(dir.path()).expect("open");
    let (a, b) = (UserId::new(), UserId::new());
    let appender: Arc<dyn EventAppender> = backend.appender.clone();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let appender = appender.clone();
        // Every third send repeats client id "dup": only one may be new.
        let client = if i % 3 == 0 {
            Some("dup".to_owned())
        } else {
            None
        };
        tasks.push(tokio::spawn(async move {
            appender
                .append(send(a, b, &format!("m{i}"), client.as_deref()))
                .await
        }));
    }
    let mut new = 0;
    let mut dup_ids = HashSet::new();
    for t in tasks {
        match t.await.expect("task").expect("append") {
            Appended::New(_) => new += 1,
            Appended::Duplicate(e) => {
                dup_ids.insert(e.id);
            }
        }
    }
    assert_eq!(new, 201, "200 plain sends and one 'dup'");
    assert_eq!(
        dup_ids.len(),
        1,
        "every repeat returned the same first event"
    );

    // Reopen: everything is there, in offset order, with ids increasing.
    drop(backend);
    let backend = Embedded::open(dir.path()).expect("reopen");
    let mut consumer = backend
        .log
        .subscribe("test", StartFrom::After(Watermark::default()))
        .await
        .expect("subscribe");
    let events = consumer
        .poll(1000, std::time::Duration::from_millis(100))
        .await
        .expect("poll");
    assert_eq!(events.len(), 201);
    assert!(events
        .windows(2)
        .all(|w| w[0].position.offset < w[1].position.offset && w[0].id < w[1].id));

    // Projecting twice changes nothing.
    backend.read_models.apply(&events).await.expect("apply");
    backend
        .read_models
        .apply(&events)
        .await
        .expect("apply again");
    let page = backend
        .read_models
        .page(ConversationId::between(a, b), None, 500)
        .await
        .expect("page");
    assert_eq!(page.len(), 201);
    assert!(page.windows(2).all(|w| w[0].id > w[1].id), "newest first");
}

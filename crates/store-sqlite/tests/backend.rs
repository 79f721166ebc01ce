//! The SQLite backend against its ports, on a real file.

use std::{collections::HashSet, sync::Arc};

use parley_domain::{
    commands::SendMessage,
    ports::{
        Appended, EventAppender, EventLog, LogConsumer, ReadModelWriter, StartFrom, TimelineReader,
    },
    ConversationId, RecordedEvent, UserId, Watermark,
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
    let mut consumer = from_start(&backend, "test").await;
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

/// A consumer of the whole log, under `group`.
async fn from_start(backend: &Embedded, group: &str) -> Box<dyn LogConsumer> {
    backend
        .log
        .subscribe(group, StartFrom::After(Watermark::default()))
        .await
        .expect("subscribe")
}

/// Polls `consumer` until it has returned `n` events (or 10 s pass).
async fn take(consumer: &mut dyn LogConsumer, n: usize) -> Vec<RecordedEvent> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < n && std::time::Instant::now() < deadline {
        let batch = consumer
            .poll(1000, std::time::Duration::from_millis(300))
            .await
            .expect("poll");
        got.extend(batch);
    }
    got
}

/// Two processes append to one log file in turns. A consumer in the first
/// takes the first's events from memory, and must still see the second's,
/// in log order, each once: the very events a reader of the file sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_sees_the_appends_of_every_process_sharing_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let first = Embedded::open(dir.path()).expect("open");
    let second = Embedded::open(dir.path()).expect("open again");
    let (a, b) = (UserId::new(), UserId::new());
    let mut live = from_start(&first, "live").await;
    let mut seen = Vec::new();
    let mut sent = 0;
    for round in 0..30 {
        for (i, process) in [&first, &second].into_iter().enumerate() {
            for k in 0..=(round % 3) {
                process
                    .appender
                    .append(send(a, b, &format!("{round}.{i}.{k}"), None))
                    .await
                    .expect("append");
                sent += 1;
            }
        }
        // Live: read while the other process keeps appending.
        let batch = live
            .poll(1000, std::time::Duration::from_millis(20))
            .await
            .expect("poll");
        seen.extend(batch);
    }
    seen.extend(take(live.as_mut(), sent - seen.len()).await);

    let reader = Embedded::open(dir.path()).expect("a third process");
    let mut file = from_start(&reader, "file").await;
    let all = take(file.as_mut(), sent).await;
    assert_eq!(all.len(), sent, "the file holds every append");
    assert!(all
        .windows(2)
        .all(|w| w[0].position.offset < w[1].position.offset));
    assert_eq!(seen, all, "the live consumer saw what the file holds");
}

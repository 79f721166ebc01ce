//! `SyncFeed`: each user's events by log position, the store's part of a
//! reconnecting socket's backlog.

use parley_domain::{
    events::{ConversationRead, MessageDelivered, MessageSent},
    ConversationId, Event, MessageBody, MessageId, RecordedEvent, Timestamp, UserId,
};

use crate::stores::Store;

fn sent(from: UserId, to: UserId, body: &str) -> Event {
    Event::MessageSent(MessageSent {
        message_id: MessageId::new(),
        conversation_id: ConversationId::between(from, to),
        from,
        to,
        body: MessageBody::from_trusted(body.into()),
        client_id: None,
        sent_at: Timestamp::now(),
    })
}

fn id_of(e: &RecordedEvent) -> MessageId {
    match &e.event {
        Event::MessageSent(m) => m.message_id,
        other => panic!("not a message: {other:?}"),
    }
}

/// Alice and Bob talk, Bob acks and reads, Alice writes to Carol: who
/// gets what. Returns (alice, bob, carol) and the events in log order.
async fn conversation(store: &Store) -> ((UserId, UserId, UserId), Vec<RecordedEvent>) {
    let (a, b, c) = (UserId::new(), UserId::new(), UserId::new());
    let first = store
        .record(vec![sent(a, b, "hi bob"), sent(b, a, "hi alice")])
        .await;
    let conv = ConversationId::between(a, b);
    let at = Timestamp::now();
    let receipts = store
        .record(vec![
            Event::MessageDelivered(MessageDelivered {
                message_id: id_of(&first[0]),
                conversation_id: conv,
                to: b,
                at,
            }),
            Event::ConversationRead(ConversationRead {
                conversation_id: conv,
                reader: b,
                up_to: id_of(&first[0]),
                at,
            }),
            sent(a, c, "hi carol"),
        ])
        .await;
    ((a, b, c), first.into_iter().chain(receipts).collect())
}

async fn everything(store: &Store, user: UserId, upto: i64, page: usize) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let got = store
            .feed()
            .user_events(user, 0, after, upto, page)
            .await
            .expect("read the feed");
        assert!(got.len() <= page, "a page holds at most its limit");
        let full = got.len() == page;
        after = got.last().map(|e| e.position.offset).or(after);
        out.extend(got);
        if !full {
            return out;
        }
    }
}

#[tokio::test]
async fn each_user_gets_the_events_of_their_audience_once_in_log_order() {
    for (kind, store) in Store::all().await {
        let ((a, b, c), log) = conversation(&store).await;
        let end = log[4].position.offset;
        store.writer().apply(&log).await.expect("apply");
        // Messages reach both participants, the delivery receipt the
        // sender, the read receipt both (the reader's other devices).
        let want = |which: &[usize]| which.iter().map(|&i| log[i].clone()).collect::<Vec<_>>();
        for page in [1, 2, 100] {
            assert_eq!(
                everything(&store, a, end, page).await,
                want(&[0, 1, 2, 3, 4]),
                "{kind}: alice, pages of {page}"
            );
            assert_eq!(
                everything(&store, b, end, page).await,
                want(&[0, 1, 3]),
                "{kind}: bob, pages of {page}"
            );
            assert_eq!(
                everything(&store, c, end, page).await,
                want(&[4]),
                "{kind}: carol, pages of {page}"
            );
        }
        // `after` is exclusive and `upto` inclusive.
        let middle = store
            .feed()
            .user_events(
                a,
                0,
                Some(log[0].position.offset),
                log[3].position.offset,
                100,
            )
            .await
            .expect("read");
        assert_eq!(middle, want(&[1, 2, 3]), "{kind}");
    }
}

/// Applying a batch again, or dropping the read models and replaying the
/// log, leaves every feed as it was.
#[tokio::test]
async fn replays_change_no_feed() {
    for (kind, store) in Store::all().await {
        let ((a, b, c), log) = conversation(&store).await;
        let end = log[4].position.offset;
        let w = store.writer();
        w.apply(&log).await.expect("apply");
        let before = [
            everything(&store, a, end, 100).await,
            everything(&store, b, end, 100).await,
            everything(&store, c, end, 100).await,
        ];
        w.apply(&log[1..3]).await.expect("apply again");
        w.apply(&log).await.expect("apply all again");
        w.reset().await.expect("reset");
        assert!(
            everything(&store, a, end, 100).await.is_empty(),
            "{kind}: a reset empties the feed"
        );
        for e in &log {
            w.apply(std::slice::from_ref(e)).await.expect("replay");
        }
        let after = [
            everything(&store, a, end, 100).await,
            everything(&store, b, end, 100).await,
            everything(&store, c, end, 100).await,
        ];
        assert_eq!(before, after, "{kind}");
    }
}

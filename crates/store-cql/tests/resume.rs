//! A resuming socket reads the user's feed, which carries each message,
//! and the user's copy of the read markers, instead of every message's
//! timeline row and every conversation's markers. These pin what that
//! must not change: a resume returns the messages and receipts history
//! shows, also for feed rows written before the feed carried messages and
//! for markers written before users had copies, and the migrations apply
//! to an older keyspace, twice if need be.

mod common;

use common::{config, covering, forget_migrations_from, ids, messages, session, store_on, LATEST};
use parley_domain::{
    events::{ConversationRead, MessageDelivered},
    ports::{ReadModelWriter, TimelineReader},
    ConversationId, Event, EventId, LogPosition, Message, MessageId, RecordedEvent, Timestamp,
    UserId,
};
use parley_store_cql::{bucket_of, Cql, CqlConfig};
/// The columns migration 2 added to `user_feed`.
const FEED_MESSAGE_COLUMNS: [&str; 5] = ["sender", "recipient", "body", "sent_at", "delivered_at"];

fn recorded(offset: i64, at: Timestamp, event: Event) -> RecordedEvent {
    RecordedEvent {
        position: LogPosition {
            partition: 0,
            offset,
        },
        id: EventId::new(),
        at,
        event,
    }
}

/// Four messages between `a` and `b`; `b` acknowledged the first and read
/// up to the third. Returns the message ids and the last log offset.
async fn conversation(store: &Cql, a: UserId, b: UserId) -> (Vec<MessageId>, i64) {
    let mut offset = 0;
    let sent = messages(a, b, Timestamp::now().millis() - 60_000, 4, &mut offset);
    let all = ids(&sent);
    let conversation_id = ConversationId::between(a, b);
    let at = Timestamp::now();
    let receipts = vec![
        recorded(
            offset + 1,
            at,
            Event::MessageDelivered(MessageDelivered {
                message_id: all[0],
                conversation_id,
                to: b,
                at,
            }),
        ),
        recorded(
            offset + 2,
            at,
            Event::ConversationRead(ConversationRead {
                conversation_id,
                reader: b,
                up_to: all[2],
                at,
            }),
        ),
    ];
    store.apply(&sent).await.expect("apply messages");
    store.apply(&receipts).await.expect("apply receipts");
    (all, offset + 2)
}

async fn history(store: &Cql, a: UserId, b: UserId) -> Vec<Message> {
    let mut page = store
        .page(ConversationId::between(a, b), None, 50)
        .await
        .expect("page");
    page.reverse();
    page
}

/// A store on a keyspace of its own holding [`conversation`], and what
/// history shows of it, oldest first.
struct Talk {
    config: CqlConfig,
    store: Cql,
    a: UserId,
    b: UserId,
    all: Vec<MessageId>,
    /// The log offset of the conversation's last event.
    last: i64,
    shown: Vec<Message>,
}

impl Talk {
    async fn start(what: &str) -> Self {
        let config = config(what);
        let store = store_on(&config).await;
        let (a, b) = (UserId::new(), UserId::new());
        let (all, last) = conversation(&store, a, b).await;
        let shown = history(&store, a, b).await;
        Self {
            config,
            store,
            a,
            b,
            all,
            last,
            shown,
        }
    }

    /// `user`'s backlog after `after`, with the log applied up to `upto`.
    async fn resume(&self, user: UserId, after: MessageId, upto: i64) -> Vec<Message> {
        self.store
            .for_user_after(user, after, &covering(upto), 100)
            .await
            .expect("resume")
    }
}

#[tokio::test]
async fn a_resume_returns_what_history_shows() {
    let t = Talk::start("feed").await;
    let (all, shown) = (&t.all, &t.shown);
    assert!(shown[0].delivered_at.is_some(), "{shown:?}");
    assert!(shown[2].read_at.is_some() && shown[3].read_at.is_none());
    // From the first message, and from before it (so its delivery stamp,
    // written to both participants' feeds, comes along).
    let before = MessageId::floor_of(Timestamp::from_millis(all[0].timestamp().millis() - 1));
    for user in [t.a, t.b] {
        for (after, want) in [(all[0], &shown[1..]), (before, &shown[..])] {
            let backlog = t.resume(user, after, t.last).await;
            assert_eq!(backlog, want, "resume of {user} after {after}");
        }
    }
}

/// Rows written before the feed carried messages name the message only;
/// a resume reads those from the timeline and returns the same.
#[tokio::test]
async fn feed_rows_without_their_message_are_read_from_the_timeline() {
    let t = Talk::start("feed_old").await;
    let s = session(&t.config).await;
    let strip = format!(
        "DELETE {} FROM {}.user_feed WHERE user_id = ? AND bucket = ? AND message_id = ?",
        FEED_MESSAGE_COLUMNS.join(", "),
        t.config.keyspace
    );
    for id in [t.all[1], t.all[3]] {
        s.query_unpaged(
            strip.as_str(),
            (
                t.b.to_string(),
                bucket_of(id.timestamp().millis()),
                id.to_string(),
            ),
        )
        .await
        .expect("strip a feed row");
    }
    assert_eq!(t.resume(t.b, t.all[0], t.last).await, t.shown[1..]);
}

/// Migration 2 on a keyspace at version 1 (its columns dropped again and
/// its record gone), and once more with the columns already there, as
/// after a migration cut short before it was recorded.
#[tokio::test]
async fn the_feed_columns_migrate_onto_an_older_keyspace() {
    let config = config("feed_mig");
    let store = store_on(&config).await;
    drop(store);
    let s = session(&config).await;
    let ks = &config.keyspace;
    let present = || async {
        let mut found = 0;
        for column in FEED_MESSAGE_COLUMNS {
            found += s
                .query_unpaged(
                    "SELECT column_name FROM system_schema.columns \
                     WHERE keyspace_name = ? AND table_name = 'user_feed' AND column_name = ?",
                    (ks.as_str(), column),
                )
                .await
                .expect("schema")
                .into_rows_result()
                .expect("rows")
                .rows_num();
        }
        found
    };
    assert_eq!(present().await, 5);
    s.query_unpaged(
        format!(
            "ALTER TABLE {ks}.user_feed DROP ({})",
            FEED_MESSAGE_COLUMNS.join(", ")
        ),
        (),
    )
    .await
    .expect("drop columns");
    forget_migrations_from(&s, ks, 2).await;
    assert_eq!(present().await, 0);
    assert_eq!(Cql::migrate(&config).await.expect("migrate"), LATEST);
    assert_eq!(present().await, 5);
    forget_migrations_from(&s, ks, 2).await;
    assert_eq!(Cql::migrate(&config).await.expect("migrate again"), LATEST);
    assert_eq!(present().await, 5);
    // And the store works on it.
    let store = store_on(&config).await;
    let (a, b) = (UserId::new(), UserId::new());
    let (all, last) = conversation(&store, a, b).await;
    let backlog = store
        .for_user_after(b, all[0], &covering(last), 100)
        .await
        .expect("resume");
    assert_eq!(backlog, history(&store, a, b).await[1..]);
}

/// Markers recorded before users had copies of them (the copies gone, the
/// migration that makes them not yet recorded) are copied by `migrate`,
/// and a resume then shows them.
#[tokio::test]
async fn migrating_copies_earlier_read_markers_to_their_participants() {
    let t = Talk::start("markers_mig").await;
    assert!(t.shown[2].read_at.is_some());
    let s = session(&t.config).await;
    let ks = &t.config.keyspace;
    s.query_unpaged(format!("TRUNCATE {ks}.user_read_markers"), ())
        .await
        .expect("forget the copies");
    forget_migrations_from(&s, ks, 3).await;
    let unread = t.resume(t.a, t.all[0], t.last).await;
    assert!(unread.iter().all(|m| m.read_at.is_none()), "{unread:?}");
    assert_eq!(Cql::migrate(&t.config).await.expect("migrate"), LATEST);
    for user in [t.a, t.b] {
        let backlog = t.resume(user, t.all[0], t.last).await;
        assert_eq!(backlog, t.shown[1..], "resume of {user}");
    }
}

/// A delivery the projector applies for a message whose feed rows were
/// never written leaves feed rows holding only `delivered_at`; a resume
/// passes over them rather than failing.
#[tokio::test]
async fn a_feed_row_with_only_a_delivery_stamp_is_passed_over() {
    let t = Talk::start("feed_partial").await;
    let at = Timestamp::now();
    // Half a second after the last message, so no real message shares
    // its millisecond.
    let never_sent =
        MessageId::floor_of(Timestamp::from_millis(t.all[3].timestamp().millis() + 500));
    t.store
        .apply(&[recorded(
            t.last + 1,
            at,
            Event::MessageDelivered(MessageDelivered {
                message_id: never_sent,
                conversation_id: ConversationId::between(t.a, t.b),
                to: t.b,
                at,
            }),
        )])
        .await
        .expect("apply the stray delivery");
    for user in [t.a, t.b] {
        let backlog = t.resume(user, t.all[0], t.last + 1).await;
        assert_eq!(backlog, t.shown[1..], "resume of {user}");
    }
}

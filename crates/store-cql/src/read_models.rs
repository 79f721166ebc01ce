//! Timelines, per-user feeds, read markers, unread rows and inboxes.
//!
//! Convergence: every write carries `USING TIMESTAMP` from the event, so
//! the writes of a batch run concurrently, a batch applied twice changes
//! nothing, and a replay in any order ends in the same state:
//! - a message row is written once per id, always with the same values;
//! - `delivered_at` is written at an *inverted* timestamp, so the earliest
//!   delivery wins, as on the embedded backend;
//! - a read marker is written at its `up_to`'s time, so the furthest wins;
//! - a read deletes the unread rows up to its marker at the read's time,
//!   which shadows the (older) inserts of those rows even if they arrive
//!   later in a replay.

use std::collections::HashMap;

use async_trait::async_trait;
use futures_util::{stream, StreamExt, TryStreamExt};
use parley_domain::{
    events::{ConversationRead, MessageDelivered, MessageSent},
    ports::{InboxEntry, InboxReader, ReadModelWriter, TimelineReader},
    ConversationId, Event, LogPosition, Message, MessageBody, MessageId, RecordedEvent, StoreError,
    Timestamp, UserId, Watermark,
};
use scylla::response::query_result::QueryResult;

use crate::{
    execution_error, rows_error,
    schema::{bucket_of, READ_MODEL_TABLES},
    users::micros,
    Cql, Write,
};

/// Writes in flight at once while applying a batch.
const WRITE_CONCURRENCY: usize = 128;
/// Buckets fetched per bucket-list read when paging a timeline.
const BUCKETS_PER_READ: i32 = 16;
/// `delivered_at` is written at `INVERT - at`: the earliest delivery has
/// the highest write timestamp and wins (year ~2096 in microseconds).
const INVERT: i64 = 4_000_000_000_000_000;

type MessageRow = (String, String, String, String, String, i64, Option<i64>);

fn message_from_row(r: MessageRow) -> Result<Message, StoreError> {
    let (conv, id, from, to, body, sent_at, delivered_at) = r;
    Ok(Message {
        conversation_id: ConversationId::parse(&conv).map_err(StoreError::unexpected)?,
        id: MessageId::parse("message_id", &id).map_err(StoreError::unexpected)?,
        from: UserId::parse("sender", &from).map_err(StoreError::unexpected)?,
        to: UserId::parse("recipient", &to).map_err(StoreError::unexpected)?,
        body: MessageBody::from_trusted(body),
        sent_at: Timestamp::from_millis(sent_at),
        delivered_at: delivered_at.map(Timestamp::from_millis),
        read_at: None,
    })
}

fn rows<R>(result: QueryResult) -> Result<Vec<R>, StoreError>
where
    R: for<'f> scylla::deserialize::row::DeserializeRow<'f, 'f>,
{
    let rows = result.into_rows_result().map_err(rows_error)?;
    let out = rows
        .rows::<R>()
        .map_err(rows_error)?
        .collect::<Result<Vec<R>, _>>()
        .map_err(rows_error)?;
    Ok(out)
}

/// The read markers of one conversation: reader → (up_to, at).
struct Markers(HashMap<UserId, (MessageId, Timestamp)>);

impl Markers {
    /// `read_at` of a message: when its recipient's marker reached it.
    fn stamp(&self, m: &mut Message) {
        m.read_at = self
            .0
            .get(&m.to)
            .filter(|(up_to, _)| *up_to >= m.id)
            .map(|(_, at)| *at);
    }
}

impl Cql {
    fn sent_writes<'a>(&'a self, e: &'a MessageSent, position: LogPosition) -> Vec<Write<'a>> {
        let ts = micros(e.sent_at);
        let bucket = bucket_of(e.message_id.timestamp().millis());
        let (conv, id, from, to) = (
            e.conversation_id.to_string(),
            e.message_id.to_string(),
            e.from.to_string(),
            e.to.to_string(),
        );
        let last = match serde_json::to_string(&e.to_message()) {
            Ok(json) => json,
            Err(err) => return vec![Box::pin(async move { Err(StoreError::unexpected(err)) })],
        };
        let st = &self.st;
        let (p, o) = (position.partition as i32, position.offset);
        let mut w: Vec<Write<'a>> = vec![
            self.write(
                &st.timeline_insert,
                (
                    conv.clone(),
                    bucket,
                    id.clone(),
                    from.clone(),
                    to.clone(),
                    e.body.as_str().to_owned(),
                    e.sent_at.millis(),
                    ts,
                ),
            ),
            self.write(&st.bucket_insert, (conv.clone(), bucket, ts)),
            self.write(&st.index_insert, (id.clone(), conv.clone(), ts)),
            self.write(
                &st.unread_insert,
                (to.clone(), conv.clone(), id.clone(), ts),
            ),
        ];
        for (user, peer) in [(&from, &to), (&to, &from)] {
            w.push(self.write(
                &st.feed_insert,
                (user.clone(), bucket, id.clone(), conv.clone(), p, o, ts),
            ));
            w.push(self.write(&st.feed_bucket_insert, (user.clone(), bucket, ts)));
            w.push(self.write(
                &st.inbox_upsert,
                (user.clone(), conv.clone(), peer.clone(), last.clone(), ts),
            ));
        }
        w
    }

    fn delivered_write(&self, d: &MessageDelivered) -> Write<'_> {
        let bucket = bucket_of(d.message_id.timestamp().millis());
        self.write(
            &self.st.timeline_delivered,
            (
                INVERT - micros(d.at),
                d.at.millis(),
                d.conversation_id.to_string(),
                bucket,
                d.message_id.to_string(),
            ),
        )
    }

    fn read_writes(&self, r: &ConversationRead) -> Vec<Write<'_>> {
        let (conv, reader, up_to) = (
            r.conversation_id.to_string(),
            r.reader.to_string(),
            r.up_to.to_string(),
        );
        vec![
            self.write(
                &self.st.marker_upsert,
                (
                    conv.clone(),
                    reader.clone(),
                    up_to.clone(),
                    r.at.millis(),
                    micros(r.up_to.timestamp()),
                ),
            ),
            self.write(&self.st.unread_clear, (micros(r.at), reader, conv, up_to)),
        ]
    }

    async fn markers(&self, conversation: &str) -> Result<Markers, StoreError> {
        let found: Vec<(String, String, i64)> =
            rows(self.run(&self.st.markers, (conversation,)).await?)?;
        let mut out = HashMap::new();
        for (reader, up_to, at) in found {
            let reader = UserId::parse("reader", &reader).map_err(StoreError::unexpected)?;
            let up_to = MessageId::parse("up_to", &up_to).map_err(StoreError::unexpected)?;
            out.insert(reader, (up_to, Timestamp::from_millis(at)));
        }
        Ok(Markers(out))
    }

    /// One message of a known conversation, with its receipts.
    async fn message_in(
        &self,
        conversation: &str,
        id: MessageId,
    ) -> Result<Option<Message>, StoreError> {
        let bucket = bucket_of(id.timestamp().millis());
        let (found, markers) = tokio::try_join!(
            async {
                rows::<MessageRow>(
                    self.run(
                        &self.st.timeline_one,
                        (conversation, bucket, id.to_string()),
                    )
                    .await?,
                )
            },
            self.markers(conversation)
        )?;
        let Some(row) = found.into_iter().next() else {
            return Ok(None);
        };
        let mut m = message_from_row(row)?;
        markers.stamp(&mut m);
        Ok(Some(m))
    }
}

#[async_trait]
impl ReadModelWriter for Cql {
    #[tracing::instrument(name = "cql.apply", skip_all, fields(events = events.len()))]
    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), StoreError> {
        let mut writes: Vec<Write<'_>> = Vec::new();
        let mut users = Vec::new();
        for e in events {
            match &e.event {
                Event::MessageSent(m) => writes.extend(self.sent_writes(m, e.position)),
                Event::MessageDelivered(d) => writes.push(self.delivered_write(d)),
                Event::ConversationRead(r) => writes.extend(self.read_writes(r)),
                Event::UserRegistered(u) => users.push(u.user.clone()),
            }
        }
        let user_writes = users.iter().map(|u| self.write_public_user(u));
        stream::iter(writes)
            .buffer_unordered(WRITE_CONCURRENCY)
            .try_for_each(|_| async { Ok(()) })
            .await?;
        futures_util::future::try_join_all(user_writes)
            .await
            .map(drop)
    }

    async fn reset(&self) -> Result<(), StoreError> {
        for t in READ_MODEL_TABLES {
            self.session
                .query_unpaged(format!("TRUNCATE {}.{t}", self.keyspace), ())
                .await
                .map_err(execution_error)?;
        }
        Ok(())
    }
}

#[async_trait]
impl TimelineReader for Cql {
    #[tracing::instrument(name = "cql.page", skip_all)]
    async fn page(
        &self,
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let conv = conversation.to_string();
        // "~" sorts after every id, so "no cursor" is the same slice.
        let below = before.map_or_else(|| "~".to_owned(), |b| b.to_string());
        let mut from_bucket = before.map_or(i64::MAX, |b| bucket_of(b.timestamp().millis()));
        let (markers, mut out) = (self.markers(&conv).await?, Vec::with_capacity(limit));
        'buckets: while out.len() < limit {
            let buckets: Vec<(i64,)> = rows(
                self.run(
                    &self.st.buckets_before,
                    (conv.as_str(), from_bucket, BUCKETS_PER_READ),
                )
                .await?,
            )?;
            let exhausted = buckets.len() < BUCKETS_PER_READ as usize;
            for (bucket,) in buckets {
                let want = (limit - out.len()) as i32;
                let found: Vec<MessageRow> = rows(
                    self.run(
                        &self.st.timeline_page,
                        (conv.as_str(), bucket, below.as_str(), want),
                    )
                    .await?,
                )?;
                for r in found {
                    let mut m = message_from_row(r)?;
                    markers.stamp(&mut m);
                    out.push(m);
                }
                if out.len() >= limit {
                    break 'buckets;
                }
                from_bucket = bucket - 1;
            }
            if exhausted {
                break;
            }
        }
        Ok(out)
    }

    async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        let found: Vec<(String,)> =
            rows(self.run(&self.st.index_lookup, (id.to_string(),)).await?)?;
        match found.into_iter().next() {
            Some((conv,)) => self.message_in(&conv, id).await,
            None => Ok(None),
        }
    }

    async fn for_user_after(
        &self,
        user: UserId,
        after: MessageId,
        upto: &Watermark,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let uid = user.to_string();
        let mut cursor = after.to_string();
        let mut wanted: Vec<(String, MessageId)> = Vec::new();
        let mut from_bucket = bucket_of(after.timestamp().millis());
        'buckets: loop {
            let buckets: Vec<(i64,)> = rows(
                self.run(
                    &self.st.feed_buckets_from,
                    (uid.as_str(), from_bucket, BUCKETS_PER_READ),
                )
                .await?,
            )?;
            let exhausted = buckets.len() < BUCKETS_PER_READ as usize;
            for (bucket,) in buckets {
                loop {
                    let page = limit as i32;
                    let found: Vec<(String, String, i32, i64)> = rows(
                        self.run(
                            &self.st.feed_after,
                            (uid.as_str(), bucket, cursor.as_str(), page),
                        )
                        .await?,
                    )?;
                    let full = found.len() == limit;
                    for (id, conv, p, o) in found {
                        let position = LogPosition {
                            partition: p.max(0) as u32,
                            offset: o,
                        };
                        cursor.clone_from(&id);
                        if upto.covers(position) {
                            let id = MessageId::parse("message_id", &id)
                                .map_err(StoreError::unexpected)?;
                            wanted.push((conv, id));
                            if wanted.len() >= limit {
                                break 'buckets;
                            }
                        }
                    }
                    if !full {
                        break;
                    }
                }
                from_bucket = bucket + 1;
            }
            if exhausted {
                break;
            }
        }
        let found: Vec<Option<Message>> = stream::iter(wanted)
            .map(|(conv, id)| async move { self.message_in(&conv, id).await })
            .buffered(32)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }
}

#[async_trait]
impl InboxReader for Cql {
    #[tracing::instrument(name = "cql.inbox", skip_all)]
    async fn inbox(&self, user: UserId, limit: usize) -> Result<Vec<InboxEntry>, StoreError> {
        let uid = user.to_string();
        let (entries, counts) = tokio::try_join!(
            async {
                rows::<(String, String, String)>(self.run(&self.st.inbox, (uid.as_str(),)).await?)
            },
            async {
                rows::<(String, i64)>(self.run(&self.st.unread_counts, (uid.as_str(),)).await?)
            },
        )?;
        let counts: HashMap<String, i64> = counts.into_iter().collect();
        let mut latest: Vec<(MessageId, String, String)> = Vec::with_capacity(entries.len());
        for (conv, peer, last) in entries {
            let m: Message = serde_json::from_str(&last).map_err(StoreError::unexpected)?;
            latest.push((m.id, conv, peer));
        }
        latest.sort_by_key(|e| std::cmp::Reverse(e.0));
        latest.truncate(limit);
        // The stored copy has no receipts; read the message as it is now.
        stream::iter(latest)
            .map(|(id, conv, peer)| {
                let unread = counts.get(&conv).copied().unwrap_or(0).max(0) as u64;
                async move {
                    let m = self.message_in(&conv, id).await?.ok_or_else(|| {
                        StoreError::Unexpected(format!("inbox names missing message {id}"))
                    })?;
                    Ok::<_, StoreError>(InboxEntry {
                        conversation_id: m.conversation_id,
                        peer: UserId::parse("peer_id", &peer).map_err(StoreError::unexpected)?,
                        last_message: m,
                        unread_count: unread,
                    })
                }
            })
            .buffered(32)
            .try_collect()
            .await
    }
}

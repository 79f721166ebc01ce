//! Timelines, sync feeds, read markers, unread rows and inboxes.
//!
//! Convergence: every write carries `USING TIMESTAMP` from the event, so
//! the writes of a batch run concurrently, a batch applied twice changes
//! nothing, and a replay in any order ends in the same state:
//! - a message row is written once per id, and a sync feed row once per
//!   log position, always with the same values;
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
    ports::{InboxEntry, InboxReader, ReadModelWriter, SyncFeed, TimelineReader},
    ConversationId, Event, LogPosition, Message, MessageBody, MessageId, MessageRef, ReadMarkers,
    RecordedEvent, Stamp, StoreError, Timestamp, UserId,
};
use scylla::{
    response::query_result::QueryResult,
    serialize::row::SerializeRow,
    statement::batch::{Batch, BatchType},
};

use crate::{
    execution_error, observed, rows_error,
    schema::{bucket_of, sync_bucket_of, READ_MODEL_TABLES},
    statements::Prepared,
    users::micros,
    Cql, Write,
};

/// Writes in flight at once while applying a batch.
const WRITE_CONCURRENCY: usize = 128;
/// Buckets fetched per bucket-list read when paging a timeline.
const BUCKETS_PER_READ: i32 = 16;
/// How far another server's clock may run ahead of this one's. A first
/// page starts at the bucket of `now` plus this, so a message stamped by
/// such a clock just past a bucket boundary is still on it.
const MAX_CLOCK_AHEAD_MS: i64 = 3_600_000;
/// `delivered_at` is written at `INVERT - at`: the earliest delivery has
/// the highest write timestamp and wins (year ~2096 in microseconds).
const INVERT: i64 = 4_000_000_000_000_000;

type MessageRow = (String, String, String, String, String, i64, Option<i64>);

type TimelineRow = (String, i64, String, String, String, String, i64, i64);
/// (user, log partition, bucket, log offset, event, write timestamp).
type SyncRow = (String, i32, i64, i64, Vec<u8>, i64);
type UnreadRow = (String, String, String, i64);
/// (user, conversation, peer, last message JSON, write timestamp).
type InboxRow = (String, String, String, String, i64);
type IndexRow = (String, String, i64);

/// A batch's message rows grouped by partition, so each partition gets one
/// request; inbox rows of one (user, conversation) collapse to the newest.
/// With a few messages per conversation in a batch this sends about a
/// third of the requests that one statement per row did.
/// Rough size of one unlogged batch: Cassandra warns above 5 KiB and
/// refuses above 50 KiB (ScyllaDB: 128 KiB / 1 MiB), and one conversation
/// can have thousands of messages in a projector batch.
const BATCH_BYTES: usize = 5 * 1024;

/// Splits one partition's rows into batches of at most [`BATCH_BYTES`] by
/// `weigh`'s estimate (a row heavier than that goes alone).
fn chunked<V>(rows: Vec<V>, weigh: impl Fn(&V) -> usize) -> Vec<Vec<V>> {
    let mut out: Vec<Vec<V>> = Vec::new();
    let mut size = 0;
    for row in rows {
        let w = weigh(&row);
        match out.last_mut() {
            Some(last) if size + w <= BATCH_BYTES => last.push(row),
            _ => {
                out.push(vec![row]);
                size = 0;
            }
        }
        size += w;
    }
    out
}

#[derive(Default)]
struct Planned {
    timeline: HashMap<(String, i64), Vec<TimelineRow>>,
    sync: HashMap<(String, i32, i64), Vec<SyncRow>>,
    unread: HashMap<String, Vec<UnreadRow>>,
    inbox: HashMap<(String, String), InboxRow>,
    index: Vec<IndexRow>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum BucketList {
    Timeline,
    /// A user's sync feed in one log partition.
    Sync(i32),
}

/// One row of a bucket list: (which list, its owner, the bucket).
pub(crate) type BucketRow = (BucketList, String, i64);

/// Bucket-list rows this process has written. They never change once
/// written, so each is written once per conversation, or user and log
/// partition, per bucket (and once again after a restart), not once per
/// event. A replay rewrites
/// every bucket it meets, so truncated read models get their rows back.
#[derive(Default)]
pub(crate) struct WrittenBuckets(std::sync::Mutex<std::collections::HashSet<BucketRow>>);

/// Rows remembered before the set starts over (about 100 MiB at most).
const BUCKETS_REMEMBERED: usize = 1_000_000;

impl WrittenBuckets {
    fn contains(&self, row: &BucketRow) -> bool {
        self.0.lock().map(|s| s.contains(row)).unwrap_or(false)
    }

    fn remember(&self, rows: impl IntoIterator<Item = BucketRow>) {
        if let Ok(mut s) = self.0.lock() {
            if s.len() > BUCKETS_REMEMBERED {
                s.clear();
            }
            s.extend(rows);
        }
    }

    fn forget(&self) {
        if let Ok(mut s) = self.0.lock() {
            s.clear();
        }
    }
}

fn add_marker(
    markers: &mut ReadMarkers,
    reader: &str,
    up_to: &str,
    at: i64,
) -> Result<(), StoreError> {
    let reader = UserId::parse("reader", reader).map_err(StoreError::unexpected)?;
    let up_to = MessageId::parse("up_to", up_to).map_err(StoreError::unexpected)?;
    markers.insert(reader, up_to, Timestamp::from_millis(at));
    Ok(())
}

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

impl Cql {
    /// Adds a message's rows to `plan`.
    fn plan_sent(plan: &mut Planned, e: &MessageSent) -> Result<(), StoreError> {
        let ts = micros(e.sent_at);
        let bucket = bucket_of(e.message_id.timestamp().millis());
        let (conv, id, from, to) = (
            e.conversation_id.to_string(),
            e.message_id.to_string(),
            e.from.to_string(),
            e.to.to_string(),
        );
        let last = serde_json::to_string(&e.to_message()).map_err(StoreError::unexpected)?;
        plan.timeline
            .entry((conv.clone(), bucket))
            .or_default()
            .push((
                conv.clone(),
                bucket,
                id.clone(),
                from.clone(),
                to.clone(),
                e.body.as_str().to_owned(),
                e.sent_at.millis(),
                ts,
            ));
        plan.index.push((id.clone(), conv.clone(), ts));
        plan.unread
            .entry(to.clone())
            .or_default()
            .push((to.clone(), conv.clone(), id.clone(), ts));
        for (user, peer) in [(&from, &to), (&to, &from)] {
            let row = (user.clone(), conv.clone(), peer.clone(), last.clone(), ts);
            plan.inbox
                .entry((user.clone(), conv.clone()))
                .and_modify(|kept| {
                    // Only the write with the highest timestamp would
                    // survive (on a tie, the greater value), so it is the
                    // only one sent.
                    if (row.4, &row.3) > (kept.4, &kept.3) {
                        *kept = row.clone();
                    }
                })
                .or_insert(row);
        }
        Ok(())
    }

    /// Adds a sync feed row for each user of `e`'s audience to `plan`,
    /// and the bucket-list rows not written yet to `buckets`.
    fn plan_sync(
        &self,
        plan: &mut Planned,
        buckets: &mut HashMap<BucketRow, i64>,
        e: &RecordedEvent,
    ) -> Result<(), StoreError> {
        let audience = e.event.audience();
        if audience == [None, None] {
            return Ok(());
        }
        let bytes = e
            .event
            .encode(Stamp { id: e.id, at: e.at })
            .map_err(StoreError::unexpected)?;
        let (p, o) = (e.position.partition as i32, e.position.offset);
        let (bucket, ts) = (sync_bucket_of(o), micros(e.at));
        for user in audience.into_iter().flatten() {
            let user = user.to_string();
            let row = (BucketList::Sync(p), user.clone(), bucket);
            if !self.buckets.contains(&row) {
                buckets.entry(row).or_insert(ts);
            }
            plan.sync
                .entry((user.clone(), p, bucket))
                .or_default()
                .push((user, p, bucket, o, bytes.clone(), ts));
        }
        Ok(())
    }

    /// Rows of one partition: one statement, or one unlogged batch (a
    /// single request and a single mutation on the replica).
    fn write_rows<'a, V: SerializeRow + Send + Sync + 'a>(
        &'a self,
        st: &'a Prepared,
        mut rows: Vec<V>,
    ) -> Write<'a> {
        if rows.len() == 1 {
            if let Some(row) = rows.pop() {
                return self.write(st, row);
            }
        }
        Box::pin(async move {
            let mut batch = Batch::new(BatchType::Unlogged);
            for _ in 0..rows.len() {
                batch.append_statement(st.st.clone());
            }
            batch.set_is_idempotent(true);
            observed(st.name, self.session.batch(&batch, rows)).await
        })
    }

    /// One write per size-bounded batch of each partition's rows.
    fn partition_batches<'a, V: SerializeRow + Send + Sync + 'a>(
        &'a self,
        out: &mut Vec<Write<'a>>,
        st: &'a Prepared,
        partitions: impl Iterator<Item = Vec<V>>,
        weigh: impl Fn(&V) -> usize + Copy,
    ) {
        for rows in partitions {
            out.extend(
                chunked(rows, weigh)
                    .into_iter()
                    .map(|c| self.write_rows(st, c)),
            );
        }
    }

    fn planned_writes(&self, plan: Planned) -> Vec<Write<'_>> {
        let st = &self.st;
        let mut inbox: HashMap<String, Vec<InboxRow>> = HashMap::new();
        for ((user, _), row) in plan.inbox {
            inbox.entry(user).or_default().push(row);
        }
        let mut w: Vec<Write<'_>> = Vec::new();
        self.partition_batches(
            &mut w,
            &st.timeline_insert,
            plan.timeline.into_values(),
            |r| r.5.len() + 200,
        );
        self.partition_batches(&mut w, &st.sync_insert, plan.sync.into_values(), |r| {
            r.4.len() + 100
        });
        self.partition_batches(&mut w, &st.unread_insert, plan.unread.into_values(), |_| {
            160
        });
        self.partition_batches(&mut w, &st.inbox_upsert, inbox.into_values(), |r| {
            r.3.len() + 160
        });
        w.extend(
            plan.index
                .into_iter()
                .map(|r| self.write(&st.index_insert, r)),
        );
        w
    }

    /// The bucket-list row a message needs: its conversation's timeline
    /// bucket.
    fn bucket_of_message(e: &MessageSent) -> BucketRow {
        let bucket = bucket_of(e.message_id.timestamp().millis());
        (BucketList::Timeline, e.conversation_id.to_string(), bucket)
    }

    fn bucket_write(&self, row: &BucketRow, ts: i64) -> Write<'_> {
        let (list, owner, bucket) = row;
        match list {
            BucketList::Timeline => {
                self.write(&self.st.bucket_insert, (owner.clone(), *bucket, ts))
            }
            BucketList::Sync(p) => self.write(
                &self.st.sync_bucket_insert,
                (owner.clone(), *p, *bucket, ts),
            ),
        }
    }

    /// The delivery stamp on the timeline row.
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

    fn read_writes(&self, r: &ConversationRead) -> [Write<'_>; 2] {
        let (conv, reader, up_to) = (
            r.conversation_id.to_string(),
            r.reader.to_string(),
            r.up_to.to_string(),
        );
        // The marker's own time orders the writes: the furthest one wins.
        let ts = micros(r.up_to.timestamp());
        [
            self.write(
                &self.st.marker_upsert,
                (
                    conv.clone(),
                    reader.clone(),
                    up_to.clone(),
                    r.at.millis(),
                    ts,
                ),
            ),
            self.write(&self.st.unread_clear, (micros(r.at), reader, conv, up_to)),
        ]
    }

    async fn markers(&self, conversation: &str) -> Result<ReadMarkers, StoreError> {
        let found: Vec<(String, String, i64)> =
            rows(self.run(&self.st.markers, (conversation,)).await?)?;
        let mut out = ReadMarkers::default();
        for (reader, up_to, at) in found {
            add_marker(&mut out, &reader, &up_to, at)?;
        }
        Ok(out)
    }

    /// One message of a known conversation, with its receipts.
    async fn message_in(
        &self,
        conversation: &str,
        id: MessageId,
    ) -> Result<Option<Message>, StoreError> {
        let (found, markers) = tokio::try_join!(
            self.timeline_message(conversation, id),
            self.markers(conversation)
        )?;
        Ok(found.map(|mut m| {
            markers.stamp(&mut m);
            m
        }))
    }

    /// One message of a known conversation as its timeline row has it,
    /// without read receipts.
    async fn timeline_message(
        &self,
        conversation: &str,
        id: MessageId,
    ) -> Result<Option<Message>, StoreError> {
        let bucket = bucket_of(id.timestamp().millis());
        let found: Vec<MessageRow> = rows(
            self.run(
                &self.st.timeline_one,
                (conversation, bucket, id.to_string()),
            )
            .await?,
        )?;
        found.into_iter().next().map(message_from_row).transpose()
    }

    /// The newest `limit` timeline rows below `before`. A page almost
    /// always lies in one bucket, the one its cursor names (or, for the
    /// first page, the clock), so that bucket is read straight away and
    /// the bucket list is asked only for what is left below it: one read
    /// per page instead of two, where the reads are what a history page
    /// costs on a busy store.
    async fn page_rows(
        &self,
        conv: &str,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<MessageRow>, StoreError> {
        // "~" sorts after every id, so "no cursor" is the same slice.
        let below = before.map_or_else(|| "~".to_owned(), |b| b.to_string());
        let first = match before {
            Some(b) => bucket_of(b.timestamp().millis()),
            None => bucket_of(Timestamp::now().millis() + MAX_CLOCK_AHEAD_MS),
        };
        let mut out = self.bucket_rows(conv, first, &below, limit).await?;
        let mut from_bucket = first - 1;
        while out.len() < limit {
            let buckets: Vec<(i64,)> = rows(
                self.run(
                    &self.st.buckets_before,
                    (conv, from_bucket, BUCKETS_PER_READ),
                )
                .await?,
            )?;
            let exhausted = buckets.len() < BUCKETS_PER_READ as usize;
            for (bucket,) in buckets {
                let more = self
                    .bucket_rows(conv, bucket, &below, limit - out.len())
                    .await?;
                out.extend(more);
                if out.len() >= limit {
                    return Ok(out);
                }
                from_bucket = bucket - 1;
            }
            if exhausted {
                break;
            }
        }
        Ok(out)
    }

    /// Up to `limit` rows of one bucket below `below`, newest first.
    async fn bucket_rows(
        &self,
        conv: &str,
        bucket: i64,
        below: &str,
        limit: usize,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let want = i32::try_from(limit).unwrap_or(i32::MAX);
        rows(
            self.run(&self.st.timeline_page, (conv, bucket, below, want))
                .await?,
        )
    }
}

#[async_trait]
impl ReadModelWriter for Cql {
    #[tracing::instrument(name = "cql.apply", skip_all, fields(events = events.len()))]
    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), StoreError> {
        let mut writes: Vec<Write<'_>> = Vec::new();
        let mut users = Vec::new();
        let mut buckets: HashMap<BucketRow, i64> = HashMap::new();
        let mut plan = Planned::default();
        for e in events {
            match &e.event {
                Event::MessageSent(m) => {
                    Self::plan_sent(&mut plan, m)?;
                    let row = Self::bucket_of_message(m);
                    if !self.buckets.contains(&row) {
                        buckets.entry(row).or_insert(micros(m.sent_at));
                    }
                }
                Event::MessageDelivered(d) => writes.push(self.delivered_write(d)),
                Event::ConversationRead(r) => writes.extend(self.read_writes(r)),
                Event::UserRegistered(u) => users.push(u.user.clone()),
            }
            self.plan_sync(&mut plan, &mut buckets, e)?;
        }
        writes.extend(self.planned_writes(plan));
        writes.extend(buckets.iter().map(|(row, ts)| self.bucket_write(row, *ts)));
        let user_writes = users.iter().map(|u| self.write_public_user(u));
        stream::iter(writes)
            .buffer_unordered(WRITE_CONCURRENCY)
            .try_for_each(|_| async { Ok(()) })
            .await?;
        self.buckets.remember(buckets.into_keys());
        futures_util::future::try_join_all(user_writes)
            .await
            .map(drop)
    }

    async fn reset(&self) -> Result<(), StoreError> {
        self.buckets.forget();
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
        let (markers, found) =
            tokio::try_join!(self.markers(&conv), self.page_rows(&conv, before, limit))?;
        found
            .into_iter()
            .map(|r| {
                let mut m = message_from_row(r)?;
                markers.stamp(&mut m);
                Ok(m)
            })
            .collect()
    }

    async fn message_of(
        &self,
        user: UserId,
        id: MessageId,
    ) -> Result<Option<MessageRef>, StoreError> {
        let found: Vec<(String,)> =
            rows(self.run(&self.st.index_lookup, (id.to_string(),)).await?)?;
        let Some((conv,)) = found.into_iter().next() else {
            return Ok(None);
        };
        let found = self.timeline_message(&conv, id).await?;
        Ok(found
            .map(|m| MessageRef::from(&m))
            .filter(|m| m.from == user || m.to == user))
    }
}

/// Bucket-list entries fetched per read when a backlog spans buckets.
const SYNC_BUCKETS_PER_READ: i32 = 16;

#[async_trait]
impl SyncFeed for Cql {
    #[tracing::instrument(name = "cql.sync", skip_all)]
    async fn user_events(
        &self,
        user: UserId,
        partition: u32,
        after: Option<i64>,
        upto: i64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let first = after.map_or(0, |a| a.saturating_add(1));
        if first > upto || limit == 0 {
            return Ok(Vec::new());
        }
        let (uid, p) = (user.to_string(), partition as i32);
        let after = after.unwrap_or(-1);
        let last_bucket = sync_bucket_of(upto);
        let mut from_bucket = sync_bucket_of(first);
        let mut out = Vec::new();
        loop {
            // A backlog within one bucket (a short absence) reads it
            // straight away; the bucket list is asked only across buckets.
            let (buckets, exhausted) = if from_bucket == last_bucket {
                (vec![(from_bucket,)], true)
            } else {
                let listed: Vec<(i64,)> = rows(
                    self.run(
                        &self.st.sync_buckets,
                        (
                            uid.as_str(),
                            p,
                            from_bucket,
                            last_bucket,
                            SYNC_BUCKETS_PER_READ,
                        ),
                    )
                    .await?,
                )?;
                let exhausted = listed.len() < SYNC_BUCKETS_PER_READ as usize;
                (listed, exhausted)
            };
            for (bucket,) in buckets {
                let want = i32::try_from(limit - out.len()).unwrap_or(i32::MAX);
                let found: Vec<(i64, Vec<u8>)> = rows(
                    self.run(
                        &self.st.sync_after,
                        (uid.as_str(), p, bucket, after, upto, want),
                    )
                    .await?,
                )?;
                for (offset, bytes) in found {
                    let decoded = Event::decode(&bytes).map_err(StoreError::unexpected)?;
                    // A type this build does not know: skipped, as the
                    // log's own readers skip it.
                    let Some((stamp, event)) = decoded else {
                        continue;
                    };
                    out.push(RecordedEvent {
                        position: LogPosition { partition, offset },
                        id: stamp.id,
                        at: stamp.at,
                        event,
                    });
                }
                if out.len() >= limit {
                    return Ok(out);
                }
                from_bucket = bucket + 1;
            }
            if exhausted || from_bucket > last_bucket {
                return Ok(out);
            }
        }
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
                        StoreError::unexpected_msg(format!("inbox names missing message {id}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_under_the_size_limit_and_keep_row_order() {
        let rows = vec![3000, 3000, 100, 6000, 10];
        assert_eq!(
            chunked(rows, |w| *w),
            vec![vec![3000], vec![3000, 100], vec![6000], vec![10]]
        );
        let small: Vec<usize> = (0..100).collect();
        let chunks = chunked(small.clone(), |_| 160);
        assert!(chunks.iter().all(|c| c.len() * 160 <= BATCH_BYTES));
        assert_eq!(chunks.concat(), small);
    }
}

//! The projector's writes: each event's changes (decided in
//! `parley_projector::changes`) applied by their merge rules as CQL
//! writes, every one at a timestamp taken from the event, so the writes
//! of a batch run concurrently and a batch applied twice, or a replay in
//! any order, converges:
//!
//! - insert once: always the same values (timeline rows, feed entries,
//!   unread marks, message lookups);
//! - earliest wins: `delivered_at` is written at an inverted timestamp;
//! - furthest wins: a marker at its `up_to`'s time, as one cell whose text
//!   orders as markers do (`user_rows`);
//! - newest wins: an inbox's last message at that message's time;
//! - count unless read: an unread mark is a row; a marker deletes its
//!   owner's marks up to it at its `up_to`'s time, which shadows every
//!   mark it covers whenever that mark is written.
//!
//! Writes are grouped by the partition they go to, and each partition's
//! writes are one request: a message in an existing conversation is one
//! timeline write and one `user_rows` write for each participant.

use std::collections::HashMap;

use async_trait::async_trait;
use futures_util::{stream, StreamExt, TryStreamExt};
use parley_domain::{
    events::{ConversationRead, MessageDelivered, MessageSent},
    ports::ReadModelWriter,
    ConversationId, LogPosition, MessageId, PublicUser, RecordedEvent, Stamp, StoreError,
    Timestamp, UserId,
};
use parley_projector::changes::{project, Change};
use scylla::{
    serialize::row::SerializeRow,
    statement::batch::{Batch, BatchType},
};

use crate::{
    observed,
    read_models::BucketRow,
    schema::{bucket_of, READ_MODEL_TABLES},
    statements::{Prepared, Statements},
    user_rows::{delivered_cell, marker_cell},
    users::{micros, prefixes},
    Cql, Write,
};

/// Writes in flight at once while applying a batch.
const WRITE_CONCURRENCY: usize = 128;
/// `delivered_at` is written at `INVERT - at`: the earliest delivery has
/// the highest write timestamp and wins (year ~2096 in microseconds).
const INVERT: i64 = 4_000_000_000_000_000;
/// Rough size of one unlogged batch: Cassandra warns above 5 KiB and
/// refuses above 50 KiB (ScyllaDB: 128 KiB / 1 MiB), and one conversation
/// can have thousands of messages in a projector batch.
const BATCH_BYTES: usize = 5 * 1024;

/// A row's values, whatever its statement.
pub(crate) type Values = Box<dyn SerializeRow + Send + Sync>;

/// One write: its statement, values and a rough size.
pub(crate) struct Row<'s> {
    pub(crate) st: &'s Prepared,
    pub(crate) values: Values,
    bytes: usize,
}

/// Where a write goes. Each is counted in `/metrics` under its own
/// request name (`parley_cql_request_seconds{statement}`), whether one
/// statement or a batch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Partition {
    Timeline(String, i64),
    Markers(String),
    User(String),
    /// `users_by_id`, by id.
    Directory(String),
    /// `user_directory`, by username prefix.
    Prefix(String),
}

impl Partition {
    pub(crate) fn request(&self) -> &'static str {
        match self {
            Partition::Timeline(..) => "timeline_write",
            Partition::Markers(_) => "markers_write",
            Partition::User(_) => "user_rows_write",
            Partition::Directory(_) | Partition::Prefix(_) => "directory_write",
        }
    }
}

fn row<'s>(
    st: &'s Prepared,
    bytes: usize,
    values: impl SerializeRow + Send + Sync + 'static,
) -> Row<'s> {
    Row {
        st,
        values: Box::new(values),
        bytes,
    }
}

fn user(u: UserId) -> Partition {
    Partition::User(u.to_string())
}

fn at_id(id: MessageId) -> i64 {
    micros(id.timestamp())
}

/// The rows of each change, as both the projector and the migration that
/// fills `user_rows` write them.
impl Statements {
    pub(crate) fn timeline_row(&self, m: &MessageSent) -> (Partition, Row<'_>) {
        let (conv, bucket) = (
            m.conversation_id.to_string(),
            bucket_of(m.message_id.timestamp().millis()),
        );
        let values = (
            conv.clone(),
            bucket,
            m.message_id.to_string(),
            m.from.to_string(),
            m.to.to_string(),
            m.body.as_str().to_owned(),
            m.sent_at.millis(),
            micros(m.sent_at),
        );
        let bytes = m.body.as_str().len() + 200;
        (
            Partition::Timeline(conv, bucket),
            row(&self.timeline_insert, bytes, values),
        )
    }

    pub(crate) fn timeline_delivered_row(&self, d: &MessageDelivered) -> (Partition, Row<'_>) {
        let (conv, bucket) = (
            d.conversation_id.to_string(),
            bucket_of(d.message_id.timestamp().millis()),
        );
        let values = (
            INVERT - micros(d.at),
            d.at.millis(),
            conv.clone(),
            bucket,
            d.message_id.to_string(),
        );
        (
            Partition::Timeline(conv, bucket),
            row(&self.timeline_delivered, 120, values),
        )
    }

    pub(crate) fn marker_row(
        &self,
        conversation: ConversationId,
        reader: UserId,
        up_to: MessageId,
        at: Timestamp,
    ) -> (Partition, Row<'_>) {
        let conv = conversation.to_string();
        let values = (
            conv.clone(),
            reader.to_string(),
            up_to.to_string(),
            at.millis(),
            marker_cell(up_to, at),
            at_id(up_to),
        );
        (
            Partition::Markers(conv),
            row(&self.marker_upsert, 200, values),
        )
    }

    pub(crate) fn feed_row(
        &self,
        owner: UserId,
        at: LogPosition,
        stamped: Timestamp,
        event: Vec<u8>,
    ) -> (Partition, Row<'_>) {
        let bytes = event.len() + 100;
        let values = (
            owner.to_string(),
            at.partition as i32,
            at.offset,
            event,
            micros(stamped),
        );
        (user(owner), row(&self.feed_insert, bytes, values))
    }

    /// `last` is the message's JSON (`Message` without receipts).
    pub(crate) fn inbox_last_row(
        &self,
        owner: UserId,
        conversation: ConversationId,
        peer: UserId,
        id: MessageId,
        last: String,
    ) -> (Partition, Row<'_>) {
        let bytes = last.len() + 160;
        let values = (
            owner.to_string(),
            conversation.to_string(),
            peer.to_string(),
            last,
            at_id(id),
        );
        (user(owner), row(&self.inbox_last, bytes, values))
    }

    pub(crate) fn inbox_delivered_row(
        &self,
        owner: UserId,
        conversation: ConversationId,
        message: MessageId,
        at: Timestamp,
    ) -> (Partition, Row<'_>) {
        let values = (
            at_id(message),
            delivered_cell(message, at),
            owner.to_string(),
            conversation.to_string(),
        );
        (user(owner), row(&self.inbox_delivered, 160, values))
    }

    /// A marker in `owner`'s inbox row: their own, or (`own` false) the
    /// other participant's.
    pub(crate) fn inbox_marker_row(
        &self,
        owner: UserId,
        conversation: ConversationId,
        up_to: MessageId,
        at: Timestamp,
        own: bool,
    ) -> (Partition, Row<'_>) {
        let st = if own {
            &self.inbox_own_marker
        } else {
            &self.inbox_peer_marker
        };
        let values = (
            at_id(up_to),
            marker_cell(up_to, at),
            owner.to_string(),
            conversation.to_string(),
        );
        (user(owner), row(st, 160, values))
    }

    pub(crate) fn unread_row(
        &self,
        owner: UserId,
        conversation: ConversationId,
        message: MessageId,
    ) -> (Partition, Row<'_>) {
        let values = (
            owner.to_string(),
            conversation.to_string(),
            message.to_string(),
            at_id(message),
        );
        (user(owner), row(&self.unread_insert, 120, values))
    }

    /// Deletes `owner`'s unread marks up to `up_to`, at `up_to`'s time.
    pub(crate) fn unread_clear_row(
        &self,
        owner: UserId,
        conversation: ConversationId,
        up_to: MessageId,
    ) -> (Partition, Row<'_>) {
        let values = (
            at_id(up_to),
            owner.to_string(),
            conversation.to_string(),
            up_to.to_string(),
        );
        (user(owner), row(&self.unread_clear, 120, values))
    }

    /// `owner` can look `message` up by id: they sent it (`outgoing`) to
    /// `peer`, or received it from `peer`.
    pub(crate) fn message_of_row(
        &self,
        owner: UserId,
        message: MessageId,
        peer: UserId,
        outgoing: bool,
    ) -> (Partition, Row<'_>) {
        let values = (
            owner.to_string(),
            message.to_string(),
            peer.to_string(),
            outgoing,
            at_id(message),
        );
        (user(owner), row(&self.message_of_insert, 120, values))
    }
}

impl Statements {
    /// A user's directory entries: by id, and under each of its 1-, 2- and
    /// 3-character username prefixes (what a search reads).
    pub(crate) fn directory_rows(&self, u: &PublicUser) -> Vec<(Partition, Row<'_>)> {
        let (id, name, display) = (
            u.id.to_string(),
            u.username.as_str(),
            u.display_name.as_str(),
        );
        let (created, ts) = (u.created_at.millis(), micros(u.created_at));
        let mut out = vec![(
            Partition::Directory(id.clone()),
            row(
                &self.user_by_id_insert,
                160,
                (id.clone(), name.to_owned(), display.to_owned(), created, ts),
            ),
        )];
        for prefix in prefixes(name) {
            out.push((
                Partition::Prefix(prefix.to_owned()),
                row(
                    &self.directory_insert,
                    160,
                    (
                        prefix.to_owned(),
                        name.to_owned(),
                        id.clone(),
                        display.to_owned(),
                        created,
                        ts,
                    ),
                ),
            ));
        }
        out
    }
}

/// A batch's writes, by partition.
#[derive(Default)]
struct Plan<'s, 'e> {
    rows: HashMap<Partition, Vec<Row<'s>>>,
    /// The newest message each inbox entry is given in the batch: only
    /// that write would survive, so it is the only one sent.
    inbox: HashMap<(UserId, ConversationId), (UserId, &'e MessageSent)>,
    /// Each event's bytes, encoded once for all its feed entries.
    encoded: HashMap<LogPosition, Vec<u8>>,
    /// Bucket-list rows not written yet, with their write timestamps.
    buckets: HashMap<BucketRow, i64>,
}

impl<'s, 'e> Plan<'s, 'e> {
    fn add(&mut self, (p, r): (Partition, Row<'s>)) {
        self.rows.entry(p).or_default().push(r);
    }

    fn change(&mut self, cql: &'s Cql, c: Change<'e>) -> Result<(), StoreError> {
        let st = &*cql.st;
        match c {
            Change::Message { sent: m, .. } => {
                self.add(st.timeline_row(m));
                self.add(st.message_of_row(m.from, m.message_id, m.to, true));
                self.add(st.message_of_row(m.to, m.message_id, m.from, false));
                let bucket = bucket_of(m.message_id.timestamp().millis());
                let list = (m.conversation_id.to_string(), bucket);
                if !cql.buckets.contains(&list) {
                    self.buckets.entry(list).or_insert(micros(m.sent_at));
                }
            }
            Change::Delivered {
                delivery: d,
                sender,
            } => {
                self.add(st.timeline_delivered_row(d));
                // Both inboxes show the stamp when the message is their
                // last one.
                for owner in [sender, d.to] {
                    self.add(st.inbox_delivered_row(owner, d.conversation_id, d.message_id, d.at));
                }
            }
            Change::Marker { read: r, peer } => self.marker(st, r, peer),
            Change::Inbox { owner, peer, last } => {
                let kept = self
                    .inbox
                    .entry((owner, last.conversation_id))
                    .or_insert((peer, last));
                if last.message_id > kept.1.message_id {
                    *kept = (peer, last);
                }
            }
            Change::Unread { owner, message: m } => {
                self.add(st.unread_row(owner, m.conversation_id, m.message_id));
            }
            Change::User { user } => {
                for r in st.directory_rows(user) {
                    self.add(r);
                }
            }
            Change::Feed { owner, event: e } => {
                let bytes = match self.encoded.get(&e.position) {
                    Some(b) => b.clone(),
                    None => {
                        let b = e
                            .event
                            .encode(Stamp { id: e.id, at: e.at })
                            .map_err(StoreError::unexpected)?;
                        self.encoded.insert(e.position, b.clone());
                        b
                    }
                };
                self.add(st.feed_row(owner, e.position, e.at, bytes));
            }
        }
        Ok(())
    }

    fn marker(&mut self, st: &'s Statements, r: &ConversationRead, peer: UserId) {
        let c = r.conversation_id;
        self.add(st.marker_row(c, r.reader, r.up_to, r.at));
        self.add(st.inbox_marker_row(r.reader, c, r.up_to, r.at, true));
        self.add(st.unread_clear_row(r.reader, c, r.up_to));
        self.add(st.inbox_marker_row(peer, c, r.up_to, r.at, false));
    }

    /// The inbox entries kept, into their users' partitions.
    fn settle(&mut self, st: &'s Statements) -> Result<(), StoreError> {
        for ((owner, conv), (peer, last)) in std::mem::take(&mut self.inbox) {
            let json = serde_json::to_string(&last.to_message()).map_err(StoreError::unexpected)?;
            self.add(st.inbox_last_row(owner, conv, peer, last.message_id, json));
        }
        Ok(())
    }
}

/// Splits one partition's rows into batches of at most [`BATCH_BYTES`]
/// (a row heavier than that goes alone).
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

impl Cql {
    /// Rows of one partition as one request: a statement, or an unlogged
    /// batch (one mutation on the replica).
    pub(crate) fn partition_write<'a>(
        &'a self,
        request: &'static str,
        mut rows: Vec<Row<'a>>,
    ) -> Write<'a> {
        Box::pin(async move {
            if rows.len() == 1 {
                if let Some(r) = rows.pop() {
                    return observed(request, self.session.execute_unpaged(&r.st.st, r.values))
                        .await;
                }
            }
            let mut batch = Batch::new(BatchType::Unlogged);
            let mut values = Vec::with_capacity(rows.len());
            for r in rows {
                batch.append_statement(r.st.st.clone());
                values.push(r.values);
            }
            batch.set_is_idempotent(true);
            observed(request, self.session.batch(&batch, values)).await
        })
    }

    /// One request per size-bounded batch of each partition's rows.
    pub(crate) fn partition_writes<'a>(
        &'a self,
        rows: HashMap<Partition, Vec<Row<'a>>>,
    ) -> Vec<Write<'a>> {
        let mut out = Vec::new();
        for (p, rows) in rows {
            let request = p.request();
            for chunk in chunked(rows, |r| r.bytes) {
                out.push(self.partition_write(request, chunk));
            }
        }
        out
    }

    fn bucket_write(&self, (conv, bucket): &BucketRow, ts: i64) -> Write<'_> {
        let values = (conv.clone(), *bucket, ts);
        Box::pin(async move {
            observed(
                "bucket_write",
                self.session
                    .execute_unpaged(&self.st.bucket_insert.st, values),
            )
            .await
        })
    }
}

#[async_trait]
impl ReadModelWriter for Cql {
    #[tracing::instrument(name = "cql.apply", skip_all, fields(events = events.len()))]
    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), StoreError> {
        let mut plan = Plan::default();
        for e in events {
            for c in project(e) {
                plan.change(self, c)?;
            }
        }
        plan.settle(&self.st)?;
        let Plan { rows, buckets, .. } = plan;
        let mut writes = self.partition_writes(rows);
        writes.extend(buckets.iter().map(|(row, ts)| self.bucket_write(row, *ts)));
        stream::iter(writes)
            .buffer_unordered(WRITE_CONCURRENCY)
            .try_for_each(|_| async { Ok(()) })
            .await?;
        self.buckets.remember(buckets.into_keys());
        Ok(())
    }

    async fn reset(&self) -> Result<(), StoreError> {
        self.buckets.forget();
        for t in READ_MODEL_TABLES {
            self.session
                .query_unpaged(format!("TRUNCATE {}.{t}", self.keyspace), ())
                .await
                .map_err(crate::execution_error)?;
        }
        Ok(())
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

//! Timelines and read markers, by conversation: history pages. The
//! projector writes them (`projection`); each user's rows are in
//! `user_rows`.

use async_trait::async_trait;
use parley_domain::{
    ports::TimelineReader, ConversationId, Message, MessageBody, MessageId, MessageRef,
    ReadMarkers, StoreError, Timestamp, UserId,
};
use scylla::response::query_result::QueryResult;

use crate::{rows_error, schema::bucket_of, user_rows::parse_marker, Cql};

/// Buckets fetched per bucket-list read when paging a timeline.
const BUCKETS_PER_READ: i32 = 16;
/// How far another server's clock may run ahead of this one's. A first
/// page starts at the bucket of `now` plus this, so a message stamped by
/// such a clock just past a bucket boundary is still on it.
const MAX_CLOCK_AHEAD_MS: i64 = 3_600_000;

type MessageRow = (String, String, String, String, String, i64, Option<i64>);

/// A conversation's timeline bucket: a row of `timeline_buckets`.
pub(crate) type BucketRow = (String, i64);

/// Bucket-list rows this process has written. They never change once
/// written, so each is written once per conversation and bucket (and once
/// again after a restart), not once per message. A replay rewrites every
/// bucket it meets, so truncated read models get their rows back.
#[derive(Default)]
pub(crate) struct WrittenBuckets(std::sync::Mutex<std::collections::HashSet<BucketRow>>);

/// Rows remembered before the set starts over (about 100 MiB at most).
const BUCKETS_REMEMBERED: usize = 1_000_000;

impl WrittenBuckets {
    pub(crate) fn contains(&self, row: &BucketRow) -> bool {
        self.0.lock().map(|s| s.contains(row)).unwrap_or(false)
    }

    pub(crate) fn remember(&self, rows: impl IntoIterator<Item = BucketRow>) {
        if let Ok(mut s) = self.0.lock() {
            if s.len() > BUCKETS_REMEMBERED {
                s.clear();
            }
            s.extend(rows);
        }
    }

    pub(crate) fn forget(&self) {
        if let Ok(mut s) = self.0.lock() {
            s.clear();
        }
    }
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

pub(crate) fn rows<R>(result: QueryResult) -> Result<Vec<R>, StoreError>
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
    /// A conversation's read markers. A row written by a release before
    /// the `marker` cell has only its columns.
    async fn markers(&self, conversation: &str) -> Result<ReadMarkers, StoreError> {
        type Row = (String, Option<String>, Option<i64>, Option<String>);
        let found: Vec<Row> = rows(self.run(&self.st.markers, (conversation,)).await?)?;
        let mut out = ReadMarkers::default();
        for (reader, up_to, at, marker) in found {
            let reader = UserId::parse("reader", &reader).map_err(StoreError::unexpected)?;
            let parsed = match (marker.as_deref().and_then(parse_marker), up_to, at) {
                (Some(m), _, _) => Some(m),
                (None, Some(up_to), Some(at)) => MessageId::parse("up_to", &up_to)
                    .ok()
                    .map(|id| (id, Timestamp::from_millis(at))),
                _ => None,
            };
            if let Some((up_to, at)) = parsed {
                out.insert(reader, up_to, at);
            }
        }
        Ok(out)
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
        self.user_message(user, id).await
    }
}

//! `user_rows`: everything the read models keep per user, in one
//! partition per user, so all of one user's rows for an event (its feed
//! entry, inbox entry, unread mark, message lookup) are one mutation.
//!
//! Rows are told apart by `kind`, the first clustering column; the other
//! clustering columns a kind does not use hold `''` or `0`:
//!
//! | kind | key | cells |
//! |---|---|---|
//! | feed | log partition, log offset | the event as the log has it |
//! | inbox | conversation | peer, last message, the delivery of the newest delivered message, both read markers |
//! | unread | conversation, message | none (the row is the mark) |
//! | message | message | the other participant, whether the user sent it |
//!
//! A cell that two writes may race for holds its whole value as one text
//! whose order is the merge order (so Cassandra's tie-break on equal write
//! timestamps, the greater value, is the rule's), written at a timestamp
//! from the value itself.

use std::collections::HashMap;

use async_trait::async_trait;
use parley_domain::{
    ports::{InboxEntry, InboxReader, SyncFeed},
    ConversationId, Event, LogPosition, Message, MessageId, MessageRef, ReadMarkers, RecordedEvent,
    StoreError, Timestamp, UserId,
};

use crate::{read_models::rows, Cql};

/// The kind of a `user_rows` row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i8)]
pub(crate) enum Kind {
    Feed = 0,
    Inbox = 1,
    Unread = 2,
    Message = 3,
}

/// Milliseconds are written with this many digits, so texts compare as
/// the numbers do.
const MS_DIGITS: usize = 13;
const MS_MAX: i64 = 9_999_999_999_999;

fn ms(t: Timestamp) -> i64 {
    t.millis().clamp(0, MS_MAX)
}

fn parse(cell: &str) -> Option<(MessageId, i64)> {
    let (id, n) = cell.split_once(' ')?;
    let id = MessageId::parse("cell", id).ok()?;
    (n.len() == MS_DIGITS)
        .then(|| n.parse::<i64>().ok())
        .flatten()
        .map(|n| (id, n))
}

/// A read marker: the greater text is the further marker, and of two at
/// the same message the later (furthest wins).
pub(crate) fn marker_cell(up_to: MessageId, at: Timestamp) -> String {
    format!("{up_to} {:0w$}", ms(at), w = MS_DIGITS)
}

pub(crate) fn parse_marker(cell: &str) -> Option<(MessageId, Timestamp)> {
    parse(cell).map(|(id, at)| (id, Timestamp::from_millis(at)))
}

/// A delivery: the greater text is the newer message's, and of two
/// stamps for one message the earlier (earliest wins), so the time is
/// written subtracted from the largest.
pub(crate) fn delivered_cell(message: MessageId, at: Timestamp) -> String {
    format!("{message} {:0w$}", MS_MAX - ms(at), w = MS_DIGITS)
}

pub(crate) fn parse_delivered(cell: &str) -> Option<(MessageId, Timestamp)> {
    parse(cell).map(|(id, inverted)| (id, Timestamp::from_millis(MS_MAX - inverted)))
}

/// Rows of a user's inbox read per request.
pub(crate) const INBOX_PAGE: i32 = 5000;

/// An inbox row or an unread mark, as the inbox query returns them.
type InboxRow = (
    i8,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// An inbox entry being put together from its row and its unread marks.
#[derive(Default)]
struct Entry {
    peer: Option<String>,
    last: Option<String>,
    delivered: Option<String>,
    own: Option<String>,
    peer_marker: Option<String>,
    unread: Vec<String>,
}

fn user_id(field: &'static str, s: &str) -> Result<UserId, StoreError> {
    UserId::parse(field, s).map_err(StoreError::unexpected)
}

impl Entry {
    /// The entry as the inbox shows it; `None` for a row that holds no
    /// message yet (a receipt applied before its message).
    fn view(self, owner: UserId, conv: &str) -> Result<Option<InboxEntry>, StoreError> {
        let (Some(peer), Some(last)) = (self.peer, self.last) else {
            return Ok(None);
        };
        let peer = user_id("peer_id", &peer)?;
        let conversation_id = ConversationId::parse(conv).map_err(StoreError::unexpected)?;
        let mut last: Message = serde_json::from_str(&last).map_err(StoreError::unexpected)?;
        let own = self.own.as_deref().and_then(parse_marker);
        let mut markers = ReadMarkers::default();
        if let Some((up_to, at)) = own {
            markers.insert(owner, up_to, at);
        }
        if let Some((up_to, at)) = self.peer_marker.as_deref().and_then(parse_marker) {
            markers.insert(peer, up_to, at);
        }
        markers.stamp(&mut last);
        last.delivered_at = self
            .delivered
            .as_deref()
            .and_then(parse_delivered)
            .filter(|(id, _)| *id == last.id)
            .map(|(_, at)| at);
        // Marks a marker covers may still be there (a mark written after
        // the marker's delete by a release that deleted at another time):
        // the marker decides.
        let read_to = own.map(|(up_to, _)| up_to.to_string());
        let unread = self
            .unread
            .iter()
            .filter(|id| read_to.as_ref().is_none_or(|r| *id > r))
            .count();
        Ok(Some(InboxEntry {
            conversation_id,
            peer,
            last_message: last,
            unread_count: unread as u64,
        }))
    }
}

impl Cql {
    /// `user`'s lookup row for `id`: a message they sent or received.
    pub(crate) async fn user_message(
        &self,
        user: UserId,
        id: MessageId,
    ) -> Result<Option<MessageRef>, StoreError> {
        let found: Vec<(Option<String>, Option<bool>)> = rows(
            self.run(&self.st.message_of, (user.to_string(), id.to_string()))
                .await?,
        )?;
        let Some((Some(peer), Some(outgoing))) = found.into_iter().next() else {
            return Ok(None);
        };
        let peer = user_id("peer_id", &peer)?;
        let (from, to) = if outgoing { (user, peer) } else { (peer, user) };
        Ok(Some(MessageRef {
            id,
            conversation_id: ConversationId::between(from, to),
            from,
            to,
        }))
    }
}

#[async_trait]
impl InboxReader for Cql {
    /// One request for most users: the inbox rows and unread marks are one
    /// slice of the user's partition.
    #[tracing::instrument(name = "cql.inbox", skip_all)]
    async fn inbox(&self, user: UserId, limit: usize) -> Result<Vec<InboxEntry>, StoreError> {
        let uid = user.to_string();
        let mut entries: HashMap<String, Entry> = HashMap::new();
        let mut paging = scylla::response::PagingState::start();
        loop {
            let (result, next) = crate::observed_page(
                "inbox",
                self.session
                    .execute_single_page(&self.st.inbox.st, (uid.as_str(),), paging),
            )
            .await?;
            let page: Vec<InboxRow> = rows(result)?;
            for (kind, conv, message, peer, last, delivered, own, peer_marker) in page {
                let e = entries.entry(conv).or_default();
                if kind == Kind::Unread as i8 {
                    e.unread.push(message);
                } else {
                    (e.peer, e.last, e.delivered, e.own, e.peer_marker) =
                        (peer, last, delivered, own, peer_marker);
                }
            }
            match next.into_paging_control_flow() {
                std::ops::ControlFlow::Continue(state) => paging = state,
                std::ops::ControlFlow::Break(()) => break,
            }
        }
        let mut out = Vec::with_capacity(entries.len());
        for (conv, e) in entries {
            out.extend(e.view(user, &conv)?);
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.last_message.id));
        out.truncate(limit);
        Ok(out)
    }
}

#[async_trait]
impl SyncFeed for Cql {
    /// One request per page, whatever lies between `after` and `upto`: a
    /// user's feed is one slice of their partition.
    #[tracing::instrument(name = "cql.sync", skip_all)]
    async fn user_events(
        &self,
        user: UserId,
        partition: u32,
        after: Option<i64>,
        upto: i64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let after = after.unwrap_or(-1);
        if after >= upto || limit == 0 {
            return Ok(Vec::new());
        }
        let want = i32::try_from(limit).unwrap_or(i32::MAX);
        let found: Vec<(i64, Vec<u8>)> = rows(
            self.run(
                &self.st.feed_after,
                (user.to_string(), partition as i32, after, upto, want),
            )
            .await?,
        )?;
        let mut out = Vec::with_capacity(found.len());
        for (offset, bytes) in found {
            // A type this build does not know: skipped, as the log's own
            // readers skip it.
            if let Some((stamp, event)) = Event::decode(&bytes).map_err(StoreError::unexpected)? {
                out.push(RecordedEvent {
                    position: LogPosition { partition, offset },
                    id: stamp.id,
                    at: stamp.at,
                    event,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_order_as_their_rules_do() {
        let (older, newer) = (MessageId::new(), MessageId::new());
        let t = |ms| Timestamp::from_millis(ms);
        assert!(marker_cell(newer, t(5)) > marker_cell(older, t(9)));
        assert!(marker_cell(older, t(9)) > marker_cell(older, t(5)));
        assert!(delivered_cell(newer, t(9)) > delivered_cell(older, t(5)));
        assert!(delivered_cell(older, t(5)) > delivered_cell(older, t(9)));
        assert_eq!(
            parse_marker(&marker_cell(older, t(1_700_000_000_123))),
            Some((older, t(1_700_000_000_123)))
        );
        assert_eq!(
            parse_delivered(&delivered_cell(newer, t(42))),
            Some((newer, t(42)))
        );
        assert_eq!(parse_marker("nonsense"), None);
    }
}

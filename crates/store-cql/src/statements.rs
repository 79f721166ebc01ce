//! Every statement Parley runs, prepared once per session.

use parley_domain::StoreError;
use scylla::{client::session::Session, statement::prepared::PreparedStatement};

use crate::user_rows::{Kind, INBOX_PAGE};

/// Column list of a timeline row, in the order `read_models` decodes it.
pub const MESSAGE_COLUMNS: &str =
    "conversation_id, message_id, sender, recipient, body, sent_at, delivered_at";

/// A prepared statement and the name its requests are counted under in
/// `/metrics` (`parley_cql_request_seconds{statement=…}`), so an operator
/// can see which reads a busy store is serving and a benchmark can count
/// the requests a backlog or a page costs.
#[derive(Clone)]
pub struct Prepared {
    pub name: &'static str,
    pub st: PreparedStatement,
}

/// A logout, written by `logout` and by the migration that copies the
/// logouts an earlier release recorded.
pub(crate) fn revocation_insert(ks: &str) -> String {
    format!(
        "INSERT INTO {ks}.revocations (day, at, session_id, expires_at) VALUES (?, ?, ?, ?)
         USING TTL ?"
    )
}

pub struct Statements {
    pub health: Prepared,
    // users
    pub user_claim: Prepared,
    pub user_by_name: Prepared,
    pub user_unclaim: Prepared,
    pub user_by_id: Prepared,
    pub user_by_id_insert: Prepared,
    pub user_by_id_delete: Prepared,
    pub directory_insert: Prepared,
    pub directory_delete: Prepared,
    pub directory_search: Prepared,
    pub revoke: Prepared,
    pub revocation_insert: Prepared,
    pub revocations_after: Prepared,
    // dedup
    pub dedup_claim: Prepared,
    pub dedup_settle: Prepared,
    // projection: timelines and markers by conversation
    pub timeline_insert: Prepared,
    pub timeline_delivered: Prepared,
    pub bucket_insert: Prepared,
    pub marker_upsert: Prepared,
    // projection: each user's rows (`user_rows`)
    pub feed_insert: Prepared,
    pub inbox_last: Prepared,
    pub inbox_delivered: Prepared,
    pub inbox_own_marker: Prepared,
    pub inbox_peer_marker: Prepared,
    pub unread_insert: Prepared,
    pub unread_clear: Prepared,
    pub message_of_insert: Prepared,
    // reads
    pub buckets_before: Prepared,
    pub timeline_page: Prepared,
    pub markers: Prepared,
    pub feed_after: Prepared,
    pub inbox: Prepared,
    pub message_of: Prepared,
}

impl Statements {
    pub async fn prepare(session: &Session, ks: &str) -> Result<Self, StoreError> {
        let p = |name: &'static str, cql: String, idempotent: bool| async move {
            let mut st = session.prepare(cql).await.map_err(|e| {
                StoreError::unavailable(e).context(
                    "cannot prepare a statement (has `parley migrate` run for this keyspace?)",
                )
            })?;
            st.set_is_idempotent(idempotent);
            Ok::<_, StoreError>(Prepared { name, st })
        };
        let m = MESSAGE_COLUMNS;
        let (feed, inbox, unread, message) = (
            Kind::Feed as i8,
            Kind::Inbox as i8,
            Kind::Unread as i8,
            Kind::Message as i8,
        );
        Ok(Self {
            health: p("health", "SELECT release_version FROM system.local".into(), true).await?,
            user_claim: p("user_claim", format!(
                "INSERT INTO {ks}.users_by_name (username, id, display_name, created_at, password_hash)
                 VALUES (?, ?, ?, ?, ?) IF NOT EXISTS"), false).await?,
            user_by_name: p("user_by_name", format!(
                "SELECT id, username, display_name, created_at, password_hash FROM {ks}.users_by_name
                 WHERE username = ?"), true).await?,
            user_unclaim: p("user_unclaim", format!(
                "DELETE FROM {ks}.users_by_name WHERE username = ? IF id = ?"), false).await?,
            user_by_id: p("user_by_id", format!(
                "SELECT id, username, display_name, created_at FROM {ks}.users_by_id WHERE id = ?"), true).await?,
            user_by_id_insert: p("user_by_id_insert", format!(
                "INSERT INTO {ks}.users_by_id (id, username, display_name, created_at) VALUES (?, ?, ?, ?)
                 USING TIMESTAMP ?"), true).await?,
            user_by_id_delete: p("user_by_id_delete", format!("DELETE FROM {ks}.users_by_id WHERE id = ?"), true).await?,
            directory_insert: p("directory_insert", format!(
                "INSERT INTO {ks}.user_directory (prefix, username, id, display_name, created_at)
                 VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?"), true).await?,
            directory_delete: p("directory_delete", format!(
                "DELETE FROM {ks}.user_directory WHERE prefix = ? AND username = ?"), true).await?,
            directory_search: p("directory_search", format!(
                "SELECT id, username, display_name, created_at FROM {ks}.user_directory
                 WHERE prefix = ? AND username >= ? AND username < ? LIMIT ?"), true).await?,
            revoke: p("revoke", format!(
                "INSERT INTO {ks}.revoked_sessions (session_id) VALUES (?) USING TTL ?"), true).await?,
            revocation_insert: p("revocation_insert", revocation_insert(ks), true).await?,
            revocations_after: p("revocations_after", format!(
                "SELECT at, session_id, expires_at FROM {ks}.revocations
                 WHERE day = ? AND (at, session_id) > (?, ?) LIMIT ?"), true).await?,
            dedup_claim: p("dedup_claim", format!(
                "INSERT INTO {ks}.dedup_keys (key, payload) VALUES (?, ?) IF NOT EXISTS"), false).await?,
            dedup_settle: p("dedup_settle", format!(
                "UPDATE {ks}.dedup_keys SET log_partition = ?, log_offset = ? WHERE key = ?"), true).await?,
            timeline_insert: p("timeline_insert", format!(
                "INSERT INTO {ks}.timeline (conversation_id, bucket, message_id, sender, recipient, body, sent_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"), true).await?,
            timeline_delivered: p("timeline_delivered", format!(
                "UPDATE {ks}.timeline USING TIMESTAMP ? SET delivered_at = ?
                 WHERE conversation_id = ? AND bucket = ? AND message_id = ?"), true).await?,
            bucket_insert: p("bucket_insert", format!(
                "INSERT INTO {ks}.timeline_buckets (conversation_id, bucket) VALUES (?, ?) USING TIMESTAMP ?"), true).await?,
            marker_upsert: p("marker_upsert", format!(
                "INSERT INTO {ks}.read_markers (conversation_id, reader, up_to, at, marker) VALUES (?, ?, ?, ?, ?)
                 USING TIMESTAMP ?"), true).await?,
            feed_insert: p("feed_insert", format!(
                "INSERT INTO {ks}.user_rows (user_id, kind, conversation_id, log_partition, log_offset, message_id, event)
                 VALUES (?, {feed}, '', ?, ?, '', ?) USING TIMESTAMP ?"), true).await?,
            inbox_last: p("inbox_last", format!(
                "INSERT INTO {ks}.user_rows (user_id, kind, conversation_id, log_partition, log_offset, message_id, peer_id, last_message)
                 VALUES (?, {inbox}, ?, 0, 0, '', ?, ?) USING TIMESTAMP ?"), true).await?,
            inbox_delivered: p("inbox_delivered", format!(
                "UPDATE {ks}.user_rows USING TIMESTAMP ? SET delivered = ?
                 WHERE user_id = ? AND kind = {inbox} AND conversation_id = ? AND log_partition = 0 AND log_offset = 0 AND message_id = ''"), true).await?,
            inbox_own_marker: p("inbox_own_marker", format!(
                "UPDATE {ks}.user_rows USING TIMESTAMP ? SET own_marker = ?
                 WHERE user_id = ? AND kind = {inbox} AND conversation_id = ? AND log_partition = 0 AND log_offset = 0 AND message_id = ''"), true).await?,
            inbox_peer_marker: p("inbox_peer_marker", format!(
                "UPDATE {ks}.user_rows USING TIMESTAMP ? SET peer_marker = ?
                 WHERE user_id = ? AND kind = {inbox} AND conversation_id = ? AND log_partition = 0 AND log_offset = 0 AND message_id = ''"), true).await?,
            unread_insert: p("unread_insert", format!(
                "INSERT INTO {ks}.user_rows (user_id, kind, conversation_id, log_partition, log_offset, message_id)
                 VALUES (?, {unread}, ?, 0, 0, ?) USING TIMESTAMP ?"), true).await?,
            unread_clear: p("unread_clear", format!(
                "DELETE FROM {ks}.user_rows USING TIMESTAMP ?
                 WHERE user_id = ? AND kind = {unread} AND conversation_id = ? AND log_partition = 0 AND log_offset = 0
                 AND message_id <= ?"), true).await?,
            message_of_insert: p("message_of_insert", format!(
                "INSERT INTO {ks}.user_rows (user_id, kind, conversation_id, log_partition, log_offset, message_id, peer_id, outgoing)
                 VALUES (?, {message}, '', 0, 0, ?, ?, ?) USING TIMESTAMP ?"), true).await?,
            buckets_before: p("buckets_before", format!(
                "SELECT bucket FROM {ks}.timeline_buckets WHERE conversation_id = ? AND bucket <= ? LIMIT ?"), true).await?,
            timeline_page: p("timeline_page", format!(
                "SELECT {m} FROM {ks}.timeline WHERE conversation_id = ? AND bucket = ? AND message_id < ? LIMIT ?"), true).await?,
            markers: p("markers", format!(
                "SELECT reader, up_to, at, marker FROM {ks}.read_markers WHERE conversation_id = ?"), true).await?,
            feed_after: p("feed_after", format!(
                "SELECT log_offset, event FROM {ks}.user_rows
                 WHERE user_id = ? AND kind = {feed} AND conversation_id = '' AND log_partition = ?
                 AND log_offset > ? AND log_offset <= ? LIMIT ?"), true).await?,
            inbox: inbox_page(p("inbox", format!(
                "SELECT kind, conversation_id, message_id, peer_id, last_message, delivered, own_marker, peer_marker
                 FROM {ks}.user_rows WHERE user_id = ? AND kind >= {inbox} AND kind <= {unread}"), true).await?),
            message_of: p("message_of", format!(
                "SELECT peer_id, outgoing FROM {ks}.user_rows
                 WHERE user_id = ? AND kind = {message} AND conversation_id = '' AND log_partition = 0 AND log_offset = 0
                 AND message_id = ?"), true).await?,
        })
    }
}

/// The inbox is read a page of [`INBOX_PAGE`] rows at a time: one request
/// for all but the largest inboxes.
fn inbox_page(mut p: Prepared) -> Prepared {
    p.st.set_page_size(INBOX_PAGE);
    p
}

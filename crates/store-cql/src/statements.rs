//! Every statement Parley runs, prepared once per session.

use parley_domain::StoreError;
use scylla::{client::session::Session, statement::prepared::PreparedStatement};

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
    // projection
    pub timeline_insert: Prepared,
    pub timeline_delivered: Prepared,
    pub bucket_insert: Prepared,
    pub index_insert: Prepared,
    pub sync_insert: Prepared,
    pub sync_bucket_insert: Prepared,
    pub inbox_upsert: Prepared,
    pub unread_insert: Prepared,
    pub unread_clear: Prepared,
    pub marker_upsert: Prepared,
    // reads
    pub buckets_before: Prepared,
    pub timeline_page: Prepared,
    pub timeline_one: Prepared,
    pub index_lookup: Prepared,
    pub markers: Prepared,
    pub sync_buckets: Prepared,
    pub sync_after: Prepared,
    pub inbox: Prepared,
    pub unread_counts: Prepared,
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
            index_insert: p("index_insert", format!(
                "INSERT INTO {ks}.message_index (message_id, conversation_id) VALUES (?, ?) USING TIMESTAMP ?"), true).await?,
            sync_insert: p("sync_insert", format!(
                "INSERT INTO {ks}.user_sync (user_id, log_partition, bucket, log_offset, event)
                 VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?"), true).await?,
            sync_bucket_insert: p("sync_bucket_insert", format!(
                "INSERT INTO {ks}.user_sync_buckets (user_id, log_partition, bucket) VALUES (?, ?, ?)
                 USING TIMESTAMP ?"), true).await?,
            inbox_upsert: p("inbox_upsert", format!(
                "INSERT INTO {ks}.inbox (user_id, conversation_id, peer_id, last_message) VALUES (?, ?, ?, ?)
                 USING TIMESTAMP ?"), true).await?,
            unread_insert: p("unread_insert", format!(
                "INSERT INTO {ks}.unread (user_id, conversation_id, message_id) VALUES (?, ?, ?) USING TIMESTAMP ?"), true).await?,
            unread_clear: p("unread_clear", format!(
                "DELETE FROM {ks}.unread USING TIMESTAMP ?
                 WHERE user_id = ? AND conversation_id = ? AND message_id <= ?"), true).await?,
            marker_upsert: p("marker_upsert", format!(
                "INSERT INTO {ks}.read_markers (conversation_id, reader, up_to, at) VALUES (?, ?, ?, ?)
                 USING TIMESTAMP ?"), true).await?,
            buckets_before: p("buckets_before", format!(
                "SELECT bucket FROM {ks}.timeline_buckets WHERE conversation_id = ? AND bucket <= ? LIMIT ?"), true).await?,
            timeline_page: p("timeline_page", format!(
                "SELECT {m} FROM {ks}.timeline WHERE conversation_id = ? AND bucket = ? AND message_id < ? LIMIT ?"), true).await?,
            timeline_one: p("timeline_one", format!(
                "SELECT {m} FROM {ks}.timeline WHERE conversation_id = ? AND bucket = ? AND message_id = ?"), true).await?,
            index_lookup: p("index_lookup", format!(
                "SELECT conversation_id FROM {ks}.message_index WHERE message_id = ?"), true).await?,
            markers: p("markers", format!(
                "SELECT reader, up_to, at FROM {ks}.read_markers WHERE conversation_id = ?"), true).await?,
            sync_buckets: p("sync_buckets", format!(
                "SELECT bucket FROM {ks}.user_sync_buckets
                 WHERE user_id = ? AND log_partition = ? AND bucket >= ? AND bucket <= ? LIMIT ?"), true).await?,
            sync_after: p("sync_after", format!(
                "SELECT log_offset, event FROM {ks}.user_sync
                 WHERE user_id = ? AND log_partition = ? AND bucket = ? AND log_offset > ? AND log_offset <= ?
                 LIMIT ?"), true).await?,
            inbox: p("inbox", format!(
                "SELECT conversation_id, peer_id, last_message FROM {ks}.inbox WHERE user_id = ?"), true).await?,
            unread_counts: p("unread_counts", format!(
                "SELECT conversation_id, COUNT(*) FROM {ks}.unread WHERE user_id = ? GROUP BY conversation_id"), true).await?,
        })
    }
}

//! Every statement Parley runs, prepared once per session.

use parley_domain::StoreError;
use scylla::{client::session::Session, statement::prepared::PreparedStatement};

/// Column list of a timeline row, in the order `read_models` decodes it.
pub const MESSAGE_COLUMNS: &str =
    "conversation_id, message_id, sender, recipient, body, sent_at, delivered_at";

pub struct Statements {
    pub health: PreparedStatement,
    // users
    pub user_claim: PreparedStatement,
    pub user_by_name: PreparedStatement,
    pub user_unclaim: PreparedStatement,
    pub user_by_id: PreparedStatement,
    pub user_by_id_insert: PreparedStatement,
    pub user_by_id_delete: PreparedStatement,
    pub directory_insert: PreparedStatement,
    pub directory_delete: PreparedStatement,
    pub directory_search: PreparedStatement,
    pub revoke: PreparedStatement,
    pub is_revoked: PreparedStatement,
    // dedup
    pub dedup_claim: PreparedStatement,
    pub dedup_settle: PreparedStatement,
    // projection
    pub timeline_insert: PreparedStatement,
    pub timeline_delivered: PreparedStatement,
    pub bucket_insert: PreparedStatement,
    pub index_insert: PreparedStatement,
    pub feed_insert: PreparedStatement,
    pub feed_bucket_insert: PreparedStatement,
    pub inbox_upsert: PreparedStatement,
    pub unread_insert: PreparedStatement,
    pub unread_clear: PreparedStatement,
    pub marker_upsert: PreparedStatement,
    // reads
    pub buckets_before: PreparedStatement,
    pub timeline_page: PreparedStatement,
    pub timeline_one: PreparedStatement,
    pub index_lookup: PreparedStatement,
    pub markers: PreparedStatement,
    pub feed_buckets_from: PreparedStatement,
    pub feed_after: PreparedStatement,
    pub inbox: PreparedStatement,
    pub unread_counts: PreparedStatement,
}

impl Statements {
    pub async fn prepare(session: &Session, ks: &str) -> Result<Self, StoreError> {
        let p = |cql: String, idempotent: bool| async move {
            let mut st = session.prepare(cql).await.map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot prepare a statement (has `parley migrate` run for this keyspace?): {e}"
                ))
            })?;
            st.set_is_idempotent(idempotent);
            Ok::<_, StoreError>(st)
        };
        let m = MESSAGE_COLUMNS;
        Ok(Self {
            health: p("SELECT release_version FROM system.local".into(), true).await?,
            user_claim: p(format!(
                "INSERT INTO {ks}.users_by_name (username, id, display_name, created_at, password_hash)
                 VALUES (?, ?, ?, ?, ?) IF NOT EXISTS"), false).await?,
            user_by_name: p(format!(
                "SELECT id, username, display_name, created_at, password_hash FROM {ks}.users_by_name
                 WHERE username = ?"), true).await?,
            user_unclaim: p(format!(
                "DELETE FROM {ks}.users_by_name WHERE username = ? IF id = ?"), false).await?,
            user_by_id: p(format!(
                "SELECT id, username, display_name, created_at FROM {ks}.users_by_id WHERE id = ?"), true).await?,
            user_by_id_insert: p(format!(
                "INSERT INTO {ks}.users_by_id (id, username, display_name, created_at) VALUES (?, ?, ?, ?)
                 USING TIMESTAMP ?"), true).await?,
            user_by_id_delete: p(format!("DELETE FROM {ks}.users_by_id WHERE id = ?"), true).await?,
            directory_insert: p(format!(
                "INSERT INTO {ks}.user_directory (prefix, username, id, display_name, created_at)
                 VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?"), true).await?,
            directory_delete: p(format!(
                "DELETE FROM {ks}.user_directory WHERE prefix = ? AND username = ?"), true).await?,
            directory_search: p(format!(
                "SELECT id, username, display_name, created_at FROM {ks}.user_directory
                 WHERE prefix = ? AND username >= ? AND username < ? LIMIT ?"), true).await?,
            revoke: p(format!(
                "INSERT INTO {ks}.revoked_sessions (session_id) VALUES (?) USING TTL ?"), true).await?,
            is_revoked: p(format!(
                "SELECT session_id FROM {ks}.revoked_sessions WHERE session_id = ?"), true).await?,
            dedup_claim: p(format!(
                "INSERT INTO {ks}.dedup_keys (key, payload) VALUES (?, ?) IF NOT EXISTS"), false).await?,
            dedup_settle: p(format!(
                "UPDATE {ks}.dedup_keys SET log_partition = ?, log_offset = ? WHERE key = ?"), true).await?,
            timeline_insert: p(format!(
                "INSERT INTO {ks}.timeline (conversation_id, bucket, message_id, sender, recipient, body, sent_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"), true).await?,
            timeline_delivered: p(format!(
                "UPDATE {ks}.timeline USING TIMESTAMP ? SET delivered_at = ?
                 WHERE conversation_id = ? AND bucket = ? AND message_id = ?"), true).await?,
            bucket_insert: p(format!(
                "INSERT INTO {ks}.timeline_buckets (conversation_id, bucket) VALUES (?, ?) USING TIMESTAMP ?"), true).await?,
            index_insert: p(format!(
                "INSERT INTO {ks}.message_index (message_id, conversation_id) VALUES (?, ?) USING TIMESTAMP ?"), true).await?,
            feed_insert: p(format!(
                "INSERT INTO {ks}.user_feed (user_id, bucket, message_id, conversation_id, log_partition, log_offset)
                 VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"), true).await?,
            feed_bucket_insert: p(format!(
                "INSERT INTO {ks}.user_feed_buckets (user_id, bucket) VALUES (?, ?) USING TIMESTAMP ?"), true).await?,
            inbox_upsert: p(format!(
                "INSERT INTO {ks}.inbox (user_id, conversation_id, peer_id, last_message) VALUES (?, ?, ?, ?)
                 USING TIMESTAMP ?"), true).await?,
            unread_insert: p(format!(
                "INSERT INTO {ks}.unread (user_id, conversation_id, message_id) VALUES (?, ?, ?) USING TIMESTAMP ?"), true).await?,
            unread_clear: p(format!(
                "DELETE FROM {ks}.unread USING TIMESTAMP ?
                 WHERE user_id = ? AND conversation_id = ? AND message_id <= ?"), true).await?,
            marker_upsert: p(format!(
                "INSERT INTO {ks}.read_markers (conversation_id, reader, up_to, at) VALUES (?, ?, ?, ?)
                 USING TIMESTAMP ?"), true).await?,
            buckets_before: p(format!(
                "SELECT bucket FROM {ks}.timeline_buckets WHERE conversation_id = ? AND bucket <= ? LIMIT ?"), true).await?,
            timeline_page: p(format!(
                "SELECT {m} FROM {ks}.timeline WHERE conversation_id = ? AND bucket = ? AND message_id < ? LIMIT ?"), true).await?,
            timeline_one: p(format!(
                "SELECT {m} FROM {ks}.timeline WHERE conversation_id = ? AND bucket = ? AND message_id = ?"), true).await?,
            index_lookup: p(format!(
                "SELECT conversation_id FROM {ks}.message_index WHERE message_id = ?"), true).await?,
            markers: p(format!(
                "SELECT reader, up_to, at FROM {ks}.read_markers WHERE conversation_id = ?"), true).await?,
            feed_buckets_from: p(format!(
                "SELECT bucket FROM {ks}.user_feed_buckets WHERE user_id = ? AND bucket >= ? LIMIT ?"), true).await?,
            feed_after: p(format!(
                "SELECT message_id, conversation_id, log_partition, log_offset FROM {ks}.user_feed
                 WHERE user_id = ? AND bucket = ? AND message_id > ? LIMIT ?"), true).await?,
            inbox: p(format!(
                "SELECT conversation_id, peer_id, last_message FROM {ks}.inbox WHERE user_id = ?"), true).await?,
            unread_counts: p(format!(
                "SELECT conversation_id, COUNT(*) FROM {ks}.unread WHERE user_id = ? GROUP BY conversation_id"), true).await?,
        })
    }
}

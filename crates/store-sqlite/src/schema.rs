//! Versioned schema, applied in order; `PRAGMA user_version` records how far.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: log, positions, credentials, read models.
    r#"
    CREATE TABLE events (
        "offset" INTEGER PRIMARY KEY,
        key TEXT NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE TABLE dedup (
        key TEXT PRIMARY KEY,
        "offset" INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE consumer_positions (
        grp TEXT PRIMARY KEY,
        "offset" INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE revoked_sessions (
        session_id TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE messages (
        conversation_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        body TEXT NOT NULL,
        sent_at INTEGER NOT NULL,
        delivered_at INTEGER,
        log_partition INTEGER NOT NULL,
        log_offset INTEGER NOT NULL,
        PRIMARY KEY (conversation_id, message_id)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX messages_by_id ON messages (message_id);
    CREATE INDEX messages_by_recipient ON messages (recipient, message_id);
    CREATE INDEX messages_by_sender ON messages (sender, message_id);
    CREATE TABLE read_markers (
        conversation_id TEXT NOT NULL,
        reader TEXT NOT NULL,
        up_to TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (conversation_id, reader)
    ) WITHOUT ROWID;
    CREATE TABLE inbox (
        user_id TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        peer_id TEXT NOT NULL,
        last_message_id TEXT NOT NULL,
        unread_count INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id, conversation_id)
    ) WITHOUT ROWID;
    CREATE INDEX inbox_by_activity ON inbox (user_id, last_message_id DESC);
    "#,
];

/// The tables `parley replay` empties: everything the projector derives.
pub const READ_MODEL_TABLES: &[&str] = &["messages", "read_markers", "inbox"];

pub fn migrate(conn: &mut Connection) -> rusqlite::Result<u32> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
    }
    tx.commit()?;
    Ok(MIGRATIONS.len() as u32)
}

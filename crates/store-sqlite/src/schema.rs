//! Versioned schemas, applied in order; `PRAGMA user_version` records how
//! far. Two files: `log.db` holds the event log and its de-duplication
//! keys; `parley.db` everything else. The log writer and the projector
//! each get a file (and a WAL) of their own, so appends never queue behind
//! read-model writes.

use std::path::Path;

use rusqlite::Connection;

/// The log file's schema.
const LOG_MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE IF NOT EXISTS events (
        "offset" INTEGER PRIMARY KEY,
        key TEXT NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS dedup (
        key TEXT PRIMARY KEY,
        "offset" INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 2: the log's identity, drawn once, so a sync token minted on
    // another data dir is told apart from one of this log.
    r#"
    CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO meta (key, value) VALUES ('log_id', random() & 0x7fffffffffffffff);
    "#,
];

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
    // 2: the log moved to log.db (its rows are copied there first, see
    // `migrate_main`).
    r#"
    DROP TABLE IF EXISTS dedup;
    DROP TABLE IF EXISTS events;
    "#,
    // 3: read models laid out for cheaper projection. Messages are a rowid
    // table keyed by log offset, so inserts append; history pages use a
    // narrow (conversation, message) index; the per-user indexes and the
    // inbox activity index (each a random b-tree write per message) are
    // gone: resume reads through the user's inbox, the inbox sorts its
    // (few) rows. Read models are derived, so this drops them and resets
    // the projector, which rebuilds them from the log on start.
    r#"
    DROP TABLE IF EXISTS messages;
    DROP TABLE IF EXISTS read_markers;
    DROP TABLE IF EXISTS inbox;
    DELETE FROM consumer_positions WHERE grp = 'projector';
    CREATE TABLE messages (
        log_offset INTEGER PRIMARY KEY,
        log_partition INTEGER NOT NULL,
        conversation_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        sender TEXT NOT NULL,
        recipient TEXT NOT NULL,
        body TEXT NOT NULL,
        sent_at INTEGER NOT NULL,
        delivered_at INTEGER
    );
    CREATE UNIQUE INDEX messages_by_conversation ON messages (conversation_id, message_id);
    CREATE UNIQUE INDEX messages_by_id ON messages (message_id);
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
    "#,
    // 4: each user's events by log offset, what a reconnecting socket
    // reads when its backlog is older than ws-push holds in memory. The
    // read models are emptied and the projector starts over, so the feed
    // covers the whole log.
    r#"
    DELETE FROM messages;
    DELETE FROM read_markers;
    DELETE FROM inbox;
    DELETE FROM consumer_positions WHERE grp = 'projector';
    CREATE TABLE sync_feed (
        user_id TEXT NOT NULL,
        log_offset INTEGER NOT NULL,
        PRIMARY KEY (user_id, log_offset)
    ) WITHOUT ROWID;
    "#,
    // 5: delivery receipts applied before their message (a replay in
    // another order), kept until the message is inserted so the earliest
    // receipt still stamps it. Nothing to rebuild: the projector has
    // always applied a conversation's events in log order.
    r#"
    CREATE TABLE early_deliveries (
        message_id TEXT PRIMARY KEY,
        at INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 6: the directory apart from the credentials, as a read model the
    // projector keeps from `UserRegistered` (and registration writes at
    // once), as on the cluster; it starts with every user there is.
    r#"
    CREATE TABLE directory (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO directory (id, username, display_name, created_at)
        SELECT id, username, display_name, created_at FROM users;
    "#,
];

/// The tables `parley replay` empties: everything the projector derives.
pub const READ_MODEL_TABLES: &[&str] = &[
    "messages",
    "read_markers",
    "inbox",
    "sync_feed",
    "early_deliveries",
    "directory",
];

pub fn migrate_log(conn: &mut Connection) -> rusqlite::Result<u32> {
    apply(conn, LOG_MIGRATIONS)
}

/// Migrates `parley.db`. A file from before the split still holds the log:
/// its rows are copied into `log` (idempotently, so an interrupted move
/// is simply done again) before migration 2 drops them here.
pub fn migrate_main(conn: &mut Connection, log: &Path) -> rusqlite::Result<u32> {
    let current: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current == 1 {
        conn.execute("ATTACH DATABASE ?1 AS log", [log.to_string_lossy()])?;
        let copied = conn.execute_batch(
            r#"INSERT OR IGNORE INTO log.events SELECT "offset", key, payload FROM main.events;
               INSERT OR IGNORE INTO log.dedup SELECT key, "offset" FROM main.dedup;"#,
        );
        conn.execute("DETACH DATABASE log", [])?;
        copied?;
    }
    apply(conn, MIGRATIONS)
}

fn apply(conn: &mut Connection, migrations: &[&str]) -> rusqlite::Result<u32> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in migrations.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
    }
    tx.commit()?;
    Ok(migrations.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data dir from before the log had a file of its own keeps its
    /// events (and dedup keys) through the upgrade, its read models are
    /// rebuilt, and upgrading twice is harmless.
    #[test]
    fn a_pre_split_log_moves_into_log_db() {
        let dir = tempfile::tempdir().unwrap();
        let (main_path, log_path) = (dir.path().join("parley.db"), dir.path().join("log.db"));
        {
            let mut old = Connection::open(&main_path).unwrap();
            apply(&mut old, &MIGRATIONS[..1]).unwrap();
            old.execute_batch(
                r#"INSERT INTO events ("offset", key, payload) VALUES (1, 'k', x'7b7d'), (2, 'k', x'5b5d');
                   INSERT INTO dedup (key, "offset") VALUES ('send:a:1', 2);
                   INSERT INTO consumer_positions (grp, "offset") VALUES ('projector', 2);"#,
            )
            .unwrap();
        }
        for _ in 0..2 {
            let mut log = Connection::open(&log_path).unwrap();
            migrate_log(&mut log).unwrap();
            let mut main = Connection::open(&main_path).unwrap();
            assert_eq!(
                migrate_main(&mut main, &log_path).unwrap(),
                MIGRATIONS.len() as u32
            );
            let events: i64 = log
                .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
                .unwrap();
            let dedup: i64 = log
                .query_row(
                    r#"SELECT "offset" FROM dedup WHERE key = 'send:a:1'"#,
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!((events, dedup), (2, 2));
            let left: i64 = main
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('events', 'dedup')",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(left, 0, "the old log tables are gone from parley.db");
            // The read models were rebuilt in a new layout: the projector
            // starts again from the beginning of the log.
            let projector: i64 = main
                .query_row(
                    "SELECT COUNT(*) FROM consumer_positions WHERE grp = 'projector'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(projector, 0);
        }
    }
}

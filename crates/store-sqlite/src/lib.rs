//! The embedded backend: SQLite in WAL mode, two files in one data dir:
//! `log.db` holds the event log, `parley.db` the consumer positions, the
//! read models and the credentials.
//!
//! It implements the same ports as the Kafka and CQL adapters, so every
//! role runs unchanged on it. Appends are group-committed by one writer
//! thread: concurrent sends share a transaction and an fsync. What it
//! committed is handed to the consumers of the same process in memory
//! (`recent`); other processes sharing the files read them.

mod db;
mod log;
mod projection;
mod read_models;
mod recent;
mod schema;
mod sync_feed;
mod users;

use std::{path::Path, sync::Arc};

use async_trait::async_trait;
use parley_domain::{ports::HealthCheck, StoreError};
use tokio::sync::watch;

pub use db::Db;
pub use log::{SqliteAppender, SqliteLog};
pub use read_models::SqliteReadModels;
pub use sync_feed::SqliteSyncFeed;
pub use users::SqliteUsers;

/// Every port of the embedded backend, over one database file.
#[derive(Clone)]
pub struct Embedded {
    pub db: Arc<Db>,
    pub log_db: Arc<Db>,
    pub appender: Arc<SqliteAppender>,
    pub log: Arc<SqliteLog>,
    pub read_models: Arc<SqliteReadModels>,
    pub sync_feed: Arc<SqliteSyncFeed>,
    pub users: Arc<SqliteUsers>,
}

impl Embedded {
    /// Opens (creating if needed) the files in `dir`, migrates their
    /// schemas and starts the append writer thread.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let (log_db, db) = Self::open_files(dir)?;
        let (log_db, db) = (Arc::new(log_db), Arc::new(db));
        let head = log_db.head_offset_blocking()?;
        let log_id = log_db.log_id_blocking()?;
        let (head_tx, head_rx) = watch::channel(head);
        let recent = Arc::new(recent::Recent::new(head));
        let appender = Arc::new(SqliteAppender::start(
            log_db.clone(),
            head_tx,
            recent.clone(),
        )?);
        Ok(Self {
            log: Arc::new(SqliteLog::new(
                log_db.clone(),
                db.clone(),
                head_rx,
                recent,
                log_id,
            )),
            read_models: Arc::new(SqliteReadModels::new(db.clone())),
            sync_feed: Arc::new(SqliteSyncFeed::new(db.clone(), log_db.clone())),
            log_db,
            users: Arc::new(SqliteUsers::new(db.clone())),
            appender,
            db,
        })
    }

    /// Creates or upgrades the schema without starting anything else.
    pub fn migrate(dir: &Path) -> Result<u32, StoreError> {
        Self::open_files(dir)?.1.schema_version_blocking()
    }

    /// The log first: opening the main file may move a pre-split log in.
    fn open_files(dir: &Path) -> Result<(Db, Db), StoreError> {
        std::fs::create_dir_all(dir).map_err(StoreError::unavailable)?;
        let log_path = dir.join("log.db");
        let main_path = dir.join("parley.db");
        for path in [&log_path, &main_path] {
            private_file(path).map_err(|e| {
                StoreError::unavailable(e)
                    .context(format!("cannot make {} private", path.display()))
            })?;
        }
        let log = Db::open_log(&log_path)?;
        let main = Db::open_main(&main_path, &log_path)?;
        Ok((log, main))
    }
}

/// Makes a database file readable by its owner only, creating it (empty,
/// which SQLite opens as a new database) if it is missing: the files hold
/// password hashes and every message, and whatever the umask, nobody else
/// on the machine may read them. SQLite creates the `-wal` and `-shm`
/// files with the main file's mode; ones left over from before are
/// tightened here too.
fn private_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let Ok(meta) = std::fs::metadata(&name) else {
                continue;
            };
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(&name, std::fs::Permissions::from_mode(mode & 0o700))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[async_trait]
impl HealthCheck for Embedded {
    fn name(&self) -> &'static str {
        "sqlite"
    }
    async fn check(&self) -> Result<(), StoreError> {
        self.appender.check_alive()?;
        for db in [&self.db, &self.log_db] {
            db.read(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use parley_domain::{commands::SendMessage, ports::EventAppender, UserId};

    use super::*;

    /// The writer hands what it committed to the consumers' ring.
    #[tokio::test]
    async fn committed_events_are_held_for_the_consumers_of_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Embedded::open(dir.path()).unwrap();
        let (a, b) = (UserId::new(), UserId::new());
        let mut offsets = Vec::new();
        for body in ["one", "two"] {
            let send = SendMessage::decide(a, &b.to_string(), body.into(), None).unwrap();
            let appended = backend.appender.append(send.into_pending()).await.unwrap();
            offsets.push(appended.event().position.offset);
        }
        let held = backend.log.recent.after(0, 10).unwrap();
        assert_eq!(
            held.iter().map(|e| e.position.offset).collect::<Vec<_>>(),
            offsets
        );
    }
}

//! Connections: a small pool of readers and one writer for read models and
//! credentials. All SQLite calls run on blocking threads.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use parley_domain::StoreError;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::schema;

/// How long a statement waits for another writer (the append thread, the
/// projector, another process) before giving up with `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_IDLE_READERS: usize = 8;

pub struct Db {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Connection>,
}

pub(crate) fn open_conn(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL lets readers run beside the writer; synchronous=FULL makes every
    // commit durable before it returns, which is what a 202 promises.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Sorts SQLite errors into what callers can act on.
pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::ConstraintViolation => StoreError::Conflict(e.to_string()),
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::ReadOnly => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Unexpected(e.to_string()),
        },
        _ => StoreError::Unexpected(e.to_string()),
    }
}

impl Db {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut writer = open_conn(path).map_err(map_err)?;
        schema::migrate(&mut writer).map_err(map_err)?;
        Ok(Self {
            path: path.to_owned(),
            readers: Mutex::new(Vec::new()),
            writer: Mutex::new(writer),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn schema_version_blocking(&self) -> Result<u32, StoreError> {
        self.with_reader(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
    }

    pub(crate) fn head_offset_blocking(&self) -> Result<i64, StoreError> {
        self.with_reader(crate::log::head_offset)
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = match self.readers.lock().map(|mut v| v.pop()) {
            Ok(Some(c)) => c,
            _ => open_conn(&self.path).map_err(map_err)?,
        };
        let out = f(&conn).map_err(map_err);
        if let Ok(mut idle) = self.readers.lock() {
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        out
    }

    /// Runs a read on a pooled connection on a blocking thread.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.with_reader(f))
            .await
            .map_err(StoreError::unexpected)?
    }

    /// Runs `f` in one immediate transaction on the shared writer connection.
    pub async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db
                .writer
                .lock()
                .map_err(|_| StoreError::Unexpected("writer connection poisoned".into()))?;
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(map_err)?;
            let out = f(&tx).map_err(map_err)?;
            tx.commit().map_err(map_err)?;
            Ok(out)
        })
        .await
        .map_err(StoreError::unexpected)?
    }
}

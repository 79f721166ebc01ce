//! Connections: a small pool of readers and one writer for read models and
//! credentials. All SQLite calls run on blocking threads.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use parley_domain::{LogId, StoreError};
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::schema;

/// How long a statement waits for another writer (the append thread, the
/// projector, another process) before giving up with `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Reader connections per file. Reads beyond this wait for a connection
/// rather than open one (opening costs more than most reads).
const MAX_READERS: usize = 8;

pub struct Db {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    /// One permit per reader connection.
    reading: tokio::sync::Semaphore,
    writer: Mutex<Connection>,
    /// Taken around every write transaction of this process on this file
    /// and around its checkpointer's RESTART pass, so they queue here and
    /// wake at once rather than meet in SQLite's busy handler, which sleeps
    /// in steps of up to 100 ms: far longer than the commit it waits for.
    write_gate: Arc<Mutex<()>>,
    /// Tells the checkpoint thread to stop when this handle goes away.
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Db {
    fn drop(&mut self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How often the read models' WAL is copied back into their file while
/// they are being written. Often, so each checkpoint is small: a
/// checkpoint ends in an fsync of everything it copied, and the log's next
/// fsync waits behind it on the same disk, so a send's latency grows with
/// the size of the checkpoint it meets. The read models write several
/// pages of WAL per message. Shorter intervals gain nothing more, and each
/// checkpoint costs the projector a little (the sweep is in
/// docs/perf/embedded-send-push.md).
const MAIN_CHECKPOINT_EVERY: Duration = Duration::from_millis(5);
/// The log's own checkpoints do not stall its commits, while
/// checkpointing it as often as the read models slows appends; so the log
/// is checkpointed less often.
const LOG_CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Checkpoints `path`'s WAL in the background. A PASSIVE pass copies what
/// it can beside the writers. Once the WAL is past [`RESTART_AT_FRAMES`], a
/// RESTART pass follows under the write gate: only the frames written
/// during the first pass are left to copy, and it waits (a few milliseconds
/// at most) for readers to let go of the WAL, so the next commit writes it
/// again from its start. Without that pass a steady stream of commits
/// never lets the WAL restart: it grows without bound, and every page
/// lookup searches its ever longer index.
fn spawn_checkpointer(
    path: PathBuf,
    every: Duration,
    gate: Arc<Mutex<()>>,
    closed: Arc<std::sync::atomic::AtomicBool>,
) {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let spawned = std::thread::Builder::new()
        .name("parley-checkpoint".into())
        .spawn(move || {
            let conn = match open_conn(&path).and_then(|c| {
                c.busy_timeout(RESTART_WAIT)?;
                Ok(c)
            }) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, path = %path.display(), "no WAL checkpoints");
                    return;
                }
            };
            let mut last = (-1, -1);
            let mut busy_at = std::time::Instant::now();
            while !closed.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(if busy_at.elapsed() < IDLE_AFTER {
                    every
                } else {
                    every.max(IDLE_EVERY)
                });
                let started = std::time::Instant::now();
                let done = checkpoint(&conn, "PASSIVE").and_then(|(frames, copied)| {
                    if frames >= RESTART_AT_FRAMES {
                        let _gate = gate.lock().unwrap_or_else(|e| e.into_inner());
                        checkpoint(&conn, "RESTART")
                    } else {
                        Ok((frames, copied))
                    }
                });
                match done {
                    Ok((frames, copied)) => {
                        // A pass that found nothing new is neither a checkpoint nor a
                        // sign of writes.
                        let changed = (frames, copied) != last;
                        if changed {
                            last = (frames, copied);
                            busy_at = started;
                        }
                        if changed && copied > 0 {
                            metrics::histogram!("parley_sqlite_checkpoint_seconds", "file" => file.clone())
                                .record(started.elapsed().as_secs_f64());
                        }
                        // Frames since the WAL last started over: a figure
                        // that only grows means checkpoints cannot finish.
                        if frames >= 0 {
                            metrics::gauge!("parley_sqlite_wal_frames", "file" => file.clone())
                                .set(frames as f64);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the WAL checkpoint thread");
    }
}

/// A file nobody has written for [`IDLE_AFTER`] is checked only every
/// [`IDLE_EVERY`], so an idle server does not wake 200 times a second; the
/// first commit after a pause waits at most that long for its checkpoint.
const IDLE_AFTER: Duration = Duration::from_secs(1);
const IDLE_EVERY: Duration = Duration::from_millis(100);

/// WAL size (4 KiB frames, so 16 MiB) past which a checkpoint makes the
/// next commit start the WAL over.
const RESTART_AT_FRAMES: i64 = 4096;
/// How long a RESTART checkpoint waits for readers before trying again at
/// the next round; it holds the write gate meanwhile.
const RESTART_WAIT: Duration = Duration::from_millis(10);

/// (frames in the WAL, frames copied into the database so far); -1s when a
/// RESTART found the WAL busy.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
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
    // Reads come from a shared memory map rather than a pread per page
    // miss, and each connection keeps 16 MiB of pages: under a send-heavy
    // load page misses and cache spills are otherwise where the time goes.
    conn.pragma_update(None, "mmap_size", 1i64 << 30)?;
    conn.pragma_update(None, "cache_size", -16 * 1024)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // No checkpoint inside a commit: a checkpoint copies the WAL into the
    // database and fsyncs it, which would stall the send whose commit
    // triggered it. A background thread checkpoints instead.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // After a burst, a restarted WAL gives its disk space back down to this.
    conn.pragma_update(None, "journal_size_limit", 64i64 << 20)?;
    // Plans must not depend on bound values: without this SQLite reads a
    // bound `LIMIT ?` while planning, so binding a new value expires the
    // cached statement and every execution parses and plans it again; the
    // log tail and history queries run thousands of times a second.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Sorts SQLite errors into what callers can act on.
pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::ConstraintViolation => StoreError::conflict(e),
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::ReadOnly => StoreError::unavailable(e),
            _ => StoreError::unexpected(e),
        },
        _ => StoreError::unexpected(e),
    }
}

impl Db {
    /// Opens the log file (`log.db`).
    pub fn open_log(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, schema::migrate_log, LOG_CHECKPOINT_EVERY)
    }

    /// Opens the main file (`parley.db`), moving a pre-split log into `log`.
    pub fn open_main(path: &Path, log: &Path) -> Result<Self, StoreError> {
        Self::open_with(
            path,
            |c| schema::migrate_main(c, log),
            MAIN_CHECKPOINT_EVERY,
        )
    }

    fn open_with(
        path: &Path,
        migrate: impl FnOnce(&mut Connection) -> rusqlite::Result<u32>,
        checkpoint_every: Duration,
    ) -> Result<Self, StoreError> {
        let mut writer = open_conn(path).map_err(map_err)?;
        migrate(&mut writer).map_err(map_err)?;
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let write_gate = Arc::new(Mutex::new(()));
        spawn_checkpointer(
            path.to_owned(),
            checkpoint_every,
            write_gate.clone(),
            closed.clone(),
        );
        Ok(Self {
            closed,
            path: path.to_owned(),
            readers: Mutex::new(Vec::new()),
            reading: tokio::sync::Semaphore::new(MAX_READERS),
            writer: Mutex::new(writer),
            write_gate,
        })
    }

    /// Runs `f` holding this file's write gate. It does not yield after:
    /// the log writer commits through here, and a yield would put the
    /// replies to each commit behind whatever else is runnable on its core.
    pub(crate) fn exclusive<T>(&self, f: impl FnOnce() -> T) -> T {
        let _gate = self.write_gate.lock().unwrap_or_else(|e| e.into_inner());
        f()
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

    /// The id drawn when the log file was created.
    pub(crate) fn log_id_blocking(&self) -> Result<LogId, StoreError> {
        self.with_reader(|c| {
            c.query_row("SELECT value FROM meta WHERE key = 'log_id'", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .map(|v| LogId(v as u64))
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
            if idle.len() < MAX_READERS {
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
        let permit = self
            .reading
            .acquire()
            .await
            .map_err(|_| StoreError::unavailable_msg("database closed"))?;
        let db = self.clone();
        let out = tokio::task::spawn_blocking(move || db.with_reader(f)).await;
        drop(permit);
        out.map_err(StoreError::unexpected)?
    }

    /// Runs `f` in one immediate transaction on the shared writer
    /// connection, fsynced before it returns (credentials, revocations).
    pub async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_with("FULL", f).await
    }

    /// Like [`Db::write`] for data derived from the log (read models and
    /// consumer positions): committed without waiting for an fsync. A kill
    /// -9 loses nothing (the WAL is in the OS's hands); a power cut may
    /// drop the last transactions, never reorder them, and a position is
    /// always committed after the writes it covers, so the projector
    /// simply applies those events again.
    pub async fn write_derived<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_with("NORMAL", f).await
    }

    async fn write_with<T: Send + 'static>(
        self: &Arc<Self>,
        synchronous: &'static str,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db
                .writer
                .lock()
                .map_err(|_| StoreError::unexpected_msg("writer connection poisoned"))?;
            let done = db.exclusive(|| {
                conn.pragma_update(None, "synchronous", synchronous)
                    .map_err(map_err)?;
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .map_err(map_err)?;
                let out = f(&tx).map_err(map_err)?;
                tx.commit().map_err(map_err)?;
                Ok(out)
            });
            // A std mutex is not fair: yield so a writer waiting for this
            // connection (a registration behind the projector's
            // back-to-back catch-up batches) gets it next.
            drop(conn);
            std::thread::yield_now();
            done
        })
        .await
        .map_err(StoreError::unexpected)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_statement_with_a_bound_limit_is_not_prepared_again_per_run() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_conn(&dir.path().join("t.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE t (x INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3);",
        )
        .unwrap();
        let sql = "SELECT x FROM t WHERE x > ?1 ORDER BY x LIMIT ?2";
        for (after, limit) in [(0, 1), (1, 2), (0, 3)] {
            let mut st = conn.prepare_cached(sql).unwrap();
            let rows: Vec<i64> = st
                .query_map([after, limit], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(rows.len() as i64, limit.min(3 - after));
        }
        let st = conn.prepare_cached(sql).unwrap();
        assert_eq!(
            st.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "binding a new LIMIT must not expire the plan"
        );
    }

    /// Frames in the WAL now, read from the wal-index header in the `-shm`
    /// file (`mxFrame`, a native-endian u32 at byte 16), since asking
    /// SQLite (`PRAGMA wal_checkpoint`) would checkpoint as it answers.
    fn wal_frames(db: &Path) -> i64 {
        let mut shm = db.as_os_str().to_owned();
        shm.push("-shm");
        let mut header = [0u8; 20];
        std::io::Read::read_exact(&mut std::fs::File::open(shm).unwrap(), &mut header).unwrap();
        i64::from(u32::from_ne_bytes(header[16..20].try_into().unwrap()))
    }

    #[test]
    fn the_wal_starts_over_under_a_steady_stream_of_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        let db = Db::open_log(&path).unwrap();
        let writer = open_conn(&path).unwrap();
        // Fast commits (no fsync): the stream, not the disk, is under test.
        writer.pragma_update(None, "synchronous", "OFF").unwrap();
        // One row rewritten again and again: every commit adds WAL frames
        // while the file itself stays small.
        writer
            .execute(
                "INSERT INTO events (key, payload) VALUES ('k', ?1)",
                [&vec![0u8; 4000]],
            )
            .unwrap();
        let (mut last, mut most, mut restarts, mut commits) = (0i64, 0i64, 0u32, 0u64);
        // Without the RESTART pass the WAL only grows: the PASSIVE passes
        // never find it fully copied with no commit in between. The stream
        // goes on, with no pause for a checkpoint to catch up, until the
        // WAL has started over three times or has grown far past what a
        // checkpoint round lets it reach on any machine.
        while restarts < 3 && last < 64 * RESTART_AT_FRAMES {
            commits += 1;
            let page = vec![(commits % 251) as u8; 4000];
            db.exclusive(|| {
                writer
                    .execute("UPDATE events SET payload = ?1", [&page])
                    .unwrap()
            });
            let now = wal_frames(&path);
            if now < last {
                restarts += 1;
            }
            (last, most) = (now, most.max(now));
        }
        assert!(
            restarts >= 3,
            "{restarts} restarts in {commits} commits; the WAL reached {most} frames"
        );
    }
}

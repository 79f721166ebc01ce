//! The event log: an append-only table, group-committed by one thread, read
//! by offset.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use parley_domain::{
    ports::{Appended, EventAppender, EventLog, LogConsumer, PendingEvent, StartFrom},
    Event, LogId, LogPosition, RecordedEvent, Stamp, StoreError, Watermark,
};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    db::{map_err, open_conn, Db},
    recent::Recent,
};

/// Most appends one transaction takes. Larger batches amortise the fsync
/// further but hold every caller in the batch for longer.
const MAX_BATCH: usize = 2048;
/// How often a consumer re-reads the head when no in-process writer woke
/// it: the log may be written by another process sharing the file.
const EXTERNAL_POLL: Duration = Duration::from_millis(200);

struct Job {
    pending: PendingEvent,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

/// Appends through one writer thread that commits everything queued since
/// its last commit in one transaction.
pub struct SqliteAppender {
    jobs: mpsc::Sender<Job>,
    alive: Arc<AtomicBool>,
}

impl SqliteAppender {
    pub(crate) fn start(
        db: Arc<Db>,
        head: watch::Sender<i64>,
        recent: Arc<Recent>,
    ) -> Result<Self, StoreError> {
        let conn = open_conn(db.path()).map_err(map_err)?;
        let (tx, rx) = mpsc::channel(MAX_BATCH * 8);
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        std::thread::Builder::new()
            .name("parley-log-writer".into())
            .spawn(move || {
                writer_loop(&db, conn, rx, head, &recent);
                flag.store(false, Ordering::SeqCst);
            })
            .map_err(StoreError::unexpected)?;
        Ok(Self { jobs: tx, alive })
    }

    pub(crate) fn check_alive(&self) -> Result<(), StoreError> {
        if self.alive.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(StoreError::unavailable_msg("log writer stopped"))
        }
    }
}

#[async_trait]
impl EventAppender for SqliteAppender {
    async fn append(&self, pending: PendingEvent) -> Result<Appended, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job { pending, reply })
            .await
            .map_err(|_| StoreError::unavailable_msg("log writer stopped"))?;
        rx.await
            .map_err(|_| StoreError::unavailable_msg("log writer stopped"))?
    }
}

fn writer_loop(
    db: &Db,
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    head: watch::Sender<i64>,
    recent: &Recent,
) {
    let mut events = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            events.push(job.pending);
            replies.push(job.reply);
            if events.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let started = Instant::now();
        let size = events.len();
        let committed = db.exclusive(|| commit_batch(&mut conn, events.drain(..)));
        match committed {
            Ok((results, last)) => {
                // Into memory before the wake-up, so a woken consumer finds them.
                recent.committed(results.iter().filter_map(|r| match r {
                    Appended::New(e) => Some(e),
                    Appended::Duplicate(_) => None,
                }));
                head.send_if_modified(|h| {
                    let moved = last > *h;
                    *h = (*h).max(last);
                    moved
                });
                for (reply, result) in replies.drain(..).zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(e) => {
                // Every caller in the batch hears the same error; whatever
                // SQLite said, the append did not happen, so they may retry.
                let e = match map_err(e) {
                    StoreError::Unavailable(c)
                    | StoreError::Unexpected(c)
                    | StoreError::Conflict(c) => StoreError::Unavailable(c),
                };
                tracing::error!(error = %e.chain(), batch = size, "log append failed");
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
        metrics::histogram!("parley_log_append_batch_size").record(size as f64);
        metrics::histogram!("parley_log_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("parley_log_appends_total").increment(size as u64);
    }
}

/// One transaction for the whole batch. Builds each event with the stamp it
/// gets here, so ids follow commit order.
fn commit_batch(
    conn: &mut Connection,
    batch: impl ExactSizeIterator<Item = PendingEvent>,
) -> rusqlite::Result<(Vec<Appended>, i64)> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(batch.len());
    let mut last = 0;
    {
        let mut find_dup = tx.prepare_cached(r#"SELECT d."offset", e.payload FROM dedup d JOIN events e ON e."offset" = d."offset" WHERE d.key = ?1"#)?;
        let mut insert = tx.prepare_cached("INSERT INTO events (key, payload) VALUES (?1, ?2)")?;
        let mut insert_dup =
            tx.prepare_cached(r#"INSERT INTO dedup (key, "offset") VALUES (?1, ?2)"#)?;
        for pending in batch {
            let dedup = pending.dedup;
            if let Some(key) = &dedup {
                let found = find_dup
                    .query_row([key], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                    })
                    .optional()?;
                if let Some((offset, payload)) = found {
                    if let Some(e) = decode(offset, &payload) {
                        results.push(Appended::Duplicate(e));
                        continue;
                    }
                }
            }
            let stamp = Stamp::now();
            let event = (pending.build)(stamp);
            let payload = event
                .encode(stamp)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            insert.execute(params![event.partition_key(), payload])?;
            let offset = tx.last_insert_rowid();
            if let Some(key) = &dedup {
                insert_dup.execute(params![key, offset])?;
            }
            last = offset;
            results.push(Appended::New(RecordedEvent {
                position: LogPosition {
                    partition: 0,
                    offset,
                },
                id: stamp.id,
                at: stamp.at,
                event,
            }));
        }
    }
    tx.commit()?;
    Ok((results, last))
}

pub(crate) fn decode(offset: i64, payload: &[u8]) -> Option<RecordedEvent> {
    match Event::decode(payload) {
        Ok(Some((stamp, event))) => Some(RecordedEvent {
            position: LogPosition {
                partition: 0,
                offset,
            },
            id: stamp.id,
            at: stamp.at,
            event,
        }),
        Ok(None) => {
            tracing::warn!(offset, "skipping event of unknown type or version");
            None
        }
        Err(e) => {
            tracing::warn!(offset, error = %e, "skipping malformed event");
            None
        }
    }
}

/// Opens consumers over the events table.
pub struct SqliteLog {
    /// `log.db`: the events.
    log: Arc<Db>,
    /// `parley.db`: consumer positions, beside the read models they cover.
    db: Arc<Db>,
    head: watch::Receiver<i64>,
    /// What this process committed last: a consumer that stands within it
    /// reads no file.
    pub(crate) recent: Arc<Recent>,
    id: LogId,
}

impl SqliteLog {
    pub(crate) fn new(
        log: Arc<Db>,
        db: Arc<Db>,
        head: watch::Receiver<i64>,
        recent: Arc<Recent>,
        id: LogId,
    ) -> Self {
        Self {
            log,
            db,
            head,
            recent,
            id,
        }
    }

    async fn committed_offset(&self, group: &str) -> Result<i64, StoreError> {
        let group = group.to_owned();
        self.db
            .read(move |c| {
                c.query_row(
                    r#"SELECT "offset" FROM consumer_positions WHERE grp = ?1"#,
                    [group],
                    |r| r.get(0),
                )
                .optional()
                .map(|o| o.unwrap_or(0))
            })
            .await
    }
}

#[async_trait]
impl EventLog for SqliteLog {
    async fn subscribe(
        &self,
        group: &str,
        start: StartFrom,
    ) -> Result<Box<dyn LogConsumer>, StoreError> {
        let after = match start {
            StartFrom::Committed => self.committed_offset(group).await?,
            StartFrom::After(w) => w
                .partitions()
                .find(|p| p.partition == 0)
                .map_or(0, |p| p.offset),
        };
        Ok(Box::new(SqliteConsumer {
            group: group.to_owned(),
            after,
            log: self.log.clone(),
            db: self.db.clone(),
            head: self.head.clone(),
            recent: self.recent.clone(),
            file_read_at: None,
        }))
    }

    async fn reset_group(&self, group: &str) -> Result<(), StoreError> {
        let group = group.to_owned();
        self.db
            .write_derived(move |tx| {
                tx.execute("DELETE FROM consumer_positions WHERE grp = ?1", [group])
                    .map(drop)
            })
            .await
    }

    async fn committed(&self, group: &str) -> Result<Watermark, StoreError> {
        Ok(single_partition(self.committed_offset(group).await?))
    }

    async fn latest(&self) -> Result<Watermark, StoreError> {
        Ok(single_partition(self.log.read(head_offset).await?))
    }

    fn identity(&self) -> LogId {
        self.id
    }
}

/// The offset of the last event, 0 for an empty log.
pub(crate) fn head_offset(c: &Connection) -> rusqlite::Result<i64> {
    c.query_row(
        r#"SELECT COALESCE(MAX("offset"), 0) FROM events"#,
        [],
        |r| r.get(0),
    )
}

/// The watermark of the one partition at `offset` (0: nothing yet).
fn single_partition(offset: i64) -> Watermark {
    let mut w = Watermark::default();
    if offset > 0 {
        w.advance(LogPosition {
            partition: 0,
            offset,
        });
    }
    w
}

struct SqliteConsumer {
    group: String,
    /// Highest offset already returned.
    after: i64,
    log: Arc<Db>,
    db: Arc<Db>,
    head: watch::Receiver<i64>,
    recent: Arc<Recent>,
    /// When this consumer last read the file (`None`: not yet).
    file_read_at: Option<tokio::time::Instant>,
}

#[async_trait]
impl LogConsumer for SqliteConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<RecordedEvent>, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            self.head.borrow_and_update();
            let held = self.recent.after(self.after, max);
            let covered = held.is_some();
            if let Some(events) = held.filter(|v| !v.is_empty()) {
                self.after = events.last().map_or(self.after, |e| e.position.offset);
                metrics::counter!("parley_log_reads_total", "from" => "memory").increment(1);
                return Ok(events);
            }
            // When this process has committed nothing newer, the file can
            // only hold another process's appends: those are looked for
            // every EXTERNAL_POLL, not on every wake-up.
            let now = tokio::time::Instant::now();
            let file_due = match self.file_read_at {
                Some(at) if covered => at + EXTERNAL_POLL,
                _ => now,
            };
            if now >= file_due {
                self.file_read_at = Some(now);
                let after = self.after;
                let rows = self
                    .log
                    .read(move |c| {
                        let mut st = c.prepare_cached(r#"SELECT "offset", payload FROM events WHERE "offset" > ?1 ORDER BY "offset" LIMIT ?2"#)?;
                        let rows = st.query_map(params![after, max as i64], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
                        rows.collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .await?;
                if let Some((last, _)) = rows.last() {
                    self.after = *last;
                    metrics::counter!("parley_log_reads_total", "from" => "file").increment(1);
                    return Ok(rows.iter().filter_map(|(o, p)| decode(*o, p)).collect());
                }
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            // Woken at once by an in-process commit; otherwise when the
            // file is due another look.
            let wake = self
                .file_read_at
                .map_or(deadline, |at| deadline.min(at + EXTERNAL_POLL));
            let nap = wake.saturating_duration_since(now);
            if let Ok(Err(_)) = tokio::time::timeout(nap, self.head.changed()).await {
                // The writer thread is gone: nothing will wake this
                // consumer, so it must not spin.
                tokio::time::sleep(nap).await;
            }
        }
    }

    async fn commit(&mut self, through: &Watermark) -> Result<(), StoreError> {
        let Some(pos) = through.partitions().next() else {
            return Ok(());
        };
        let (group, offset) = (self.group.clone(), pos.offset);
        self.db
            .write_derived(move |tx| {
                tx.execute(
                    r#"INSERT INTO consumer_positions (grp, "offset") VALUES (?1, ?2)
                       ON CONFLICT (grp) DO UPDATE SET "offset" = MAX("offset", excluded."offset")"#,
                    params![group, offset],
                )
                .map(drop)
            })
            .await
    }
}

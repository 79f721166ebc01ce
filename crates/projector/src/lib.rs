//! projector: tails the log and writes the read models, committing its
//! position only after the writes it covers succeeded (at-least-once
//! consumption, idempotent writes: effectively once).
//!
//! What each event does to the read models is decided here, once, in
//! [`changes`]; the stores only apply those changes. [`model`] applies them
//! in memory, as the reference the stores are tested against.

pub mod changes;
pub mod model;
pub mod scenario;

use std::{borrow::Cow, sync::Arc, time::Duration};

use parley_domain::{
    ports::{EventLog, LogConsumer, ReadModelWriter, StartFrom, PROJECTOR_GROUP},
    recent::{self, RecentIds},
    retry::Backoff,
    RecordedEvent, StoreError, Timestamp, Watermark,
};
use tokio_util::sync::CancellationToken;

/// Events per read-model transaction.
pub const BATCH: usize = 4000;
const POLL_WAIT: Duration = Duration::from_millis(500);
/// A batch smaller than [`LINGER_BELOW`] waits this long for company. Each
/// read-model transaction rewrites every page it touches, so a trickle of
/// one-event transactions wrote ~30 KiB of WAL per message on SQLite and
/// a checkpoint's worth of I/O that stalled the log's fsyncs; waiting a few
/// milliseconds turns that trickle into batches. Pushes do not wait for
/// the projector, only history and inbox reads do.
const LINGER: Duration = Duration::from_millis(20);
const LINGER_BELOW: usize = 256;

#[derive(Clone)]
pub struct Projector {
    pub log: Arc<dyn EventLog>,
    pub writer: Arc<dyn ReadModelWriter>,
}

/// Drops the copies a retried send may leave in the log (same event id),
/// remembering an id only once its batch is applied, so a batch retried
/// after a failure is applied whole.
struct Copies(RecentIds);

impl Copies {
    fn new() -> Self {
        Self(RecentIds::new(recent::DEFAULT_CAPACITY))
    }

    fn fresh<'a>(&self, batch: &'a [RecordedEvent]) -> Cow<'a, [RecordedEvent]> {
        let fresh = self.0.fresh(batch);
        let copies = batch.len() - fresh.len();
        if copies == 0 {
            return Cow::Borrowed(batch);
        }
        metrics::counter!("parley_projector_copies_skipped_total").increment(copies as u64);
        Cow::Owned(fresh.into_iter().cloned().collect())
    }

    fn applied(&mut self, events: &[RecordedEvent]) {
        self.0.remember(events);
    }
}

impl Projector {
    /// Projects until `shutdown`, surviving any outage of the log or the
    /// store: a failed batch is retried with backoff, never skipped.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut backoff = Backoff::default();
        while !shutdown.is_cancelled() {
            let consumer = tokio::select! {
                c = self.log.subscribe(PROJECTOR_GROUP, StartFrom::Committed) => c,
                _ = shutdown.cancelled() => return,
            };
            match consumer {
                Ok(c) => {
                    backoff.reset();
                    if let Err(e) = self.consume(c, &shutdown).await {
                        tracing::warn!(error = %e.chain(), "projector lost its log; resubscribing");
                    }
                }
                Err(e) => tracing::warn!(error = %e.chain(), "projector cannot subscribe yet"),
            }
            let nap = backoff.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn consume(
        &self,
        mut consumer: Box<dyn LogConsumer>,
        shutdown: &CancellationToken,
    ) -> Result<(), StoreError> {
        let mut copies = Copies::new();
        loop {
            let mut batch = tokio::select! {
                b = consumer.poll(BATCH, POLL_WAIT) => b?,
                _ = shutdown.cancelled() => return Ok(()),
            };
            if batch.is_empty() {
                continue;
            }
            if batch.len() < LINGER_BELOW {
                tokio::select! {
                    _ = tokio::time::sleep(LINGER) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
                batch.extend(consumer.poll(BATCH - batch.len(), Duration::ZERO).await?);
            }
            let fresh = copies.fresh(&batch);
            if !self.apply_until_done(&fresh, shutdown).await {
                return Ok(());
            }
            copies.applied(&fresh);
            consumer.commit(&watermark_of(&batch)).await?;
        }
    }

    /// Applies `batch`, retrying with backoff while the store is down.
    /// `false` if shutdown came first (nothing was committed, so the batch
    /// is projected again after restart).
    async fn apply_until_done(
        &self,
        batch: &[RecordedEvent],
        shutdown: &CancellationToken,
    ) -> bool {
        let mut backoff = Backoff::default();
        loop {
            let started = std::time::Instant::now();
            match self.writer.apply(batch).await {
                Ok(()) => {
                    record(batch, started);
                    return true;
                }
                Err(e) => {
                    metrics::counter!("parley_projector_failures_total").increment(1);
                    tracing::warn!(error = %e.chain(), events = batch.len(), "projection failed; retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = shutdown.cancelled() => return false,
            }
        }
    }

    /// Drops the read models and projects the whole log again, up to the
    /// end it had when the replay started, returning the number of events
    /// projected. Run it with no projector on the same read models.
    pub async fn replay(&self) -> Result<u64, StoreError> {
        self.writer.reset().await?;
        self.log.reset_group(PROJECTOR_GROUP).await?;
        let end = self.log.latest().await?;
        let mut consumer = self
            .log
            .subscribe(PROJECTOR_GROUP, StartFrom::Committed)
            .await?;
        let (mut total, mut done) = (0u64, Watermark::default());
        let mut copies = Copies::new();
        // An empty poll is not the end: a Kafka consumer may still be
        // joining its group. The end is the log's head at the start.
        while !done.covers_all(&end) {
            let batch = consumer.poll(BATCH, POLL_WAIT).await?;
            if batch.is_empty() {
                continue;
            }
            let started = std::time::Instant::now();
            let fresh = copies.fresh(&batch);
            self.writer.apply(&fresh).await?;
            copies.applied(&fresh);
            record(&batch, started);
            let w = watermark_of(&batch);
            consumer.commit(&w).await?;
            for p in w.partitions() {
                done.advance(p);
            }
            total += batch.len() as u64;
        }
        Ok(total)
    }
}

fn watermark_of(batch: &[RecordedEvent]) -> Watermark {
    let mut w = Watermark::default();
    for e in batch {
        w.advance(e.position);
    }
    w
}

fn record(batch: &[RecordedEvent], started: std::time::Instant) {
    metrics::counter!("parley_projector_events_total").increment(batch.len() as u64);
    metrics::histogram!("parley_projector_batch_seconds").record(started.elapsed().as_secs_f64());
    if let Some(last) = batch.last() {
        let lag_ms = (Timestamp::now().millis() - last.at.millis()).max(0);
        metrics::histogram!("parley_projector_lag_seconds").record(lag_ms as f64 / 1000.0);
        metrics::gauge!("parley_projector_offset", "partition" => last.position.partition.to_string())
            .set(last.position.offset as f64);
    }
}

#[cfg(test)]
mod tests {
    use parley_domain::{
        events::MessageSent, ConversationId, Event, EventId, LogPosition, MessageBody, MessageId,
        Timestamp, UserId,
    };

    use super::*;

    fn event(id: EventId, offset: i64) -> RecordedEvent {
        RecordedEvent {
            position: LogPosition {
                partition: 0,
                offset,
            },
            id,
            at: Timestamp::now(),
            event: Event::MessageSent(MessageSent {
                message_id: MessageId::new(),
                conversation_id: ConversationId::between(UserId::new(), UserId::new()),
                from: UserId::new(),
                to: UserId::new(),
                body: MessageBody::from_trusted("x".into()),
                client_id: None,
                sent_at: Timestamp::now(),
            }),
        }
    }

    /// A copy in the same batch or after an applied one is dropped; a
    /// batch that was never applied is offered whole again.
    #[test]
    fn copies_are_dropped_only_once_their_original_is_applied() {
        let (a, b) = (EventId::new(), EventId::new());
        let mut copies = Copies::new();
        let first = [event(a, 0), event(a, 1), event(b, 2)];
        let offsets = |v: &[RecordedEvent]| v.iter().map(|e| e.position.offset).collect::<Vec<_>>();
        assert_eq!(offsets(&copies.fresh(&first)), vec![0, 2]);
        assert_eq!(
            offsets(&copies.fresh(&first)),
            vec![0, 2],
            "not applied: offered again"
        );
        let fresh = copies.fresh(&first).into_owned();
        copies.applied(&fresh);
        assert!(copies.fresh(&[event(a, 3), event(b, 4)]).is_empty());
    }
}

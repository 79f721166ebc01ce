//! Appends: stamp, produce, await the delivery report. Keyed events are
//! claimed first by [`parley_domain::dedup::ClaimedAppender`] around this.

use std::sync::Mutex;

use async_trait::async_trait;
use parley_domain::{
    ports::{Appended, EncodedAppender, EventAppender, PendingEvent},
    Event, LogPosition, RecordedEvent, Stamp, StoreError,
};
use rdkafka::producer::{DeliveryFuture, FutureRecord};

use crate::{kafka_error, Kafka};

pub struct KafkaAppender {
    kafka: Kafka,
    /// Held while an event is stamped and handed to the producer queue, so
    /// that this process's events reach each partition in stamp order: a
    /// conversation's history, ordered by message id, then shows the order
    /// its messages were accepted in.
    order: Mutex<()>,
}

impl KafkaAppender {
    pub(crate) fn new(kafka: Kafka) -> Self {
        Self {
            kafka,
            order: Mutex::new(()),
        }
    }

    /// Queues one record; the future resolves with the delivery report.
    fn enqueue(&self, key: &str, payload: &[u8]) -> Result<DeliveryFuture, StoreError> {
        let record = FutureRecord::to(&self.kafka.config.topic)
            .key(key)
            .payload(payload);
        self.kafka
            .producer
            .send_result(record)
            .map_err(|(e, _)| kafka_error(e))
    }

    async fn delivered(&self, pending: DeliveryFuture) -> Result<LogPosition, StoreError> {
        let started = std::time::Instant::now();
        let outcome = pending
            .await
            .map_err(|_| StoreError::unavailable_msg("producer dropped the record"))?;
        // Same name as the embedded log's: time until an append is durable.
        metrics::histogram!("parley_log_commit_seconds").record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(d) => Ok(LogPosition {
                partition: d.partition.max(0) as u32,
                offset: d.offset,
            }),
            Err((e, _)) => {
                metrics::counter!("parley_kafka_produce_failures_total").increment(1);
                Err(kafka_error(e))
            }
        }
    }

    /// Stamps, encodes and queues under the order lock.
    fn stamp_and_enqueue(
        &self,
        build: Box<dyn FnOnce(Stamp) -> Event + Send>,
    ) -> Result<(Stamp, Event, DeliveryFuture), StoreError> {
        let _order = self
            .order
            .lock()
            .map_err(|_| StoreError::unexpected_msg("append order lock poisoned"))?;
        let stamp = Stamp::now();
        let event = build(stamp);
        let payload = event.encode(stamp).map_err(StoreError::unexpected)?;
        let pending = self.enqueue(&event.partition_key(), &payload)?;
        Ok((stamp, event, pending))
    }
}

#[async_trait]
impl EventAppender for KafkaAppender {
    #[tracing::instrument(name = "kafka.append", skip_all)]
    async fn append(&self, pending: PendingEvent) -> Result<Appended, StoreError> {
        // Kafka cannot check a key in the append itself: a keyed event
        // appended here would silently lose its de-duplication.
        if pending.dedup.is_some() {
            return Err(StoreError::unexpected_msg(
                "a keyed event needs a ClaimedAppender around the Kafka appender",
            ));
        }
        metrics::counter!("parley_log_appends_total").increment(1);
        let (stamp, event, delivery) = self.stamp_and_enqueue(pending.build)?;
        let position = self.delivered(delivery).await?;
        Ok(Appended::New(RecordedEvent::stamped(
            position, stamp, event,
        )))
    }
}

#[async_trait]
impl EncodedAppender for KafkaAppender {
    #[tracing::instrument(name = "kafka.append", skip_all)]
    async fn append_encoded(
        &self,
        partition_key: &str,
        payload: &[u8],
    ) -> Result<LogPosition, StoreError> {
        self.delivered(self.enqueue(partition_key, payload)?).await
    }
}

//! Reading the topic: group consumers for the projector, direct assignment
//! for ws-push, and the offset questions ws-push and replay ask.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use parley_domain::{
    ports::{EventLog, LogConsumer, StartFrom},
    Event, LogId, LogPosition, RecordedEvent, StoreError, Watermark,
};
use rdkafka::{
    admin::AdminOptions,
    consumer::{CommitMode, Consumer},
    error::RDKafkaErrorCode,
    message::Message as _,
    Offset, TopicPartitionList,
};

use crate::{
    client::{client_config, create, Admin, Reader, Stream},
    kafka_error, Kafka, REQUEST_TIMEOUT,
};

/// How long a committed position read for ws-push stays fresh: a burst of
/// resuming sockets shares one offset request instead of sending one each.
const COMMITTED_FRESH: Duration = Duration::from_millis(10);

#[derive(Clone)]
pub struct KafkaLog {
    kafka: Kafka,
    /// One offset reader per group (a consumer that never joins the group
    /// and only asks for its committed offsets).
    readers: Arc<Mutex<HashMap<String, Arc<Reader>>>>,
    /// Last committed position read per group, for [`COMMITTED_FRESH`].
    committed: Arc<tokio::sync::Mutex<HashMap<String, (Instant, Watermark)>>>,
}

impl KafkaLog {
    pub(crate) fn new(kafka: Kafka) -> Self {
        Self {
            kafka,
            readers: Arc::default(),
            committed: Arc::default(),
        }
    }

    fn group_id(&self, group: &str) -> String {
        format!("{}.{group}", self.kafka.config.group_prefix)
    }

    fn all_partitions(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.kafka.partitions {
            tpl.add_partition(&self.kafka.config.topic, p);
        }
        tpl
    }

    fn offset_reader(&self, group: &str) -> Result<Arc<Reader>, StoreError> {
        let mut readers = self
            .readers
            .lock()
            .map_err(|_| StoreError::unexpected_msg("offset readers poisoned"))?;
        if let Some(r) = readers.get(group) {
            return Ok(r.clone());
        }
        let mut config = client_config(&self.kafka.config);
        config
            .set("group.id", self.group_id(group))
            .set("enable.auto.commit", "false");
        let reader: Reader = create(config, &self.kafka.config, &self.kafka.last_error)?;
        let reader = Arc::new(reader);
        readers.insert(group.to_owned(), reader.clone());
        Ok(reader)
    }

    async fn read_committed(&self, group: &str) -> Result<Watermark, StoreError> {
        let reader = self.offset_reader(group)?;
        let tpl = self.all_partitions();
        let got =
            tokio::task::spawn_blocking(move || reader.committed_offsets(tpl, REQUEST_TIMEOUT))
                .await
                .map_err(StoreError::unexpected)?
                .map_err(kafka_error)?;
        let mut w = Watermark::default();
        for e in got.elements() {
            // Kafka commits "the next offset to read"; a watermark holds the
            // last one handled.
            if let Offset::Offset(next) = e.offset() {
                if next > 0 {
                    w.advance(LogPosition {
                        partition: e.partition().max(0) as u32,
                        offset: next - 1,
                    });
                }
            }
        }
        Ok(w)
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn subscribe(
        &self,
        group: &str,
        start: StartFrom,
    ) -> Result<Box<dyn LogConsumer>, StoreError> {
        let mut config = client_config(&self.kafka.config);
        config
            .set("group.id", self.group_id(group))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("fetch.wait.max.ms", "100")
            .set("partition.assignment.strategy", "cooperative-sticky");
        let consumer: Stream = create(config, &self.kafka.config, &self.kafka.last_error)?;
        let topic = self.kafka.config.topic.clone();
        match start {
            StartFrom::Committed => consumer.subscribe(&[&topic]).map_err(kafka_error)?,
            StartFrom::After(w) => {
                let mut tpl = TopicPartitionList::new();
                for p in 0..self.kafka.partitions {
                    let next = w
                        .partitions()
                        .find(|pos| pos.partition == p as u32)
                        .map_or(Offset::Beginning, |pos| Offset::Offset(pos.offset + 1));
                    tpl.add_partition_offset(&topic, p, next)
                        .map_err(kafka_error)?;
                }
                consumer.assign(&tpl).map_err(kafka_error)?;
            }
        }
        Ok(Box::new(KafkaConsumer {
            consumer: Arc::new(consumer),
            topic,
        }))
    }

    async fn reset_group(&self, group: &str) -> Result<(), StoreError> {
        let admin: Admin = create(
            client_config(&self.kafka.config),
            &self.kafka.config,
            &self.kafka.last_error,
        )?;
        let options = AdminOptions::new()
            .operation_timeout(Some(REQUEST_TIMEOUT))
            .request_timeout(Some(REQUEST_TIMEOUT * 2));
        let id = self.group_id(group);
        let results = admin
            .delete_groups(&[&id], &options)
            .await
            .map_err(kafka_error)?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
                Err((_, RDKafkaErrorCode::NonEmptyGroup)) => {
                    return Err(StoreError::conflict_msg(format!(
                        "consumer group {id} is in use: stop its projector first"
                    )))
                }
                Err((g, code)) => {
                    return Err(
                        StoreError::unavailable(code).context(format!("cannot reset group {g}"))
                    )
                }
            }
        }
        self.committed.lock().await.remove(group);
        Ok(())
    }

    async fn committed(&self, group: &str) -> Result<Watermark, StoreError> {
        // Holding the lock across the request makes concurrent callers wait
        // for one answer rather than each asking the broker.
        let mut cache = self.committed.lock().await;
        if let Some((at, w)) = cache.get(group) {
            if at.elapsed() < COMMITTED_FRESH {
                return Ok(w.clone());
            }
        }
        let w = self.read_committed(group).await?;
        cache.insert(group.to_owned(), (Instant::now(), w.clone()));
        Ok(w)
    }

    fn identity(&self) -> LogId {
        self.kafka.id
    }

    async fn latest(&self) -> Result<Watermark, StoreError> {
        let producer = self.kafka.producer.clone();
        let topic = self.kafka.config.topic.clone();
        let partitions = self.kafka.partitions;
        tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            let mut w = Watermark::default();
            for p in 0..partitions {
                let (_low, high) = producer
                    .client()
                    .fetch_watermarks(&topic, p, REQUEST_TIMEOUT)
                    .map_err(kafka_error)?;
                if high > 0 {
                    w.advance(LogPosition {
                        partition: p as u32,
                        offset: high - 1,
                    });
                }
            }
            Ok(w)
        })
        .await
        .map_err(StoreError::unexpected)?
    }
}

pub struct KafkaConsumer {
    consumer: Arc<Stream>,
    topic: String,
}

#[async_trait]
impl LogConsumer for KafkaConsumer {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut out = Vec::new();
        let first = match tokio::time::timeout(wait, self.consumer.recv()).await {
            Err(_) => return Ok(out),
            Ok(m) => m,
        };
        let mut next = Some(first);
        while let Some(m) = next {
            match m {
                Ok(m) => {
                    let position = LogPosition {
                        partition: m.partition().max(0) as u32,
                        offset: m.offset(),
                    };
                    if let Some(e) = decode(position, m.payload().unwrap_or_default()) {
                        out.push(e);
                    }
                }
                // librdkafka reconnects by itself; a consumer error is
                // news, not a reason to drop what we have.
                Err(e) => {
                    tracing::warn!(error = %e, "kafka consumer error");
                    break;
                }
            }
            if out.len() >= max {
                break;
            }
            next = futures_now(self.consumer.recv());
        }
        Ok(out)
    }

    async fn commit(&mut self, through: &Watermark) -> Result<(), StoreError> {
        let mut tpl = TopicPartitionList::new();
        for p in through.partitions() {
            tpl.add_partition_offset(
                &self.topic,
                p.partition as i32,
                Offset::Offset(p.offset + 1),
            )
            .map_err(kafka_error)?;
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(StoreError::unexpected)?
            .map_err(kafka_error)
    }
}

/// The next message if one is already queued, without waiting.
fn futures_now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// One record as an event; unknown types and unreadable records are
/// skipped with a warning, never a crash.
fn decode(position: LogPosition, payload: &[u8]) -> Option<RecordedEvent> {
    match Event::decode(payload) {
        Ok(Some((stamp, event))) => Some(RecordedEvent {
            position,
            id: stamp.id,
            at: stamp.at,
            event,
        }),
        Ok(None) => {
            tracing::warn!(?position, "skipping an event of unknown type or version");
            None
        }
        Err(e) => {
            tracing::warn!(?position, error = %e, "skipping an unreadable record");
            None
        }
    }
}

//! The event log on Apache Kafka: one topic keyed by conversation id, so
//! each conversation is totally ordered in one partition.
//!
//! - [`KafkaAppender`]: idempotent producer with `acks=all`; an append
//!   returns only after the delivery report, so `202` means durable.
//! - [`KafkaLog`]: consumers. A group (`StartFrom::Committed`) joins a
//!   consumer group and commits offsets only when told to, after the work
//!   they cover; `StartFrom::After` assigns every partition directly at the
//!   given offsets, which is how each ws-push instance reads everything.

mod client;
mod consumer;
mod producer;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use parley_domain::{ports::HealthCheck, LogId, StoreError};
use rdkafka::{
    admin::{AdminOptions, NewTopic, TopicReplication},
    error::{KafkaError, RDKafkaErrorCode},
    producer::Producer as _,
};

use client::{client_config, create, Admin, LastError, Producer};
pub use client::{is_secret_property, ClientProperties};
pub use consumer::{KafkaConsumer, KafkaLog};
pub use producer::KafkaAppender;

/// How long one metadata or offset request may take before the caller
/// hears "unavailable".
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    pub topic: String,
    /// Partitions of the topic when Parley creates it.
    pub partitions: i32,
    pub replication: i32,
    /// Prefix of every consumer group id, so two deployments (or a replay
    /// into a fresh keyspace) sharing a cluster keep separate positions.
    pub group_prefix: String,
    /// Longest a produce may wait for the cluster before the send fails
    /// with 503 (librdkafka's `message.timeout.ms`).
    pub produce_timeout: Duration,
    /// Security settings and the operator's librdkafka properties, applied
    /// to every client after Parley's own.
    pub properties: ClientProperties,
}

/// A connection to the cluster: the topic exists, its partition count is
/// known and the producer is up.
#[derive(Clone)]
pub struct Kafka {
    pub(crate) config: Arc<KafkaConfig>,
    pub(crate) producer: Producer,
    pub(crate) partitions: i32,
    /// The topic on this cluster, as sync tokens name it.
    pub(crate) id: LogId,
    /// Why the cluster last refused one of this connection's clients.
    pub(crate) last_error: LastError,
}

impl Kafka {
    /// Connects, creating the topic if it is missing. Fails (so the caller
    /// retries with backoff) while the cluster does not answer.
    pub async fn connect(config: KafkaConfig) -> Result<Self, StoreError> {
        let last_error = LastError::default();
        let mut producer = client_config(&config);
        producer
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set(
                "message.timeout.ms",
                config.produce_timeout.as_millis().to_string(),
            )
            .set("request.timeout.ms", "5000");
        let connected = async {
            let producer: Producer = create(producer, &config, &last_error)?;
            ensure_topic(&config, &last_error).await?;
            let partitions = visible_partition_count(&producer, &config.topic).await?;
            let id = log_id(&producer, &config.topic).await?;
            Ok::<_, StoreError>((producer, partitions, id))
        };
        let (producer, partitions, id) = connected.await.map_err(|e| last_error.explain(e))?;
        tracing::info!(
            topic = %config.topic,
            partitions,
            security = client::protocol(&config),
            "connected to Kafka"
        );
        Ok(Self {
            config: Arc::new(config),
            producer,
            partitions,
            id,
            last_error,
        })
    }

    pub fn appender(&self) -> KafkaAppender {
        KafkaAppender::new(self.clone())
    }

    pub fn log(&self) -> KafkaLog {
        KafkaLog::new(self.clone())
    }

    /// Waits for every queued produce to be acknowledged (or to fail), at
    /// most `timeout`. Called on shutdown.
    pub async fn flush(&self, timeout: Duration) {
        let producer = self.producer.clone();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
        if let Ok(Err(e)) = flushed {
            tracing::warn!(error = %e, "producer flush did not finish");
        }
    }
}

#[async_trait]
impl HealthCheck for Kafka {
    fn name(&self) -> &'static str {
        "kafka"
    }
    async fn check(&self) -> Result<(), StoreError> {
        partition_count(&self.producer, &self.config.topic)
            .await
            .map(drop)
            .map_err(|e| self.last_error.explain(e))
    }
}

async fn ensure_topic(config: &KafkaConfig, last_error: &LastError) -> Result<(), StoreError> {
    let admin: Admin = create(client_config(config), config, last_error)?;
    let topic = NewTopic::new(
        &config.topic,
        config.partitions,
        TopicReplication::Fixed(config.replication),
    )
    .set(
        "min.insync.replicas",
        if config.replication > 1 { "2" } else { "1" },
    );
    // The request timeout too: without it a cluster that refuses our
    // credentials keeps the request waiting for a broker for a minute.
    let options = AdminOptions::new()
        .operation_timeout(Some(REQUEST_TIMEOUT))
        .request_timeout(Some(REQUEST_TIMEOUT * 2));
    let results = admin
        .create_topics([&topic], &options)
        .await
        .map_err(kafka_error)?;
    for r in results {
        match r {
            Ok(_) => {
                tracing::info!(topic = %config.topic, partitions = config.partitions, "created topic")
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                return Err(
                    StoreError::unavailable(code).context(format!("cannot create topic {t}"))
                )
            }
        }
    }
    Ok(())
}

/// The partition count of a topic that may have just been created. The
/// controller answers the creation before every broker's metadata has the
/// topic, so on a Kafka that has just started the first metadata request
/// can say it is unknown; it is asked again for up to `REQUEST_TIMEOUT`.
async fn visible_partition_count(producer: &Producer, topic: &str) -> Result<i32, StoreError> {
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    loop {
        match partition_count(producer, topic).await {
            Err(e @ StoreError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e.chain(), "topic not in the metadata yet");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            counted => return counted,
        }
    }
}

/// The topic's identity: its cluster's id and its name, so a token from a
/// topic of the same name on another cluster is refused. A topic deleted
/// and made again keeps its name; its offsets start over, and ws-push
/// refuses a token past their end.
async fn log_id(producer: &Producer, topic: &str) -> Result<LogId, StoreError> {
    let producer = producer.clone();
    let cluster =
        tokio::task::spawn_blocking(move || producer.client().fetch_cluster_id(REQUEST_TIMEOUT))
            .await
            .map_err(StoreError::unexpected)?
            .ok_or_else(|| StoreError::unavailable_msg("Kafka did not say its cluster id"))?;
    Ok(LogId::named(&format!("kafka:{cluster}/{topic}")))
}

/// The topic's partition count, from a metadata request.
pub(crate) async fn partition_count(producer: &Producer, topic: &str) -> Result<i32, StoreError> {
    let producer = producer.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let md = producer
            .client()
            .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
            .map_err(kafka_error)?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| StoreError::unavailable_msg(format!("topic {topic} not in metadata")))?;
        if let Some(e) = t.error() {
            return Err(StoreError::unavailable(RDKafkaErrorCode::from(e))
                .context(format!("topic {topic}")));
        }
        match t.partitions().len() {
            0 => Err(StoreError::unavailable_msg(format!(
                "topic {topic} has no partitions"
            ))),
            n => Ok(n as i32),
        }
    })
    .await
    .map_err(StoreError::unexpected)?
}

/// Sorts a Kafka error for the HTTP layer: nearly everything a broker can
/// say is "try again later"; a few mean a bug or a misconfiguration.
pub(crate) fn kafka_error(e: KafkaError) -> StoreError {
    let code = e.rdkafka_error_code();
    match code {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidConfig
            | RDKafkaErrorCode::InvalidArgument
            | RDKafkaErrorCode::TopicAuthorizationFailed,
        ) => StoreError::unexpected(e),
        _ => StoreError::unavailable(e),
    }
}

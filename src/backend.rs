//! The two backends behind one set of ports: the embedded SQLite file, or
//! Kafka plus a CQL store.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use parley_domain::{
    cache::CachedUsers,
    dedup::ClaimedAppender,
    logouts::LogoutList,
    ports::{
        EventAppender, EventLog, HealthCheck, InboxReader, ReadModelWriter, SessionRevocations,
        SyncFeed, TimelineReader, UserStore,
    },
    StoreError,
};
use parley_log_kafka::{Kafka, KafkaConfig};
use parley_store_cql::{Cql, CqlConfig};
use parley_store_sqlite::Embedded;

use crate::cli::{Backend as Kind, BackendArgs};

/// Every port a role may ask for, on one backend.
#[derive(Clone)]
pub struct Ports {
    pub appender: Arc<dyn EventAppender>,
    pub log: Arc<dyn EventLog>,
    pub writer: Arc<dyn ReadModelWriter>,
    pub timelines: Arc<dyn TimelineReader>,
    pub sync_feed: Arc<dyn SyncFeed>,
    pub inboxes: Arc<dyn InboxReader>,
    pub users: Arc<dyn UserStore>,
    pub revocations: Arc<dyn SessionRevocations>,
    /// What `/readyz` asks.
    pub checks: Vec<Arc<dyn HealthCheck>>,
    /// Flushed on shutdown.
    kafka: Option<Kafka>,
}

impl Ports {
    pub fn embedded(e: &Embedded) -> Self {
        Self {
            appender: e.appender.clone(),
            log: e.log.clone(),
            writer: e.read_models.clone(),
            timelines: e.read_models.clone(),
            sync_feed: e.sync_feed.clone(),
            inboxes: e.read_models.clone(),
            users: Arc::new(CachedUsers::new(e.users.clone())),
            revocations: Arc::new(LogoutList::new(e.users.clone())),
            checks: vec![Arc::new(e.clone())],
            kafka: None,
        }
    }

    /// Connects to Kafka and the CQL store once; the caller retries.
    pub async fn cluster(b: &BackendArgs) -> Result<Self, ConnectError> {
        let cql = Cql::connect(&cql_config(b))
            .await
            .map_err(ConnectError::on("cql"))?;
        let kafka = Kafka::connect(kafka_config(b))
            .await
            .map_err(ConnectError::on("kafka"))?;
        let cql_arc = Arc::new(cql);
        Ok(Self {
            appender: Arc::new(ClaimedAppender::new(
                Arc::new(kafka.appender()),
                cql_arc.clone(),
            )),
            log: Arc::new(kafka.log()),
            writer: cql_arc.clone(),
            timelines: cql_arc.clone(),
            sync_feed: cql_arc.clone(),
            inboxes: cql_arc.clone(),
            users: Arc::new(CachedUsers::new(cql_arc.clone())),
            revocations: Arc::new(LogoutList::new(cql_arc.clone())),
            checks: vec![Arc::new(kafka.clone()), cql_arc],
            kafka: Some(kafka),
        })
    }

    /// Lets queued log writes finish before the process exits.
    pub async fn close(&self, timeout: Duration) {
        if let Some(k) = &self.kafka {
            k.flush(timeout).await;
        }
    }
}

/// Which dependency a role could not connect to, and why: the retry loop
/// logs it and `/readyz` shows it.
#[derive(Debug)]
pub struct ConnectError {
    /// `kafka`, `cql`, or `backend` for what the roles ask once connected.
    pub dependency: &'static str,
    pub error: StoreError,
}

impl ConnectError {
    pub fn on(dependency: &'static str) -> impl Fn(StoreError) -> Self {
        move |error| Self { dependency, error }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot connect to {}", self.dependency)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

pub fn kafka_config(b: &BackendArgs) -> KafkaConfig {
    KafkaConfig {
        brokers: b.kafka_brokers.clone(),
        topic: b.kafka_topic.clone(),
        partitions: b.kafka_partitions.max(1),
        replication: b.kafka_replication.max(1),
        group_prefix: format!("parley.{}", b.scylla_keyspace),
        produce_timeout: Duration::from_secs(5),
        properties: b.kafka_security.properties(),
    }
}

pub fn cql_config(b: &BackendArgs) -> CqlConfig {
    CqlConfig {
        nodes: b.scylla_nodes.clone(),
        keyspace: b.scylla_keyspace.clone(),
        replication_factor: b.scylla_replication,
        security: b.cql_security.security(),
        consistency: b.scylla_consistency.into(),
        serial_consistency: b.scylla_serial_consistency.into(),
    }
}

pub fn open_embedded(b: &BackendArgs) -> anyhow::Result<Embedded> {
    Embedded::open(&b.data_dir).with_context(|| {
        format!(
            "cannot open the embedded backend in {}",
            b.data_dir.display()
        )
    })
}

/// Creates or upgrades the schema (and, on the cluster, the topic); says
/// what it did.
pub async fn migrate(b: &BackendArgs) -> anyhow::Result<String> {
    match b.backend {
        Kind::Embedded => {
            let v = Embedded::migrate(&b.data_dir).context("migration failed")?;
            Ok(format!("schema at version {v} in {}", b.data_dir.display()))
        }
        Kind::Cluster => {
            let v = Cql::migrate(&cql_config(b))
                .await
                .with_context(|| format!("cannot migrate keyspace {}", b.scylla_keyspace))?;
            let kafka = Kafka::connect(kafka_config(b))
                .await
                .with_context(|| format!("cannot create topic {}", b.kafka_topic))?;
            kafka.flush(Duration::from_secs(1)).await;
            Ok(format!(
                "keyspace {} at version {v}; topic {} ready",
                b.scylla_keyspace, b.kafka_topic
            ))
        }
    }
}

//! One store of each kind, fresh per test, behind what the cases need.

use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use parley_domain::{
    dedup::ClaimedAppender,
    logouts::LogoutStore,
    ports::{
        DedupKeys, EventAppender, EventLog, InboxReader, PendingEvent, ReadModelWriter, StartFrom,
        SyncFeed, TimelineReader, UserStore,
    },
    Event, LogPosition, RecordedEvent, Stamp, Watermark,
};
use parley_log_kafka::{Kafka, KafkaConfig};
use parley_store_cql::{Cql, CqlConfig};
use parley_store_sqlite::Embedded;

pub enum Store {
    Sqlite {
        backend: Embedded,
        _dir: tempfile::TempDir,
    },
    /// The CQL store has no log of its own: events get positions here, in
    /// the one partition a case asks for.
    Cql {
        store: Arc<Cql>,
        next: AtomicI64,
        suffix: String,
    },
}

fn suffix() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    id[id.len() - 12..].to_owned()
}

impl Store {
    /// A store of each kind.
    pub async fn all() -> Vec<(&'static str, Store)> {
        vec![("sqlite", Self::sqlite()), ("cql", Self::cql().await)]
    }

    fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend = Embedded::open(dir.path()).expect("open the embedded backend");
        Store::Sqlite { backend, _dir: dir }
    }

    /// The CQL store, with a Kafka topic of its own for appends.
    pub async fn cql() -> Self {
        let suffix = suffix();
        let config = CqlConfig::new(
            std::env::var("PARLEY_SCYLLA_NODES").unwrap_or_else(|_| "127.0.0.1:9042".into()),
            format!("contract_{suffix}"),
        );
        Cql::migrate(&config)
            .await
            .expect("Cassandra must be running (infra/local/up)");
        let store = Arc::new(Cql::connect(&config).await.expect("connect"));
        Store::Cql {
            store,
            next: AtomicI64::new(1),
            suffix,
        }
    }

    /// Puts `events` in the log (the embedded one appends them; on the
    /// cluster they are given the next offsets) and returns them as
    /// recorded, in log order.
    pub async fn record(&self, events: Vec<Event>) -> Vec<RecordedEvent> {
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            out.push(match self {
                Store::Sqlite { backend, .. } => backend
                    .appender
                    .append(PendingEvent::new(None, move |_| event))
                    .await
                    .expect("append")
                    .event()
                    .clone(),
                Store::Cql { next, .. } => {
                    let stamp = Stamp::now();
                    RecordedEvent {
                        position: LogPosition {
                            partition: 0,
                            offset: next.fetch_add(1, Ordering::SeqCst),
                        },
                        id: stamp.id,
                        at: stamp.at,
                        event,
                    }
                }
            });
        }
        out
    }

    pub fn writer(&self) -> &dyn ReadModelWriter {
        match self {
            Store::Sqlite { backend, .. } => backend.read_models.as_ref(),
            Store::Cql { store, .. } => store.as_ref(),
        }
    }

    pub fn feed(&self) -> &dyn SyncFeed {
        match self {
            Store::Sqlite { backend, .. } => backend.sync_feed.as_ref(),
            Store::Cql { store, .. } => store.as_ref(),
        }
    }

    pub fn timelines(&self) -> &dyn TimelineReader {
        match self {
            Store::Sqlite { backend, .. } => backend.read_models.as_ref(),
            Store::Cql { store, .. } => store.as_ref(),
        }
    }

    pub fn inboxes(&self) -> &dyn InboxReader {
        match self {
            Store::Sqlite { backend, .. } => backend.read_models.as_ref(),
            Store::Cql { store, .. } => store.as_ref(),
        }
    }

    pub fn users(&self) -> &dyn UserStore {
        match self {
            Store::Sqlite { backend, .. } => backend.users.as_ref(),
            Store::Cql { store, .. } => store.as_ref(),
        }
    }

    /// The appender each backend sends with: the embedded log, which
    /// checks de-duplication keys in the append's transaction, or a Kafka
    /// topic of the case's own with the CQL store's keys.
    pub async fn appender(&self) -> Arc<dyn EventAppender> {
        match self {
            Store::Sqlite { backend, .. } => backend.appender.clone(),
            Store::Cql { store, .. } => {
                let keys: Arc<dyn DedupKeys> = store.clone();
                Arc::new(ClaimedAppender::new(
                    Arc::new(self.kafka().await.appender()),
                    keys,
                ))
            }
        }
    }

    /// Where the store keeps logouts.
    pub fn logouts(&self) -> Arc<dyn LogoutStore> {
        match self {
            Store::Sqlite { backend, .. } => backend.users.clone(),
            Store::Cql { store, .. } => store.clone(),
        }
    }

    /// The CQL store's de-duplication keys.
    pub fn keys(&self) -> Arc<dyn DedupKeys> {
        match self {
            Store::Cql { store, .. } => store.clone(),
            Store::Sqlite { .. } => panic!("SQLite checks keys inside its log's transaction"),
        }
    }

    /// The case's Kafka topic (the CQL store's log).
    pub async fn kafka(&self) -> Kafka {
        let Store::Cql { suffix, .. } = self else {
            panic!("the embedded backend has no Kafka");
        };
        Kafka::connect(KafkaConfig {
            brokers: std::env::var("PARLEY_KAFKA_BROKERS")
                .unwrap_or_else(|_| "127.0.0.1:9092".into()),
            topic: format!("contract-{suffix}"),
            partitions: 2,
            replication: 1,
            group_prefix: format!("contract.{suffix}"),
            produce_timeout: Duration::from_secs(5),
            properties: Default::default(),
        })
        .await
        .expect("Kafka must be running (infra/local/up)")
    }

    /// Everything in the case's Kafka topic now: read until the reader
    /// has reached the end of every partition (30 s at most).
    pub async fn logged(&self) -> Vec<RecordedEvent> {
        let log = self.kafka().await.log();
        let end = log.latest().await.expect("latest");
        let mut consumer = log
            .subscribe("reader", StartFrom::Committed)
            .await
            .expect("subscribe");
        let mut read = Watermark::default();
        let mut all = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !read.covers_all(&end) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the topic was never read to its end"
            );
            for e in consumer
                .poll(100, Duration::from_millis(500))
                .await
                .expect("poll")
            {
                read.advance(e.position);
                all.push(e);
            }
        }
        all
    }
}

//! One store of each kind, fresh per test, behind what the cases need.

use std::sync::atomic::{AtomicI64, Ordering};

use parley_domain::{
    ports::{EventAppender, PendingEvent, ReadModelWriter, SyncFeed},
    Event, LogPosition, RecordedEvent, Stamp,
};
use parley_store_cql::{Cql, CqlConfig};
use parley_store_sqlite::Embedded;

pub enum Store {
    Sqlite {
        backend: Embedded,
        _dir: tempfile::TempDir,
    },
    /// The CQL store has no log of its own: events get positions here, in
    /// the one partition a case asks for.
    Cql { store: Cql, next: AtomicI64 },
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

    async fn cql() -> Self {
        let suffix = uuid::Uuid::now_v7().simple().to_string();
        let config = CqlConfig::new(
            std::env::var("PARLEY_SCYLLA_NODES").unwrap_or_else(|_| "127.0.0.1:9042".into()),
            format!("contract_{}", &suffix[suffix.len() - 12..]),
        );
        Cql::migrate(&config)
            .await
            .expect("Cassandra must be running (infra/local/up)");
        let store = Cql::connect(&config).await.expect("connect");
        Store::Cql {
            store,
            next: AtomicI64::new(1),
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
            Store::Cql { store, .. } => store,
        }
    }

    pub fn feed(&self) -> &dyn SyncFeed {
        match self {
            Store::Sqlite { backend, .. } => backend.sync_feed.as_ref(),
            Store::Cql { store, .. } => store,
        }
    }
}

//! Read models, credentials, logouts and de-duplication keys on a CQL store:
//! ScyllaDB in production, Apache Cassandra 5 in tests (same driver, same
//! CQL). Every statement is prepared once at connect; every write is an
//! idempotent upsert with an explicit timestamp taken from the event, so a
//! replay, a retried batch or writes applied out of order converge.

mod backfill;
mod dedup;
mod projection;
mod read_models;
mod revocations;
mod schema;
mod secure;
mod statements;
mod user_rows;
mod users;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use parley_domain::{ports::HealthCheck, retry::Backoff, StoreError};
use scylla::{
    client::{
        execution_profile::ExecutionProfile, session::Session, session_builder::SessionBuilder,
    },
    errors::{DbError, ExecutionError, RequestAttemptError},
    response::query_result::QueryResult,
    serialize::row::SerializeRow,
};

use schema::Ddl;
pub use schema::{bucket_of, sync_bucket_of, BUCKET_MS, SYNC_BUCKET_OFFSETS};
pub use scylla::statement::{Consistency, SerialConsistency};
pub use secure::{CqlCredentials, CqlSecurity, CqlTls};
use statements::{Prepared, Statements};

#[derive(Clone, Debug)]
pub struct CqlConfig {
    /// Contact points, `host:port`, comma-separated.
    pub nodes: String,
    pub keyspace: String,
    /// Replication factor of the keyspace when `migrate` creates it.
    pub replication_factor: u32,
    /// TLS and credentials, for secured and managed clusters.
    pub security: CqlSecurity,
    /// Replicas that must answer a read or write. With replication 3,
    /// `LocalQuorum` lets one node die without refusing requests and makes
    /// every read see every acknowledged write.
    pub consistency: Consistency,
    /// The Paxos round of a lightweight transaction (username claims,
    /// de-duplication keys): `LocalSerial` keeps it in one datacenter.
    pub serial_consistency: SerialConsistency,
}

impl CqlConfig {
    /// Production's settings on `nodes`: a keyspace of replication 1 (tests
    /// and single nodes), quorum reads and writes, no TLS.
    pub fn new(nodes: impl Into<String>, keyspace: impl Into<String>) -> Self {
        Self {
            nodes: nodes.into(),
            keyspace: keyspace.into(),
            replication_factor: 1,
            security: CqlSecurity::default(),
            consistency: Consistency::LocalQuorum,
            serial_consistency: SerialConsistency::LocalSerial,
        }
    }
}

/// A connected session with every statement prepared. Cheap to clone.
#[derive(Clone)]
pub struct Cql {
    pub(crate) session: Arc<Session>,
    pub(crate) st: Arc<Statements>,
    pub(crate) keyspace: String,
    pub(crate) buckets: Arc<read_models::WrittenBuckets>,
}

impl Cql {
    /// Connects and prepares. Fails while no node answers, or while the
    /// keyspace has not been migrated (the message says so); callers retry
    /// with backoff.
    pub async fn connect(config: &CqlConfig) -> Result<Self, StoreError> {
        let session = open(config).await?;
        let st = Statements::prepare(&session, &config.keyspace).await?;
        tracing::info!(keyspace = %config.keyspace, "connected to the CQL store");
        Ok(Self {
            session: Arc::new(session),
            st: Arc::new(st),
            keyspace: config.keyspace.clone(),
            buckets: Arc::default(),
        })
    }

    /// Creates or upgrades the keyspace; returns the schema version.
    pub async fn migrate(config: &CqlConfig) -> Result<i32, StoreError> {
        let session = open(config).await?;
        schema_migrate(&session, config).await
    }

    /// Deletes the keyspace and everything in it. No role calls it: it is
    /// for a keyspace that was only a trial (a replay tried elsewhere, a
    /// test), as every keyspace holds a node's memory while it exists.
    pub async fn drop_keyspace(config: &CqlConfig) -> Result<(), StoreError> {
        let session = open(config).await?;
        session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", config.keyspace), ())
            .await
            .map_err(StoreError::unavailable)?;
        Ok(())
    }
}

async fn open(config: &CqlConfig) -> Result<Session, StoreError> {
    valid_keyspace(&config.keyspace)?;
    let nodes: Vec<&str> = config
        .nodes
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    let profile = ExecutionProfile::builder()
        .consistency(config.consistency)
        .serial_consistency(Some(config.serial_consistency))
        .build();
    let builder = SessionBuilder::new()
        .known_nodes(nodes)
        .default_execution_profile_handle(profile.into_handle())
        .connection_timeout(Duration::from_secs(3));
    secure::secure(builder, &config.security)?
        .build()
        .await
        .map_err(StoreError::unavailable)
}

/// Keyspace names go into statements as text: allow only what CQL allows
/// unquoted.
fn valid_keyspace(ks: &str) -> Result<(), StoreError> {
    let ok = !ks.is_empty()
        && ks.len() <= 48
        && ks.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && ks.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if ok {
        Ok(())
    } else {
        Err(StoreError::unexpected_msg(format!(
            "keyspace name {ks:?} must be letters, digits and _ (starting with a letter)"
        )))
    }
}

/// Tries per schema statement before `migrate` gives up.
const DDL_ATTEMPTS: u32 = 5;

/// Runs `op` until it succeeds, fails for a reason other than
/// [`StoreError::Unavailable`] (a bad statement will not get better), or
/// has been tried `attempts` times, pausing with `backoff` between tries.
async fn retry_unavailable<T, Fut>(
    attempts: u32,
    mut backoff: Backoff,
    mut op: impl FnMut() -> Fut,
) -> Result<T, StoreError>
where
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(StoreError::Unavailable(e)) if attempt < attempts => {
                let nap = backoff.next_delay();
                let e = StoreError::Unavailable(e);
                tracing::warn!(error = %e.chain(), attempt, retry_in = ?nap, "schema change failed; trying again");
                tokio::time::sleep(nap).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

async fn schema_migrate(session: &Session, config: &CqlConfig) -> Result<i32, StoreError> {
    let ks = &config.keyspace;
    // Every statement is idempotent (IF NOT EXISTS). A node that has just
    // started, or that is applying many schema changes at once, can time
    // out a DDL statement (or its schema agreement) that then succeeds on
    // a second try; only a lasting failure fails the migration.
    let ddl = |s: String| async move {
        retry_unavailable(
            DDL_ATTEMPTS,
            Backoff::new(Duration::from_millis(500), Duration::from_secs(4)),
            || async {
                session
                    .query_unpaged(s.as_str(), ())
                    .await
                    .map_err(execution_error)
            },
        )
        .await
        .map(drop)
    };
    ddl(format!(
        "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
         {{'class': 'NetworkTopologyStrategy', 'replication_factor': {}}}",
        config.replication_factor.max(1)
    ))
    .await?;
    ddl(format!(
        "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (version int PRIMARY KEY, applied_at bigint)"
    ))
    .await?;
    let applied: i32 = session
        .query_unpaged(format!("SELECT version FROM {ks}.schema_migrations"), ())
        .await
        .map_err(execution_error)?
        .into_rows_result()
        .map_err(StoreError::unexpected)?
        .rows::<(i32,)>()
        .map_err(StoreError::unexpected)?
        .filter_map(Result::ok)
        .map(|(v,)| v)
        .max()
        .unwrap_or(0);
    let mut version = applied;
    for (v, statements) in schema::MIGRATIONS {
        if *v <= applied {
            continue;
        }
        for step in *statements {
            match step {
                Ddl::Run(s) => ddl(s.replace("{ks}", ks)).await?,
                Ddl::AddColumn {
                    table,
                    column,
                    cql_type,
                } => {
                    if !column_exists(session, ks, table, column).await? {
                        ddl(format!("ALTER TABLE {ks}.{table} ADD {column} {cql_type}")).await?;
                    }
                }
                Ddl::CopyIntoUserRows => {
                    session
                        .await_schema_agreement()
                        .await
                        .map_err(StoreError::unavailable)?;
                    let copied = backfill::copy_into_user_rows(session, ks).await?;
                    tracing::info!(keyspace = %ks, rows = copied, "filled user_rows from the older tables");
                }
                Ddl::CopyRevokedSessions => {
                    session
                        .await_schema_agreement()
                        .await
                        .map_err(StoreError::unavailable)?;
                    let copied = backfill::copy_revoked_sessions(session, ks).await?;
                    tracing::info!(keyspace = %ks, sessions = copied, "copied logged-out sessions");
                }
            }
        }
        session
            .query_unpaged(
                format!("INSERT INTO {ks}.schema_migrations (version, applied_at) VALUES (?, ?)"),
                (*v, parley_domain::Timestamp::now().millis()),
            )
            .await
            .map_err(execution_error)?;
        tracing::info!(keyspace = %ks, version = v, "applied CQL migration");
        version = *v;
    }
    session
        .await_schema_agreement()
        .await
        .map_err(StoreError::unavailable)?;
    Ok(version)
}

async fn column_exists(
    session: &Session,
    ks: &str,
    table: &str,
    column: &str,
) -> Result<bool, StoreError> {
    let found = session
        .query_unpaged(
            "SELECT column_name FROM system_schema.columns \
             WHERE keyspace_name = ? AND table_name = ? AND column_name = ?",
            (ks, table, column),
        )
        .await
        .map_err(execution_error)?
        .into_rows_result()
        .map_err(StoreError::unexpected)?
        .rows_num();
    Ok(found > 0)
}

impl Cql {
    pub(crate) async fn run(
        &self,
        st: &Prepared,
        values: impl SerializeRow,
    ) -> Result<QueryResult, StoreError> {
        observed(st.name, self.session.execute_unpaged(&st.st, values)).await
    }
}

/// Times one request to the store under its statement's name, and counts
/// it when it fails, so `/metrics` shows which reads and writes a busy
/// store is serving, how long each takes, and how many a page or a backlog
/// costs.
pub(crate) async fn observed(
    statement: &'static str,
    request: impl std::future::Future<Output = Result<QueryResult, ExecutionError>>,
) -> Result<QueryResult, StoreError> {
    let started = std::time::Instant::now();
    let out = request.await;
    metrics::histogram!("parley_cql_request_seconds", "statement" => statement)
        .record(started.elapsed().as_secs_f64());
    out.map_err(|e| {
        metrics::counter!("parley_cql_failures_total", "statement" => statement).increment(1);
        execution_error(e)
    })
}

/// [`observed`] for one page of a paged read.
pub(crate) async fn observed_page(
    statement: &'static str,
    request: impl std::future::Future<
        Output = Result<(QueryResult, scylla::response::PagingStateResponse), ExecutionError>,
    >,
) -> Result<(QueryResult, scylla::response::PagingStateResponse), StoreError> {
    let started = std::time::Instant::now();
    let out = request.await;
    metrics::histogram!("parley_cql_request_seconds", "statement" => statement)
        .record(started.elapsed().as_secs_f64());
    out.map_err(|e| {
        metrics::counter!("parley_cql_failures_total", "statement" => statement).increment(1);
        execution_error(e)
    })
}

/// One statement execution, boxed so a batch of different statements can
/// run together.
pub(crate) type Write<'a> = futures_util::future::BoxFuture<'a, Result<QueryResult, StoreError>>;

impl Cql {
    pub(crate) fn write<'a, V: SerializeRow + Send + 'a>(
        &'a self,
        st: &'a Prepared,
        values: V,
    ) -> Write<'a> {
        Box::pin(self.run(st, values))
    }
}

#[async_trait]
impl HealthCheck for Cql {
    fn name(&self) -> &'static str {
        "cql"
    }
    async fn check(&self) -> Result<(), StoreError> {
        self.run(&self.st.health, ()).await.map(drop)
    }
}

/// Sorts driver errors: timeouts, overload and lost connections are
/// "unavailable" (503, retry); a rejected statement is a bug.
pub(crate) fn execution_error(e: ExecutionError) -> StoreError {
    match &e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::SyntaxError
            | DbError::Invalid
            | DbError::Unauthorized
            | DbError::ConfigError
            | DbError::AlreadyExists { .. }
            | DbError::ProtocolError
            | DbError::AuthenticationError,
            _,
        ))
        | ExecutionError::BadQuery(_) => StoreError::unexpected(e),
        _ => StoreError::unavailable(e),
    }
}

pub(crate) fn rows_error(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::unexpected(e)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn quick() -> Backoff {
        Backoff::new(Duration::from_millis(1), Duration::from_millis(2))
    }

    /// Fails `failures.len()` times (a timeout where `true`, a bad
    /// statement where `false`), then succeeds; returns the outcome and
    /// how many times it was tried.
    async fn run(failures: &[bool], attempts: u32) -> (Result<u32, StoreError>, u32) {
        let tries = AtomicU32::new(0);
        let out = retry_unavailable(attempts, quick(), || {
            let n = tries.fetch_add(1, Ordering::SeqCst);
            let outcome = match failures.get(n as usize) {
                Some(true) => Err(StoreError::unavailable_msg("timed out")),
                Some(false) => Err(StoreError::unexpected_msg("syntax error")),
                None => Ok(n),
            };
            async move { outcome }
        })
        .await;
        (out, tries.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_timed_out_schema_change_is_tried_again() {
        let (out, tries) = run(&[true, true], 5).await;
        assert_eq!((out.ok(), tries), (Some(2), 3));
    }

    #[tokio::test]
    async fn a_bad_statement_fails_at_once() {
        let (out, tries) = run(&[true, false], 5).await;
        assert!(matches!(out, Err(StoreError::Unexpected(_))), "{out:?}");
        assert_eq!(tries, 2);
    }

    #[tokio::test]
    async fn a_lasting_outage_gives_up_after_the_last_attempt() {
        let (out, tries) = run(&[true; 10], 3).await;
        assert!(matches!(out, Err(StoreError::Unavailable(_))), "{out:?}");
        assert_eq!(tries, 3);
    }
}

//! Flags and `PARLEY_*` environment variables. Defaults, then flags, then
//! environment (clap reads a flag's variable when the flag is absent).

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use parley_http_kit::limit::Rate;

use crate::security::{CqlSecurityArgs, KafkaSecurityArgs};

#[derive(Parser, Debug)]
#[command(
    name = "parley",
    version,
    about = "Parley: an event-sourced one-to-one chat backend"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format: human-readable text or one JSON object per line.
    #[arg(long, env = "PARLEY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run every role in one process on one listener (no setup needed), and
    /// the web chat at `/`.
    Dev(ServeArgs),
    /// Run one role.
    Serve {
        #[arg(value_enum)]
        role: Role,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// Drop the read models and rebuild them from the whole log.
    Replay(BackendArgs),
    /// Create or upgrade the schema.
    Migrate(BackendArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    CommandApi,
    Projector,
    QueryApi,
    WsPush,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// One SQLite file under --data-dir.
    Embedded,
    /// Kafka for the log, ScyllaDB for the read models.
    Cluster,
}

/// CQL consistency levels an operator may choose.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CqlConsistency {
    One,
    LocalOne,
    Quorum,
    LocalQuorum,
    EachQuorum,
    All,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CqlSerialConsistency {
    Serial,
    LocalSerial,
}

impl From<CqlConsistency> for parley_store_cql::Consistency {
    fn from(c: CqlConsistency) -> Self {
        match c {
            CqlConsistency::One => Self::One,
            CqlConsistency::LocalOne => Self::LocalOne,
            CqlConsistency::Quorum => Self::Quorum,
            CqlConsistency::LocalQuorum => Self::LocalQuorum,
            CqlConsistency::EachQuorum => Self::EachQuorum,
            CqlConsistency::All => Self::All,
        }
    }
}

impl From<CqlSerialConsistency> for parley_store_cql::SerialConsistency {
    fn from(c: CqlSerialConsistency) -> Self {
        match c {
            CqlSerialConsistency::Serial => Self::Serial,
            CqlSerialConsistency::LocalSerial => Self::LocalSerial,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct BackendArgs {
    #[arg(long, env = "PARLEY_BACKEND", value_enum, default_value_t = Backend::Embedded)]
    pub backend: Backend,
    /// Where the embedded backend keeps its database (and `parley dev` its
    /// generated JWT secret).
    #[arg(long, env = "PARLEY_DATA_DIR", default_value = "./parley-data")]
    pub data_dir: PathBuf,
    /// Kafka bootstrap servers, comma-separated (cluster backend).
    #[arg(long, env = "PARLEY_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    #[arg(long, env = "PARLEY_KAFKA_TOPIC", default_value = "parley-events")]
    pub kafka_topic: String,
    /// Partitions of the topic when Parley creates it. Conversations are
    /// spread over them; each stays ordered within its partition.
    #[arg(long, env = "PARLEY_KAFKA_PARTITIONS", default_value_t = 12)]
    pub kafka_partitions: i32,
    /// Replicas of the topic when Parley creates it (3 in production).
    #[arg(long, env = "PARLEY_KAFKA_REPLICATION", default_value_t = 1)]
    pub kafka_replication: i32,
    /// ScyllaDB (or Cassandra) contact points, comma-separated (cluster backend).
    #[arg(long, env = "PARLEY_SCYLLA_NODES", default_value = "127.0.0.1:9042")]
    pub scylla_nodes: String,
    /// Keyspace of the read models and credentials. Consumer groups are
    /// named after it, so a replay into a fresh keyspace starts from the
    /// beginning of the topic without touching the live projector.
    #[arg(long, env = "PARLEY_SCYLLA_KEYSPACE", default_value = "parley")]
    pub scylla_keyspace: String,
    /// Replication factor of the keyspace when `migrate` creates it (3 in
    /// production).
    #[arg(long, env = "PARLEY_SCYLLA_REPLICATION", default_value_t = 1)]
    pub scylla_replication: u32,
    /// Replicas that must answer each CQL read and write. The quorum
    /// default survives one dead node of three and reads what was written.
    #[arg(long, env = "PARLEY_SCYLLA_CONSISTENCY", value_enum, default_value_t = CqlConsistency::LocalQuorum)]
    pub scylla_consistency: CqlConsistency,
    /// Consistency of the Paxos round behind username claims and
    /// de-duplication keys.
    #[arg(long, env = "PARLEY_SCYLLA_SERIAL_CONSISTENCY", value_enum, default_value_t = CqlSerialConsistency::LocalSerial)]
    pub scylla_serial_consistency: CqlSerialConsistency,
    #[command(flatten)]
    pub kafka_security: KafkaSecurityArgs,
    #[command(flatten)]
    pub cql_security: CqlSecurityArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[arg(long, env = "PARLEY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// HS256 signing secret for session tokens (at least 32 bytes), the
    /// key `default`. `serve` needs it or --jwt-keys; `dev` generates one
    /// and keeps it in the data dir.
    #[arg(long, env = "PARLEY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Several keys, `kid1=secret1,kid2=secret2`: the first signs new
    /// tokens, all verify. To rotate, put a new key first and drop the old
    /// one once its tokens have expired (--jwt-ttl).
    #[arg(long, env = "PARLEY_JWT_KEYS", hide_env_values = true)]
    pub jwt_keys: Option<String>,
    /// Session lifetime in seconds.
    #[arg(long, env = "PARLEY_JWT_TTL", default_value_t = 7 * 24 * 3600)]
    pub jwt_ttl: u64,
    /// Mark the session cookie `Secure` (serve behind TLS).
    #[arg(long, env = "PARLEY_COOKIE_SECURE", default_value_t = false)]
    pub cookie_secure: bool,
    /// Longest a graceful shutdown waits for in-flight work, in seconds.
    #[arg(long, env = "PARLEY_SHUTDOWN_GRACE", default_value_t = 10)]
    pub shutdown_grace: u64,
    /// Memory each ws-push keeps of recent events, in KiB, so sockets that
    /// reconnect (a dropped connection, a restart) get their backlog
    /// without reading the store. It is filled from the log on start.
    /// Backlogs older than it are read from the store.
    #[arg(long, env = "PARLEY_SYNC_MEMORY_KIB", default_value_t = 64 * 1024)]
    pub sync_memory_kib: u64,
    /// Sockets one user may hold on one ws-push instance (one per device,
    /// and a few more for reconnects the server has not noticed yet).
    /// One more is closed with 4429.
    #[arg(long, env = "PARLEY_MAX_SOCKETS_PER_USER", default_value_t = 32)]
    pub max_sockets_per_user: usize,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Limits that keep one client from taking the server from everyone else.
/// A rate is `N/s`, `N/min` or `N/h` (bursts of up to N), or `off`.
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Threads that hash and check passwords (each hash takes ~19 MiB and
    /// a core for tens of milliseconds); 0 means half the cores.
    #[arg(long, env = "PARLEY_HASH_THREADS", default_value_t = 0)]
    pub hash_threads: usize,
    /// Password checks that may wait for a thread; beyond them a login or
    /// register is answered 503 with Retry-After at once.
    #[arg(long, env = "PARLEY_HASH_QUEUE", default_value_t = 16)]
    pub hash_queue: usize,
    /// Logins per client address.
    #[arg(long, env = "PARLEY_LOGIN_LIMIT_PER_ADDRESS", default_value = "30/min")]
    pub login_limit_per_address: Rate,
    /// Logins per username (every attempt counts, right or wrong).
    #[arg(
        long,
        env = "PARLEY_LOGIN_LIMIT_PER_USERNAME",
        default_value = "10/min"
    )]
    pub login_limit_per_username: Rate,
    /// Registrations per client address.
    #[arg(
        long,
        env = "PARLEY_REGISTER_LIMIT_PER_ADDRESS",
        default_value = "20/h"
    )]
    pub register_limit_per_address: Rate,
    /// Sends per user.
    #[arg(long, env = "PARLEY_SEND_LIMIT_PER_USER", default_value = "20/s")]
    pub send_limit_per_user: Rate,
    /// Frames a user's sockets may send (acks, pings), applied by ws-push.
    #[arg(long, env = "PARLEY_FRAME_LIMIT_PER_USER", default_value = "50/s")]
    pub frame_limit_per_user: Rate,
}

/// How the HTTP server treats slow and untrusted clients.
#[derive(Args, Debug, Clone)]
pub struct HttpArgs {
    /// Seconds a connection may take to send a request's headers, and may
    /// sit idle between requests, before it is closed.
    #[arg(long, env = "PARLEY_HEADER_READ_TIMEOUT", default_value_t = 10)]
    pub header_read_timeout: u64,
    /// Seconds a request body may take to arrive before the request is
    /// answered 408.
    #[arg(long, env = "PARLEY_BODY_READ_TIMEOUT", default_value_t = 10)]
    pub body_read_timeout: u64,
    /// Take the client's address from the last X-Forwarded-For entry, for
    /// rate limits. Only behind a proxy that sets that header.
    #[arg(long, env = "PARLEY_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,
    /// Browser origins besides the server's own (scheme://host[:port],
    /// comma-separated) whose pages may use the session cookie; CORS is
    /// answered for these and off without them.
    #[arg(long, env = "PARLEY_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
}

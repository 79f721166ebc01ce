//! The keyspace, versioned. `parley migrate` applies every migration newer
//! than the recorded version; each step is idempotent (`IF NOT EXISTS`, or
//! a column added only when missing), so a migration interrupted halfway
//! is simply applied again.

/// Bucket width of timelines: 10 days of message ids. A partition holds
/// one conversation's messages of one bucket, so none grows without bound;
/// `timeline_buckets` lists the non-empty ones so paging never probes
/// empty buckets.
pub const BUCKET_MS: i64 = 10 * 24 * 3600 * 1000;

/// Bucket width of sync feeds, in log offsets of one partition. A feed
/// partition holds one user's events among this many offsets, so even a
/// user in every conversation of a busy partition cannot grow one without
/// bound; `user_sync_buckets` lists the non-empty ones.
pub const SYNC_BUCKET_OFFSETS: i64 = 1 << 16;

/// One step of a migration.
pub enum Ddl {
    /// A statement that is idempotent by itself (`IF NOT EXISTS`).
    Run(&'static str),
    /// A column added to a table unless it is there already. The
    /// migration asks `system_schema.columns` rather than relying on
    /// `ADD IF NOT EXISTS`, which not every CQL store speaks, so a
    /// migration cut short after this step is applied again without
    /// failing.
    AddColumn {
        table: &'static str,
        column: &'static str,
        cql_type: &'static str,
    },
    /// Every session in `revoked_sessions` written into today's
    /// `revocations`, so a logout made before the upgrade still holds.
    CopyRevokedSessions,
    /// What the read-model tables of releases before `user_rows` hold,
    /// written into it (and into `read_markers.marker`).
    CopyIntoUserRows,
}

/// Each participant's copy of a conversation's read markers (read by
/// releases before sync feeds).
const USER_READ_MARKERS: &str = "CREATE TABLE IF NOT EXISTS {ks}.user_read_markers (
    user_id text, conversation_id text, reader text, up_to text, at bigint,
    PRIMARY KEY (user_id, conversation_id, reader))";

/// Logouts by the day they happened, clustered by time: each process
/// reads what is new with one slice of today's partition. Rows expire
/// with the session's token.
const REVOCATIONS: &str = "CREATE TABLE IF NOT EXISTS {ks}.revocations (
    day bigint, at bigint, session_id text, expires_at bigint,
    PRIMARY KEY (day, at, session_id))";

/// `(version, steps)`; `{ks}` is the keyspace. Migration 1 creates the
/// current schema, so a new keyspace is made in one pass of `CREATE`s
/// (schema changes are slow on Cassandra); the later ones bring a
/// keyspace made by an earlier release up to it and change nothing on a
/// new one.
pub const MIGRATIONS: &[(i32, &[Ddl])] = &[
    (
        1,
        &[
            // Credentials: written by command-api, username unique by LWT.
            Ddl::Run("CREATE TABLE IF NOT EXISTS {ks}.users_by_name (
                username text PRIMARY KEY, id text, display_name text, created_at bigint,
                password_hash text)"),
            // The public directory: written on registration and again (same
            // values) by the projector, so a replay rebuilds it.
            Ddl::Run("CREATE TABLE IF NOT EXISTS {ks}.users_by_id (
                id text PRIMARY KEY, username text, display_name text, created_at bigint)"),
            // Prefix search: one row per user under each of its 1-, 2- and
            // 3-character prefixes; a search reads one slice of one partition.
            Ddl::Run("CREATE TABLE IF NOT EXISTS {ks}.user_directory (
                prefix text, username text, id text, display_name text, created_at bigint,
                PRIMARY KEY (prefix, username))"),
            // Read by releases before `revocations`; still written by logout.
            Ddl::Run("CREATE TABLE IF NOT EXISTS {ks}.revoked_sessions (session_id text PRIMARY KEY)"),
            Ddl::Run(REVOCATIONS),
            // client_id and "one delivery per message" keys, claimed by LWT.
            Ddl::Run("CREATE TABLE IF NOT EXISTS {ks}.dedup_keys (
                key text PRIMARY KEY, payload blob, log_partition int, log_offset bigint)
                WITH default_time_to_live = 2592000"),
            Ddl::Run("CREATE TABLE IF NOT EXISTS {ks}.timeline (
                conversation_id text, bucket bigint, message_id text, sender text, recipient text,
                body text, sent_at bigint, delivered_at bigint,
                PRIMARY KEY ((conversation_id, bucket), message_id))
                WITH CLUSTERING ORDER BY (message_id DESC)"),
            Ddl::Run("CREATE TABLE IF NOT EXISTS {ks}.timeline_buckets (
                conversation_id text, bucket bigint, PRIMARY KEY (conversation_id, bucket))
                WITH CLUSTERING ORDER BY (bucket DESC)"),
            Ddl::Run("CREATE TABLE IF NOT EXISTS {ks}.message_index (message_id text PRIMARY KEY, conversation_id text)"),
            // Per-user feed with log positions and a copy of each message: the
            // backlog of a resuming socket.
            Ddl::Run("CREATE TABLE IF NOT EXISTS {ks}.user_feed (
                user_id text, bucket bigint, message_id text, conversation_id text,
                log_partition int, log_offset bigint,
                sender text, recipient text, body text, sent_at bigint, delivered_at bigint,
                PRIMARY KEY ((user_id, bucket), message_id))"),
            Ddl::Run("CREATE TABLE IF NOT EXISTS {ks}.user_feed_buckets (
                user_id text, bucket bigint, PRIMARY KEY (user_id, bucket))"),
            Ddl::Run("CREATE TABLE IF NOT EXISTS {ks}.read_markers (
                conversation_id text, reader text, up_to text, at bigint,
                PRIMARY KEY (conversation_id, reader))"),
            // Each participant's copy of the markers: what a resume reads.
            Ddl::Run(USER_READ_MARKERS),
            // last_message is one cell (JSON, id first), so concurrent or
            // replayed writes never mix fields of two messages.
            Ddl::Run("CREATE TABLE IF NOT EXISTS {ks}.inbox (
                user_id text, conversation_id text, peer_id text, last_message text,
                PRIMARY KEY (user_id, conversation_id))"),
            // One row per unread message; a read deletes the range up to its
            // marker. Counting rows is idempotent where a counter is not.
            Ddl::Run("CREATE TABLE IF NOT EXISTS {ks}.unread (
                user_id text, conversation_id text, message_id text,
                PRIMARY KEY (user_id, conversation_id, message_id))"),
        ],
    ),
    // 2: a feed row carries its message, so a resuming socket reads the
    // feed and each conversation's read markers, not every message again
    // from its timeline. Rows written before this have no body; a resume
    // reads those from the timeline as before.
    (
        2,
        &[
            Ddl::AddColumn { table: "user_feed", column: "sender", cql_type: "text" },
            Ddl::AddColumn { table: "user_feed", column: "recipient", cql_type: "text" },
            Ddl::AddColumn { table: "user_feed", column: "body", cql_type: "text" },
            Ddl::AddColumn { table: "user_feed", column: "sent_at", cql_type: "bigint" },
            Ddl::AddColumn { table: "user_feed", column: "delivered_at", cql_type: "bigint" },
        ],
    ),
    // 3: each participant's copy of a conversation's read markers, for
    // the resume of releases before sync feeds (which also filled it from
    // `read_markers`; nothing reads it now).
    (3, &[Ddl::Run(USER_READ_MARKERS)]),
    // 4: logouts by day, so a process keeps every logout in memory and
    // reads only the new ones, instead of asking per session.
    (4, &[Ddl::Run(REVOCATIONS), Ddl::CopyRevokedSessions]),
    // 5: each user's events by log position, the store's part of a sync
    // backlog. They replace `user_feed`, `user_feed_buckets` and
    // `user_read_markers`, which nothing writes any more; those stay until
    // a later release, so processes of the previous one fail no writes
    // while a rolling upgrade replaces them.
    (5, &[Ddl::Run(USER_SYNC), Ddl::Run(USER_SYNC_BUCKETS)]),
    // 6: each user's rows in one partition (`user_rows`), so the rows one
    // message writes for a user are one mutation, and read markers as one
    // cell (`marker`) whose order is theirs. `user_rows` starts out with
    // what `inbox`, `unread`, `user_sync`, `read_markers` and `timeline`
    // hold (the message lookup `message_index` gave, now per user). The old
    // tables are no longer written; they stay until a later release, so
    // processes of the previous one fail no writes during a rolling
    // upgrade. What such a process projects after the copy reaches
    // `user_rows` only through `parley replay`: stop the projector for the
    // upgrade.
    (
        6,
        &[
            Ddl::Run(USER_ROWS),
            Ddl::AddColumn {
                table: "read_markers",
                column: "marker",
                cql_type: "text",
            },
            Ddl::CopyIntoUserRows,
        ],
    ),
];

/// See `user_rows`.
const USER_ROWS: &str = "CREATE TABLE IF NOT EXISTS {ks}.user_rows (
    user_id text, kind tinyint, conversation_id text, log_partition int, log_offset bigint,
    message_id text, event blob, peer_id text, last_message text, delivered text,
    own_marker text, peer_marker text, outgoing boolean,
    PRIMARY KEY ((user_id), kind, conversation_id, log_partition, log_offset, message_id))";

/// One row per event of a user's audience (`Event::audience`), holding
/// the event as the log has it.
const USER_SYNC: &str = "CREATE TABLE IF NOT EXISTS {ks}.user_sync (
    user_id text, log_partition int, bucket bigint, log_offset bigint, event blob,
    PRIMARY KEY ((user_id, log_partition, bucket), log_offset))";

/// The non-empty buckets of each user's feed in each log partition.
const USER_SYNC_BUCKETS: &str = "CREATE TABLE IF NOT EXISTS {ks}.user_sync_buckets (
    user_id text, log_partition int, bucket bigint,
    PRIMARY KEY ((user_id, log_partition), bucket))";

/// Tables the projector writes; replay truncates them.
pub const READ_MODEL_TABLES: &[&str] = &[
    "users_by_id",
    "user_directory",
    "timeline",
    "timeline_buckets",
    "read_markers",
    "user_rows",
];

pub fn bucket_of(millis: i64) -> i64 {
    millis.div_euclid(BUCKET_MS)
}

pub fn sync_bucket_of(offset: i64) -> i64 {
    offset.div_euclid(SYNC_BUCKET_OFFSETS)
}

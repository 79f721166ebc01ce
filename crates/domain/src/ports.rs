//! Ports: the narrow traits roles ask for and backends implement. The
//! embedded backend implements them on SQLite; the cluster backend on Kafka
//! and a CQL store. Each role asks only for the traits it uses.

use async_trait::async_trait;
use std::time::Duration;

use crate::{
    auth::Session,
    conversation::ConversationId,
    events::{Event, LogPosition, RecordedEvent, Stamp, Watermark},
    ids::{MessageId, UserId},
    message::{Message, MessageRef},
    sync::LogId,
    user::{Credential, PublicUser, Username},
    StoreError,
};

/// An event waiting to be appended. The log calls `build` with the stamp
/// (id and time) it gives the event at the moment it orders it, so on the
/// embedded log ids increase in log order. On Kafka several processes stamp
/// from their own clocks, which is why sync tokens are log positions, not
/// ids.
pub struct PendingEvent {
    /// Appending twice with the same key appends once; the second call gets
    /// the first event back as [`Appended::Duplicate`].
    pub dedup: Option<String>,
    pub build: Box<dyn FnOnce(Stamp) -> Event + Send>,
}

impl PendingEvent {
    pub fn new(dedup: Option<String>, build: impl FnOnce(Stamp) -> Event + Send + 'static) -> Self {
        Self {
            dedup,
            build: Box::new(build),
        }
    }
}

pub enum Appended {
    New(RecordedEvent),
    /// The dedup key was seen before; this is the event appended then.
    Duplicate(RecordedEvent),
}

impl Appended {
    pub fn event(&self) -> &RecordedEvent {
        match self {
            Appended::New(e) | Appended::Duplicate(e) => e,
        }
    }
}

/// Appends durably: `Ok` only once the event would survive a kill -9.
#[async_trait]
pub trait EventAppender: Send + Sync {
    async fn append(&self, event: PendingEvent) -> Result<Appended, StoreError>;
}

/// A log that appends an event already stamped and encoded: a claimed
/// event is appended as its claim stored it.
#[async_trait]
pub trait EncodedAppender: Send + Sync {
    /// Appends durably, like [`EventAppender::append`], and says where.
    async fn append_encoded(
        &self,
        partition_key: &str,
        payload: &[u8],
    ) -> Result<LogPosition, StoreError>;
}

/// What a de-duplication key's claim found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is new and now holds the caller's encoded event: append it.
    Won,
    /// The key was claimed before, with this encoded event. `appended` is
    /// where it landed, once its appender saw the log acknowledge it; `None`
    /// means that appender may have died first, so the caller appends the
    /// same event (same id) again: readers de-duplicate by id.
    Taken {
        payload: Vec<u8>,
        appended: Option<LogPosition>,
    },
}

/// De-duplication keys for a log that cannot check them in the same write
/// as the append (Kafka), as [`crate::dedup::ClaimedAppender`] uses them.
/// The claim is atomic (a lightweight transaction), and stores the event
/// before it is appended, so a retry after a crash finds the same event
/// and never appends a different one.
#[async_trait]
pub trait DedupKeys: Send + Sync {
    async fn claim(&self, key: &str, payload: &[u8]) -> Result<Claim, StoreError>;
    /// Records that the claimed event is in the log at `at`.
    async fn settle(&self, key: &str, at: LogPosition) -> Result<(), StoreError>;
}

/// Where a new subscription starts reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// From the group's committed position (or the beginning if none).
    Committed,
    /// Just past a watermark: a new ws-push instance starts after
    /// [`EventLog::latest`], and picks up there again after an outage.
    After(Watermark),
}

/// Opens consumers on the log.
#[async_trait]
pub trait EventLog: Send + Sync {
    async fn subscribe(
        &self,
        group: &str,
        start: StartFrom,
    ) -> Result<Box<dyn LogConsumer>, StoreError>;
    /// Forgets `group`'s committed position, so it next starts from the
    /// beginning (used by replay).
    async fn reset_group(&self, group: &str) -> Result<(), StoreError>;
    /// `group`'s committed position.
    async fn committed(&self, group: &str) -> Result<Watermark, StoreError>;
    /// The position of the last event in each partition now.
    async fn latest(&self) -> Result<Watermark, StoreError>;
    /// Which log this is, so positions from another log are told apart.
    fn identity(&self) -> LogId;
}

/// One reader of the log, in order within each partition.
#[async_trait]
pub trait LogConsumer: Send {
    /// Up to `max` events, waiting at most `wait` for the first one; empty
    /// when nothing arrived. Never spins.
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<RecordedEvent>, StoreError>;
    /// Records that everything up to `through` is handled. Call only after
    /// the work it covers is durable.
    async fn commit(&mut self, through: &Watermark) -> Result<(), StoreError>;
}

/// The projector's side of the read models. Every write is an idempotent
/// upsert: applying a batch twice, or replaying the log, changes nothing.
#[async_trait]
pub trait ReadModelWriter: Send + Sync {
    async fn apply(&self, events: &[RecordedEvent]) -> Result<(), StoreError>;
    /// Drops every read model, before a replay.
    async fn reset(&self) -> Result<(), StoreError>;
}

/// Conversation timelines, newest first.
#[async_trait]
pub trait TimelineReader: Send + Sync {
    /// At most `limit` messages older than `before` (or the newest), newest
    /// first. Cost depends on `limit`, not on the timeline's length.
    async fn page(
        &self,
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError>;
    /// A message `user` sent or received, by id: who sent it to whom and
    /// in which conversation (what a receipt needs). `None` for any other
    /// id, and for one the read models do not show yet. One read.
    async fn message_of(
        &self,
        user: UserId,
        id: MessageId,
    ) -> Result<Option<MessageRef>, StoreError>;
}

/// Each user's events by log position, written by the projector: the part
/// of a reconnecting socket's backlog older than what ws-push holds in
/// memory.
#[async_trait]
pub trait SyncFeed: Send + Sync {
    /// The events of `user`'s audience (see [`Event::audience`]) in
    /// `partition` with an offset above `after` (or from the start) and at
    /// most `upto`, oldest first, at most `limit`. One request per page,
    /// whatever lies between `after` and `upto`.
    async fn user_events(
        &self,
        user: UserId,
        partition: u32,
        after: Option<i64>,
        upto: i64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;
}

/// One row of a user's inbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxEntry {
    pub conversation_id: ConversationId,
    pub peer: UserId,
    pub last_message: Message,
    pub unread_count: u64,
}

#[async_trait]
pub trait InboxReader: Send + Sync {
    /// Newest activity first, at most `limit` conversations.
    async fn inbox(&self, user: UserId, limit: usize) -> Result<Vec<InboxEntry>, StoreError>;
}

/// Credentials and the user directory.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// `Err(Conflict)` when the username is taken.
    async fn create(&self, credential: &Credential) -> Result<(), StoreError>;
    /// Undoes a `create` whose registration event could not be appended.
    async fn remove(&self, id: UserId) -> Result<(), StoreError>;
    async fn by_username(&self, username: &Username) -> Result<Option<Credential>, StoreError>;
    async fn by_id(&self, id: UserId) -> Result<Option<PublicUser>, StoreError>;
    /// Users whose username starts with `prefix`, alphabetical.
    async fn search_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<PublicUser>, StoreError>;
}

/// Sessions ended by logout before their token expired.
#[async_trait]
pub trait SessionRevocations: Send + Sync {
    async fn revoke(&self, session: &Session) -> Result<(), StoreError>;
    /// Whether `session` was logged out. Takes the whole session because
    /// its issue time bounds how far back a logout can lie.
    async fn is_revoked(&self, session: &Session) -> Result<bool, StoreError>;
}

/// A dependency `/readyz` asks about.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    fn name(&self) -> &'static str;
    async fn check(&self) -> Result<(), StoreError>;
}

/// The consumer group name of the projector; ws-push reads its committed
/// position to know when the store holds a backlog it is about to read.
pub const PROJECTOR_GROUP: &str = "projector";

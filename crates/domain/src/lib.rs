//! Parley's domain: the types every role agrees on, the pure decisions and
//! the ports (traits) that adapters implement.
//!
//! Nothing here knows HTTP, SQLite, Kafka or CQL. Values that cross a
//! boundary are parsed into newtypes once, so past the boundary they are
//! valid by construction.

pub mod auth;
pub mod commands;
pub mod config;
pub mod conversation;
pub mod cursor;
pub mod error;
pub mod events;
pub mod ids;
pub mod message;
pub mod ports;
pub mod position;
pub mod retry;
pub mod sync;
pub mod time;
pub mod user;

pub use conversation::ConversationId;
pub use cursor::Cursor;
pub use error::{StoreError, ValidationError};
pub use events::{Event, LogPosition, RecordedEvent, Stamp, Watermark};
pub use ids::{EventId, MessageId, UserId};
pub use message::{ClientId, Message, MessageBody, ReadMarkers};
pub use sync::{BadToken, LogId, SyncToken};
pub use time::Timestamp;
pub use user::{Credential, DisplayName, Password, PasswordHash, PublicUser, Username};

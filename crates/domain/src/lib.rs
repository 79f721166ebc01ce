//! Parley's domain: the types every role agrees on, the pure decisions and
//! the ports (traits) that adapters implement.
//!
//! Nothing here knows HTTP, SQLite, Kafka or CQL. Values that cross a
//! boundary are parsed into newtypes once, so past the boundary they are
//! valid by construction.

/// The characters `char::is_whitespace` (and so `str::trim`) counts, as
/// the inside of a regex character class (JSON Schema patterns).
macro_rules! ws_class {
    () => {
        "\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000"
    };
}
/// The characters `char::is_control` counts (Unicode Cc), likewise.
macro_rules! control_class {
    () => {
        "\\u0000-\\u001F\\u007F-\\u009F"
    };
}

pub mod auth;
pub mod cache;
pub mod commands;
pub mod config;
pub mod conversation;
pub mod cursor;
pub mod dedup;
pub mod error;
pub mod events;
pub mod ids;
pub mod logouts;
pub mod message;
pub mod ports;
pub mod position;
pub mod recent;
pub mod retry;
pub mod sync;
pub mod time;
pub mod user;

pub use conversation::ConversationId;
pub use cursor::Cursor;
pub use error::{StoreError, ValidationError};
pub use events::{Event, LogPosition, RecordedEvent, Stamp, Watermark};
pub use ids::{EventId, MessageId, UserId};
pub use message::{ClientId, Message, MessageBody, MessageRef, ReadMarkers};
pub use sync::{BadToken, LogId, SyncToken};
pub use time::Timestamp;
pub use user::{Credential, DisplayName, Password, PasswordHash, PublicUser, Username};

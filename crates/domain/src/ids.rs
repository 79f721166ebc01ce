//! Time-ordered identifiers. UUIDv7 strings sort in creation order, which is
//! what lets timelines cluster by id and cursors compare ids.

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};
use uuid::Uuid;

use crate::{time::Timestamp, ValidationError};

/// What the ids' `parse` accepts: the hyphenated form, hex of either case.
pub const UUID_PATTERN: &str =
    "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$";

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn from_uuid(u: Uuid) -> Self {
                Self(u)
            }
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
            /// Parses the canonical hyphenated form; anything else is refused
            /// so that one id has exactly one spelling on the wire.
            pub fn parse(field: &'static str, s: &str) -> Result<Self, ValidationError> {
                if s.len() != 36 {
                    return Err(ValidationError::new(field, "must be a UUID"));
                }
                Uuid::try_parse(s)
                    .map(Self)
                    .map_err(|_| ValidationError::new(field, "must be a UUID"))
            }
            /// The creation time a UUIDv7 carries; ids of other versions
            /// report the epoch.
            pub fn timestamp(&self) -> Timestamp {
                id_timestamp(&self.0)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse("id", s)
            }
        }
    };
}

uuid_id!(
    /// A registered user. Never reused.
    UserId
);
uuid_id!(
    /// A message; also the id of the `MessageSent` event that created it.
    MessageId
);
uuid_id!(
    /// One event in the log (the envelope's `id`).
    EventId
);

fn id_timestamp(u: &Uuid) -> Timestamp {
    match u.get_timestamp() {
        Some(ts) => {
            let (secs, nanos) = ts.to_unix();
            Timestamp::from_millis(secs as i64 * 1000 + (nanos / 1_000_000) as i64)
        }
        None => Timestamp::from_millis(0),
    }
}

impl MessageId {
    /// The smallest id whose timestamp is `ts`: the lower bound of that
    /// millisecond, used to turn a time into a position in a timeline.
    pub fn floor_of(ts: Timestamp) -> Self {
        let ms = ts.millis().max(0) as u64;
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        bytes[6] = 0x70;
        bytes[8] = 0x80;
        Self(Uuid::from_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_in_creation_order() {
        let a = MessageId::new();
        let b = MessageId::new();
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
    }

    #[test]
    fn parse_refuses_non_canonical_forms() {
        let id = UserId::new();
        assert_eq!(UserId::parse("to", &id.to_string()), Ok(id));
        let simple = id.as_uuid().simple().to_string();
        assert!(UserId::parse("to", &simple).is_err());
        assert!(UserId::parse("to", "not-a-uuid").is_err());
        assert_eq!(UserId::parse("to", "").unwrap_err().field, "to");
    }

    #[test]
    fn floor_of_is_at_or_below_ids_of_that_millisecond() {
        let id = MessageId::new();
        let floor = MessageId::floor_of(id.timestamp());
        assert!(floor <= id);
        assert_eq!(floor.timestamp(), id.timestamp());
    }
}

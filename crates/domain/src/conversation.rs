//! Conversation ids: one per unordered pair of users, computed, never stored
//! as a separate entity.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use uuid::Uuid;

use crate::{ids::UserId, ValidationError};

/// The two participants' ids, smaller first, written as 43 base64url
/// characters. Deterministic, so both sides compute the same id without a
/// lookup; it is the Kafka key and the timeline partition key. Clients treat
/// it as opaque.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationId {
    low: UserId,
    high: UserId,
}

impl ConversationId {
    pub fn between(a: UserId, b: UserId) -> Self {
        if a <= b {
            Self { low: a, high: b }
        } else {
            Self { low: b, high: a }
        }
    }

    /// Both participants, smaller id first.
    pub fn participants(&self) -> (UserId, UserId) {
        (self.low, self.high)
    }

    /// The participant that is not `me`, or `None` if `me` is not in it.
    pub fn peer_of(&self, me: UserId) -> Option<UserId> {
        if me == self.low {
            Some(self.high)
        } else if me == self.high {
            Some(self.low)
        } else {
            None
        }
    }

    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let err = || ValidationError::new("conversation_id", "is not a conversation id");
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| err())?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| err())?;
        let mut low = [0u8; 16];
        let mut high = [0u8; 16];
        low.copy_from_slice(&bytes[..16]);
        high.copy_from_slice(&bytes[16..]);
        let (low, high) = (
            UserId::from_uuid(Uuid::from_bytes(low)),
            UserId::from_uuid(Uuid::from_bytes(high)),
        );
        if low > high {
            return Err(err());
        }
        Ok(Self { low, high })
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = [0u8; 32];
        bytes[..16].copy_from_slice(self.low.as_uuid().as_bytes());
        bytes[16..].copy_from_slice(self.high.as_uuid().as_bytes());
        // 32 bytes are 43 characters unpadded; encoded on the stack, since
        // every message on the wire and in the store names its conversation.
        let mut text = [0u8; 43];
        match URL_SAFE_NO_PAD.encode_slice(bytes, &mut text) {
            Ok(n) => f.write_str(std::str::from_utf8(&text[..n]).map_err(|_| fmt::Error)?),
            Err(_) => f.write_str(&URL_SAFE_NO_PAD.encode(bytes)),
        }
    }
}

impl fmt::Debug for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConversationId({self})")
    }
}

impl Serialize for ConversationId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConversationId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ConversationId::parse(&s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn uid() -> impl Strategy<Value = UserId> {
        any::<u128>().prop_map(|n| UserId::from_uuid(Uuid::from_u128(n)))
    }

    proptest! {
        #[test]
        fn symmetric_and_round_trips(a in uid(), b in uid()) {
            let ab = ConversationId::between(a, b);
            prop_assert_eq!(ab, ConversationId::between(b, a));
            prop_assert_eq!(ab.to_string(), ConversationId::between(b, a).to_string());
            prop_assert_eq!(ConversationId::parse(&ab.to_string()), Ok(ab));
            prop_assert_eq!(ab.peer_of(a), Some(b));
            prop_assert_eq!(ab.peer_of(b), Some(a));
        }

        #[test]
        fn distinct_pairs_have_distinct_ids(a in uid(), b in uid(), c in uid()) {
            prop_assume!(c != a && c != b);
            prop_assert_ne!(ConversationId::between(a, b), ConversationId::between(a, c));
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert!(ConversationId::parse("nope").is_err());
        assert!(ConversationId::parse("").is_err());
    }
}

//! Opaque history cursors.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use uuid::Uuid;

use crate::{ids::MessageId, ValidationError};

const VERSION: u8 = 1;

/// A position in a timeline: "messages strictly older than this one".
///
/// It is the id of the last message of the previous page, versioned and
/// base64url-encoded so clients cannot come to depend on its content. A
/// store derives everything else (the partition bucket) from the id, so a
/// page is one seek whatever the timeline's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub before: MessageId,
}

impl Cursor {
    /// What [`Cursor::decode`] accepts, as a JSON Schema pattern: 17 bytes
    /// of base64url without padding, the first the version (1).
    pub const PATTERN: &'static str = "^A[Q-Za-f][A-Za-z0-9_-]{20}[AEIMQUYcgkosw048]$";

    pub fn encode(&self) -> String {
        let mut bytes = [0u8; 17];
        bytes[0] = VERSION;
        bytes[1..].copy_from_slice(self.before.as_uuid().as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(s: &str) -> Result<Self, ValidationError> {
        let err = || ValidationError::new("before", "is not a cursor this server issued");
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| err())?;
        let bytes: [u8; 17] = bytes.try_into().map_err(|_| err())?;
        if bytes[0] != VERSION {
            return Err(err());
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[1..]);
        Ok(Self {
            before: MessageId::from_uuid(Uuid::from_bytes(id)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(n in any::<u128>()) {
            let c = Cursor { before: MessageId::from_uuid(Uuid::from_u128(n)) };
            let s = c.encode();
            prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            prop_assert_eq!(Cursor::decode(&s), Ok(c));
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,64}") {
            let _ = Cursor::decode(&s);
        }
    }

    #[test]
    fn wrong_version_or_length_is_refused() {
        assert!(Cursor::decode("").is_err());
        assert!(Cursor::decode("AAAA").is_err());
        let mut bytes = [0u8; 17];
        bytes[0] = 2;
        assert!(Cursor::decode(&URL_SAFE_NO_PAD.encode(bytes)).is_err());
    }
}

//! Sync tokens: the `seq` a socket frame carries and a reconnecting client
//! hands back as `since`.
//!
//! A token is a watermark of the log: for each partition, the offset up to
//! which every event of the user has reached the client. Message ids
//! cannot say that: they are stamped by the clocks of several command-api
//! processes, and Kafka partitions are not ordered against each other.
//! Positions in the log are the same on every ws-push instance, across
//! restarts and after a replay, so a token is valid anywhere the same log
//! is read. It also names its log, so a token from another topic or data
//! dir is refused instead of being misread.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};

use crate::position::Watermark;

/// Which log positions refer to: a random id kept with the embedded log,
/// or derived from the Kafka cluster and topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LogId(pub u64);

impl LogId {
    /// A stable id for a log known by name (a Kafka cluster and topic):
    /// the same on every process and release.
    pub fn named(name: &str) -> Self {
        let uuid = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&uuid.as_bytes()[..8]);
        Self(u64::from_be_bytes(first))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncToken {
    pub log: LogId,
    pub positions: Watermark,
}

/// Why a `since` cannot be served. Both are answered the same way (close
/// 4409: read the inbox again and connect without `since`), but the
/// server logs which.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadToken {
    #[error("malformed sync token")]
    Malformed,
    #[error("sync token from another log")]
    OtherLog,
}

const VERSION: u8 = 1;
/// Longest token accepted: far more partitions than any topic has.
const MAX_TEXT: usize = 4096;
const MAX_PARTITIONS: u64 = 1024;

impl SyncToken {
    pub fn new(log: LogId, positions: Watermark) -> Self {
        Self { log, positions }
    }

    pub fn encode(&self) -> String {
        Self::text(self.log, &self.positions)
    }

    /// Opaque, URL-safe text: a version, the log id, then per partition
    /// 0 (nothing yet) or offset + 1, as varints.
    pub fn text(log: LogId, positions: &Watermark) -> String {
        let slots = positions.slots();
        let mut bytes = Vec::with_capacity(10 + slots.len() * 4);
        bytes.push(VERSION);
        bytes.extend_from_slice(&log.0.to_be_bytes());
        put_varint(&mut bytes, slots.len() as u64);
        for slot in slots {
            put_varint(&mut bytes, slot.map_or(0, |o| o.max(0) as u64 + 1));
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Reads a token a client sent. `log` is the log this server reads:
    /// a token naming another is refused.
    pub fn parse(text: &str, log: LogId) -> Result<Self, BadToken> {
        let token = Self::decode(text).ok_or(BadToken::Malformed)?;
        if token.log != log {
            return Err(BadToken::OtherLog);
        }
        Ok(token)
    }

    /// Reads a token whatever log it names (to inspect one; a server
    /// uses [`SyncToken::parse`]).
    pub fn parse_any(text: &str) -> Result<Self, BadToken> {
        Self::decode(text).ok_or(BadToken::Malformed)
    }

    fn decode(text: &str) -> Option<Self> {
        if text.len() > MAX_TEXT {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let (&version, rest) = bytes.split_first()?;
        if version != VERSION || rest.len() < 8 {
            return None;
        }
        let (id, mut rest) = rest.split_at(8);
        let log = LogId(u64::from_be_bytes(id.try_into().ok()?));
        let n = take_varint(&mut rest)?;
        if n > MAX_PARTITIONS {
            return None;
        }
        let mut slots = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let v = take_varint(&mut rest)?;
            slots.push(match v {
                0 => None,
                v => Some(i64::try_from(v - 1).ok()?),
            });
        }
        // One text per token: no trailing bytes, no trailing empty
        // partitions (encode never writes them).
        if !rest.is_empty() || slots.last() == Some(&None) {
            return None;
        }
        Some(Self {
            log,
            positions: Watermark::from_slots(slots),
        })
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// LEB128, at most ten bytes, no overflow, shortest form only.
fn take_varint(input: &mut &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let (&b, rest) = input.split_first()?;
        *input = rest;
        let bits = u64::from(b & 0x7f);
        if i == 9 && bits > 1 {
            return None;
        }
        v |= bits << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return None;
            }
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::position::LogPosition;

    fn watermark() -> impl Strategy<Value = Watermark> {
        proptest::collection::vec(proptest::option::of(0..i64::MAX), 0..16)
            .prop_map(Watermark::from_slots)
    }

    proptest! {
        #[test]
        fn a_token_reads_back_as_it_was_written(log in any::<u64>(), w in watermark()) {
            let t = SyncToken::new(LogId(log), w);
            let text = t.encode();
            prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            prop_assert_eq!(SyncToken::parse(&text, LogId(log)), Ok(t));
        }

        #[test]
        fn ordering_survives_the_round_trip(log in any::<u64>(), a in watermark(), b in watermark()) {
            let read = |w: &Watermark| {
                SyncToken::parse(&SyncToken::new(LogId(log), w.clone()).encode(), LogId(log))
                    .map(|t| t.positions)
            };
            let (ra, rb) = (read(&a).unwrap(), read(&b).unwrap());
            prop_assert_eq!(ra.covers_all(&rb), a.covers_all(&b));
            prop_assert_eq!(rb.covers_all(&ra), b.covers_all(&a));
        }

        #[test]
        fn garbage_is_refused_never_a_panic(text in "\\PC{0,200}") {
            let _ = SyncToken::parse(&text, LogId(1));
        }

        #[test]
        fn altered_bytes_are_refused_or_read_as_another_valid_token(
            w in watermark(), at in any::<prop::sample::Index>(), byte in any::<u8>()
        ) {
            let mut bytes = URL_SAFE_NO_PAD.decode(SyncToken::new(LogId(7), w).encode()).unwrap();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            if let Ok(t) = SyncToken::parse(&URL_SAFE_NO_PAD.encode(&bytes), LogId(7)) {
                // Whatever it reads as encodes back to exactly those bytes.
                prop_assert_eq!(URL_SAFE_NO_PAD.decode(t.encode()).unwrap(), bytes);
            }
        }
    }

    #[test]
    fn a_token_from_another_log_is_told_apart_from_a_malformed_one() {
        let mut w = Watermark::default();
        w.advance(LogPosition {
            partition: 3,
            offset: 42,
        });
        let text = SyncToken::new(LogId(1), w).encode();
        assert_eq!(SyncToken::parse(&text, LogId(2)), Err(BadToken::OtherLog));
        for bad in ["", "!!", "AQ", &text[..text.len() - 1], &format!("{text}A")] {
            assert_eq!(
                SyncToken::parse(bad, LogId(1)),
                Err(BadToken::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn an_empty_log_has_a_short_token() {
        let text = SyncToken::new(LogId(9), Watermark::default()).encode();
        assert!(text.len() < 16, "{text}");
        assert_eq!(
            SyncToken::parse(&text, LogId(9)).map(|t| t.positions),
            Ok(Watermark::default())
        );
    }
}

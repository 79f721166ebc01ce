//! The event log's vocabulary: a versioned JSON envelope
//! `{id, type, v, at, data}` around four event types.
//!
//! Readers skip types and versions they do not know (with a warning) rather
//! than crash, so old binaries survive a log written by newer ones.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use crate::position::{LogPosition, Watermark};
use crate::{
    conversation::ConversationId,
    ids::{EventId, MessageId, UserId},
    message::{ClientId, Message, MessageBody},
    time::Timestamp,
    user::PublicUser,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user: PublicUser,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSent {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub from: UserId,
    pub to: UserId,
    pub body: MessageBody,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientId>,
    pub sent_at: Timestamp,
}

impl MessageSent {
    pub fn to_message(&self) -> Message {
        Message {
            id: self.message_id,
            conversation_id: self.conversation_id,
            from: self.from,
            to: self.to,
            body: self.body.clone(),
            sent_at: self.sent_at,
            delivered_at: None,
            read_at: None,
        }
    }
}

/// The recipient's device acknowledged the message. `to` is the recipient;
/// the sender is the conversation's other participant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDelivered {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub to: UserId,
    pub at: Timestamp,
}

/// `reader` has read every message addressed to them up to and including
/// `up_to`. Markers only move forward: a lower `up_to` changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationRead {
    pub conversation_id: ConversationId,
    pub reader: UserId,
    pub up_to: MessageId,
    pub at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    UserRegistered(UserRegistered),
    MessageSent(MessageSent),
    MessageDelivered(MessageDelivered),
    ConversationRead(ConversationRead),
}

/// Identity and time given to an event at the moment the log orders it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub id: EventId,
    pub at: Timestamp,
}

impl Stamp {
    pub fn now() -> Self {
        let id = EventId::new();
        Self {
            at: id.timestamp(),
            id,
        }
    }
}

/// An event read back from the log, with its place in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    pub position: LogPosition,
    pub id: EventId,
    pub at: Timestamp,
    pub event: Event,
}

impl RecordedEvent {
    /// `event` as the log recorded it at `position`, under `stamp`.
    pub fn stamped(position: LogPosition, stamp: Stamp, event: Event) -> Self {
        Self {
            position,
            id: stamp.id,
            at: stamp.at,
            event,
        }
    }
}

#[derive(Serialize)]
struct EnvelopeOut<'a, T: Serialize> {
    id: EventId,
    #[serde(rename = "type")]
    kind: &'a str,
    v: u32,
    at: Timestamp,
    data: &'a T,
}

#[derive(Deserialize)]
struct EnvelopeIn<'a> {
    id: EventId,
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    v: u32,
    at: Timestamp,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Why a log record could not be read. Unknown types are not errors; they
/// decode to `Ok(None)`.
#[derive(Debug, thiserror::Error)]
#[error("malformed event: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

impl Event {
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::UserRegistered(_) => "UserRegistered",
            Event::MessageSent(_) => "MessageSent",
            Event::MessageDelivered(_) => "MessageDelivered",
            Event::ConversationRead(_) => "ConversationRead",
        }
    }

    /// The users whose devices hear of this event, live and in a sync
    /// backlog: a message reaches both participants (the sender's other
    /// devices too), a delivery receipt the sender, a read receipt both
    /// (the reader's other devices clear their unread state). ws-push and
    /// both stores' sync feeds follow this one rule.
    pub fn audience(&self) -> [Option<UserId>; 2] {
        match self {
            Event::MessageSent(m) => [Some(m.to), Some(m.from)],
            Event::MessageDelivered(d) => [d.conversation_id.peer_of(d.to), None],
            Event::ConversationRead(r) => [r.conversation_id.peer_of(r.reader), Some(r.reader)],
            Event::UserRegistered(_) => [None, None],
        }
    }

    /// The log key: events of one conversation share it, so they share a
    /// partition and keep their order.
    pub fn partition_key(&self) -> String {
        match self {
            Event::UserRegistered(e) => e.user.id.to_string(),
            Event::MessageSent(e) => e.conversation_id.to_string(),
            Event::MessageDelivered(e) => e.conversation_id.to_string(),
            Event::ConversationRead(e) => e.conversation_id.to_string(),
        }
    }

    /// The envelope as bytes. Done once per event, at append. An error
    /// fails the append: nothing unreadable is ever written to the log.
    pub fn encode(&self, stamp: Stamp) -> Result<Vec<u8>, serde_json::Error> {
        fn env<T: Serialize>(
            kind: &str,
            stamp: Stamp,
            data: &T,
        ) -> Result<Vec<u8>, serde_json::Error> {
            serde_json::to_vec(&EnvelopeOut {
                id: stamp.id,
                kind,
                v: 1,
                at: stamp.at,
                data,
            })
        }
        let kind = self.type_name();
        match self {
            Event::UserRegistered(e) => env(kind, stamp, e),
            Event::MessageSent(e) => env(kind, stamp, e),
            Event::MessageDelivered(e) => env(kind, stamp, e),
            Event::ConversationRead(e) => env(kind, stamp, e),
        }
    }

    /// Reads an envelope. `Ok(None)` for a type or version this build does
    /// not know: the caller logs and moves on.
    pub fn decode(bytes: &[u8]) -> Result<Option<(Stamp, Event)>, DecodeError> {
        let env: EnvelopeIn<'_> = serde_json::from_slice(bytes)?;
        let data = env.data.get();
        let event = match (env.kind, env.v) {
            ("UserRegistered", 1) => Event::UserRegistered(serde_json::from_str(data)?),
            ("MessageSent", 1) => Event::MessageSent(serde_json::from_str(data)?),
            ("MessageDelivered", 1) => Event::MessageDelivered(serde_json::from_str(data)?),
            ("ConversationRead", 1) => Event::ConversationRead(serde_json::from_str(data)?),
            _ => return Ok(None),
        };
        Ok(Some((
            Stamp {
                id: env.id,
                at: env.at,
            },
            event,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::{DisplayName, Username};
    use proptest::prelude::*;

    fn sample_events(body: String, client: Option<String>) -> Vec<Event> {
        let a = UserId::new();
        let b = UserId::new();
        let c = ConversationId::between(a, b);
        let m = MessageId::new();
        let t = Timestamp::now();
        vec![
            Event::UserRegistered(UserRegistered {
                user: PublicUser {
                    id: a,
                    username: Username::parse("alice").unwrap(),
                    display_name: DisplayName::parse("Alice").unwrap(),
                    created_at: t,
                },
            }),
            Event::MessageSent(MessageSent {
                message_id: m,
                conversation_id: c,
                from: a,
                to: b,
                body: MessageBody::from_trusted(body),
                client_id: client.map(|c| ClientId::parse(c).unwrap()),
                sent_at: t,
            }),
            Event::MessageDelivered(MessageDelivered {
                message_id: m,
                conversation_id: c,
                to: b,
                at: t,
            }),
            Event::ConversationRead(ConversationRead {
                conversation_id: c,
                reader: b,
                up_to: m,
                at: t,
            }),
        ]
    }

    proptest! {
        #[test]
        fn every_event_round_trips(body in "\\PC{1,64}", client in proptest::option::of("[a-z0-9-]{1,20}")) {
            for e in sample_events(body.clone(), client.clone()) {
                let stamp = Stamp::now();
                let bytes = e.encode(stamp).unwrap();
                let (s2, e2) = Event::decode(&bytes).unwrap().unwrap();
                prop_assert_eq!(s2, stamp);
                prop_assert_eq!(e2, e);
            }
        }
    }

    #[test]
    fn envelope_has_the_documented_shape() {
        let e = &sample_events("hi".into(), None)[1];
        let v: serde_json::Value =
            serde_json::from_slice(&e.encode(Stamp::now()).unwrap()).unwrap();
        for k in ["id", "type", "v", "at", "data"] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["type"], "MessageSent");
        assert_eq!(v["v"], 1);
        assert!(v["data"]["message_id"].is_string());
    }

    #[test]
    fn unknown_types_and_versions_are_skipped_not_errors() {
        let id = EventId::new();
        let unknown = format!(
            r#"{{"id":"{id}","type":"Reaction","v":1,"at":"2026-01-01T00:00:00.000Z","data":{{}}}}"#
        );
        assert!(Event::decode(unknown.as_bytes()).unwrap().is_none());
        let future = format!(
            r#"{{"id":"{id}","type":"MessageSent","v":9,"at":"2026-01-01T00:00:00.000Z","data":{{}}}}"#
        );
        assert!(Event::decode(future.as_bytes()).unwrap().is_none());
        assert!(Event::decode(b"not json").is_err());
    }
}

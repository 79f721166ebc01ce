//! Message bodies, client de-duplication ids and the message view.

use serde::{Deserialize, Serialize};

use crate::{
    conversation::ConversationId, ids::MessageId, ids::UserId, time::Timestamp, ValidationError,
};

/// Text of a message: 1 to 4096 characters, not all whitespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageBody(String);

impl MessageBody {
    pub const MAX_CHARS: usize = 4096;
    /// "Not all whitespace" as a JSON Schema pattern: some character that
    /// is not whitespace as [`str::trim`] counts it (spelled out, since
    /// ECMA-262's `\s` is another set).
    pub const PATTERN: &'static str = concat!("[^", ws_class!(), "]");

    pub fn parse(raw: String) -> Result<Self, ValidationError> {
        if raw.trim().is_empty() {
            return Err(ValidationError::new(
                "body",
                "must not be empty or only whitespace",
            ));
        }
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(ValidationError::new(
                "body",
                "must be at most 4096 characters",
            ));
        }
        Ok(Self(raw))
    }
    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A client-chosen id that makes a send safe to retry: the same sender
/// repeating it gets the first message back and nothing is appended.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientId(String);

impl ClientId {
    pub const MAX_CHARS: usize = 128;
    /// What [`ClientId::parse`] accepts.
    pub const PATTERN: &'static str = concat!("^[^", control_class!(), "]{1,128}$");

    pub fn parse(raw: String) -> Result<Self, ValidationError> {
        let n = raw.chars().count();
        if n == 0 || n > Self::MAX_CHARS || raw.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "client_id",
                "must be 1 to 128 characters without control characters",
            ));
        }
        Ok(Self(raw))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A message as readers see it. `delivered_at` and `read_at` appear once
/// the recipient acknowledged or read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub from: UserId,
    pub to: UserId,
    pub body: MessageBody,
    pub sent_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub delivered_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub read_at: Option<Timestamp>,
}

/// Who sent a message to whom, and in which conversation: what a receipt
/// needs to know of it, and what a store can answer by id for either
/// participant without reading the message itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageRef {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub from: UserId,
    pub to: UserId,
}

impl From<&Message> for MessageRef {
    fn from(m: &Message) -> Self {
        Self {
            id: m.id,
            conversation_id: m.conversation_id,
            from: m.from,
            to: m.to,
        }
    }
}

/// The read markers of one conversation (at most one per participant):
/// what a message's `read_at` is computed from. A store reads them once per
/// page instead of joining them onto every row.
#[derive(Default, Debug)]
pub struct ReadMarkers(Vec<(UserId, MessageId, Timestamp)>);

impl ReadMarkers {
    /// Records that `reader` has read up to `up_to`, at `at`.
    pub fn insert(&mut self, reader: UserId, up_to: MessageId, at: Timestamp) {
        self.0.retain(|(r, _, _)| *r != reader);
        self.0.push((reader, up_to, at));
    }

    /// Sets `read_at`: when the recipient's marker reached the message.
    pub fn stamp(&self, m: &mut Message) {
        m.read_at = self
            .0
            .iter()
            .find(|(reader, up_to, _)| *reader == m.to && *up_to >= m.id)
            .map(|(_, _, at)| *at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_rules() {
        assert!(MessageBody::parse("hi".into()).is_ok());
        assert!(MessageBody::parse(" \n\t ".into()).is_err());
        assert!(MessageBody::parse(String::new()).is_err());
        assert!(MessageBody::parse("é".repeat(4096)).is_ok());
        assert!(MessageBody::parse("é".repeat(4097)).is_err());
    }

    #[test]
    fn client_id_rules() {
        assert!(ClientId::parse("abc-1".into()).is_ok());
        assert!(ClientId::parse(String::new()).is_err());
        assert!(ClientId::parse("x".repeat(129)).is_err());
        assert!(ClientId::parse("a\nb".into()).is_err());
    }
}

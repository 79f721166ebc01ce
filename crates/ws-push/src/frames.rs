//! The socket protocol's frames. An event's frame is encoded once, with
//! the sync token of the instance that dispatched it; a socket whose own
//! position is ahead of that token in some partition (it resumed from a
//! token minted elsewhere) gets the same bytes with its own token spliced
//! in, never a second JSON encode.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use parley_domain::{
    ConversationId, Event, LogId, Message, MessageId, RecordedEvent, SyncToken, Timestamp, UserId,
    Watermark,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Ready {
        user_id: UserId,
        seq: &'a str,
    },
    Message {
        message: &'a Message,
        seq: &'a str,
    },
    Delivered {
        conversation_id: ConversationId,
        message_id: MessageId,
        at: Timestamp,
        seq: &'a str,
    },
    Read {
        conversation_id: ConversationId,
        up_to: MessageId,
        by: UserId,
        at: Timestamp,
        seq: &'a str,
    },
    Synced {
        seq: &'a str,
    },
    Error {
        detail: &'a str,
    },
    Pong,
}

impl ServerFrame<'_> {
    pub fn encode(&self) -> Utf8Bytes {
        Utf8Bytes::from(serde_json::to_string(self).unwrap_or_default())
    }
}

/// An event's frame. `seq` is its last field, so the text ends with
/// `"seq":"<token>"}` and another token can replace it by splicing.
pub struct EventFrame {
    text: Utf8Bytes,
    seq_at: usize,
}

impl EventFrame {
    fn new(frame: &ServerFrame<'_>, seq: &str) -> Self {
        let text = serde_json::to_string(frame).unwrap_or_default();
        // Tokens are URL-safe base64: JSON writes them unescaped.
        let seq_at = text.len().saturating_sub(seq.len() + 2);
        debug_assert_eq!(text.get(seq_at..seq_at + seq.len()), Some(seq));
        Self {
            text: Utf8Bytes::from(text),
            seq_at,
        }
    }

    pub fn text(&self) -> Utf8Bytes {
        self.text.clone()
    }

    /// The same frame carrying `seq` instead.
    pub fn with_seq(&self, seq: &str) -> Utf8Bytes {
        let head = self.text.as_str().get(..self.seq_at).unwrap_or_default();
        Utf8Bytes::from(format!("{head}{seq}\"}}"))
    }
}

/// An event as the sockets of its audience receive it.
pub struct Push {
    pub frame: EventFrame,
    pub position: parley_domain::LogPosition,
    /// Where a socket stands once it has this frame, if it got every frame
    /// of the same dispatcher before: that dispatcher's watermark just
    /// after this event.
    pub seq: Arc<Watermark>,
    /// Set for message frames, so a session can answer acks from memory.
    pub message: Option<Arc<Message>>,
    pub audience: [Option<UserId>; 2],
}

impl Push {
    /// `None` for an event no socket hears of.
    pub fn build(e: &RecordedEvent, seq: Arc<Watermark>, log: LogId) -> Option<Self> {
        let audience = e.event.audience();
        if audience == [None, None] {
            return None;
        }
        let token = SyncToken::text(log, &seq);
        let t = token.as_str();
        let (frame, message) = match &e.event {
            Event::MessageSent(m) => {
                let message = Arc::new(m.to_message());
                let frame = EventFrame::new(
                    &ServerFrame::Message {
                        message: &message,
                        seq: t,
                    },
                    t,
                );
                (frame, Some(message))
            }
            Event::MessageDelivered(d) => (
                EventFrame::new(
                    &ServerFrame::Delivered {
                        conversation_id: d.conversation_id,
                        message_id: d.message_id,
                        at: d.at,
                        seq: t,
                    },
                    t,
                ),
                None,
            ),
            Event::ConversationRead(r) => (
                EventFrame::new(
                    &ServerFrame::Read {
                        conversation_id: r.conversation_id,
                        up_to: r.up_to,
                        by: r.reader,
                        at: r.at,
                        seq: t,
                    },
                    t,
                ),
                None,
            ),
            Event::UserRegistered(_) => return None,
        };
        Some(Self {
            frame,
            position: e.position,
            seq,
            message,
            audience,
        })
    }

    /// Roughly what holding this push costs, for the history's budget.
    pub fn weight(&self) -> usize {
        const OVERHEAD: usize = 256;
        OVERHEAD
            + self.frame.text.len()
            + self.seq.slots().len() * 16
            + self.message.as_ref().map_or(0, |m| m.body.as_str().len())
    }
}

/// What a client may send. Ids arrive as text and are parsed by the
/// session, so a bad id gets an error frame naming it.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Auth {
        token: String,
        #[serde(default)]
        since: Option<String>,
    },
    Ack {
        message_id: String,
    },
    Ping,
}

#[cfg(test)]
mod tests {
    use parley_domain::{events::MessageSent, EventId, LogPosition, MessageBody};

    use super::*;

    #[test]
    fn a_spliced_token_gives_the_frame_a_fresh_encode_would() {
        let (a, b) = (UserId::new(), UserId::new());
        let e = RecordedEvent {
            position: LogPosition {
                partition: 2,
                offset: 9,
            },
            id: EventId::new(),
            at: Timestamp::now(),
            event: Event::MessageSent(MessageSent {
                message_id: MessageId::new(),
                conversation_id: ConversationId::between(a, b),
                from: a,
                to: b,
                body: MessageBody::from_trusted("\"quoted\" \\ body".into()),
                client_id: None,
                sent_at: Timestamp::now(),
            }),
        };
        let log = LogId(5);
        let mut w = Watermark::default();
        w.advance(e.position);
        let push = Push::build(&e, Arc::new(w.clone()), log).unwrap();
        let mut other = w.clone();
        other.advance(LogPosition {
            partition: 0,
            offset: 1234,
        });
        let fresh = Push::build(&e, Arc::new(other.clone()), log).unwrap();
        assert_eq!(
            push.frame.with_seq(&SyncToken::text(log, &other)),
            fresh.frame.text()
        );
        let v: serde_json::Value = serde_json::from_str(push.frame.text().as_str()).unwrap();
        assert_eq!(v["seq"], SyncToken::text(log, &w));
        assert_eq!(v["message"]["body"], "\"quoted\" \\ body");
    }
}

//! The socket protocol's frames, encoded once per event.

use axum::extract::ws::Utf8Bytes;
use parley_domain::{
    events::ConversationRead, events::MessageDelivered, ConversationId, Message, MessageId,
    Timestamp, UserId,
};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Ready {
        user_id: UserId,
    },
    Message {
        message: &'a Message,
    },
    Delivered {
        conversation_id: ConversationId,
        message_id: MessageId,
        at: Timestamp,
    },
    Read {
        conversation_id: ConversationId,
        up_to: MessageId,
        by: UserId,
        at: Timestamp,
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

    pub fn delivered(d: &MessageDelivered) -> ServerFrame<'static> {
        ServerFrame::Delivered {
            conversation_id: d.conversation_id,
            message_id: d.message_id,
            at: d.at,
        }
    }

    pub fn read(r: &ConversationRead) -> ServerFrame<'static> {
        ServerFrame::Read {
            conversation_id: r.conversation_id,
            up_to: r.up_to,
            by: r.reader,
            at: r.at,
        }
    }
}

/// What a client may send. Ids arrive as text and are parsed by the
/// session, so a bad id gets an error frame naming it.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Auth { token: String },
    Ack { message_id: String },
    Resume { after: String },
    Ping,
}

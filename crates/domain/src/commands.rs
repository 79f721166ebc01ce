//! Pure decisions: given a verified caller and parsed input, which event (if
//! any) to append. No I/O here; the services look things up and append.

use crate::{
    conversation::ConversationId,
    events::{ConversationRead, Event, MessageDelivered, MessageSent},
    ids::{MessageId, UserId},
    message::{ClientId, MessageBody, MessageRef},
    ports::PendingEvent,
    time::Timestamp,
    ValidationError,
};

/// Why a send is refused before anything is looked up.
#[derive(Debug, PartialEq, Eq)]
pub enum SendRejected {
    /// The body named a sender other than the caller.
    Impersonation,
    Invalid(ValidationError),
}

impl From<ValidationError> for SendRejected {
    fn from(e: ValidationError) -> Self {
        Self::Invalid(e)
    }
}

/// A send that passed every rule that needs no lookup.
#[derive(Debug, Clone)]
pub struct SendMessage {
    pub from: UserId,
    pub to: UserId,
    pub body: MessageBody,
    pub client_id: Option<ClientId>,
}

/// `claimed_senders` are the values of any `from` / `sender_id` fields a
/// client sent. The sender is always `caller`; naming anyone else is an
/// impersonation attempt, refused before anything else is looked at.
pub fn ensure_sender(
    caller: UserId,
    claimed_senders: &[&serde_json::Value],
) -> Result<(), SendRejected> {
    let me = caller.to_string();
    if claimed_senders
        .iter()
        .any(|v| v.as_str() != Some(me.as_str()))
    {
        return Err(SendRejected::Impersonation);
    }
    Ok(())
}

impl SendMessage {
    /// Checks the rules that need no lookup; the caller is the sender.
    pub fn decide(
        caller: UserId,
        to: &str,
        body: String,
        client_id: Option<String>,
    ) -> Result<Self, SendRejected> {
        let to = UserId::parse("to", to)?;
        if to == caller {
            return Err(ValidationError::new("to", "must not be yourself").into());
        }
        let body = MessageBody::parse(body)?;
        let client_id = client_id.map(ClientId::parse).transpose()?;
        Ok(Self {
            from: caller,
            to,
            body,
            client_id,
        })
    }

    pub fn conversation(&self) -> ConversationId {
        ConversationId::between(self.from, self.to)
    }

    /// Whether `first`, the message appended under this send's `client_id`
    /// earlier, is this same send retried (same recipient and body), which
    /// gets `first` back. Anything else reuses the id for another message:
    /// a conflict, never a silent drop of the new one.
    pub fn repeats(&self, first: &MessageSent) -> bool {
        first.from == self.from && first.to == self.to && first.body == self.body
    }

    pub fn into_pending(self) -> PendingEvent {
        let dedup = self
            .client_id
            .as_ref()
            .map(|c| format!("send:{}:{}", self.from, c.as_str()));
        let conversation_id = self.conversation();
        PendingEvent::new(dedup, move |stamp| {
            Event::MessageSent(MessageSent {
                message_id: MessageId::from_uuid(*stamp.id.as_uuid()),
                conversation_id,
                from: self.from,
                to: self.to,
                body: self.body,
                client_id: self.client_id,
                sent_at: stamp.at,
            })
        })
    }
}

/// A device's ack. Only the recipient can ack, and only once per message
/// does it become an event.
pub fn decide_delivery(acker: UserId, message: &MessageRef) -> Option<PendingEvent> {
    if message.to != acker {
        return None;
    }
    let (message_id, conversation_id, to) = (message.id, message.conversation_id, message.to);
    Some(PendingEvent::new(
        Some(format!("delivered:{message_id}")),
        move |stamp| {
            Event::MessageDelivered(MessageDelivered {
                message_id,
                conversation_id,
                to,
                at: stamp.at,
            })
        },
    ))
}

/// A read marker. `up_to` must be a message id that is not from the future
/// (one minute of clock skew allowed); the marker never moves backwards in
/// the read models, so a stale one is harmless.
pub fn decide_read(
    reader: UserId,
    peer: UserId,
    up_to: &str,
    now: Timestamp,
) -> Result<PendingEvent, ValidationError> {
    if reader == peer {
        return Err(ValidationError::new("peer_id", "must not be yourself"));
    }
    let up_to = MessageId::parse("up_to", up_to)?;
    if up_to.timestamp().millis() > now.millis() + 60_000 {
        return Err(ValidationError::new(
            "up_to",
            "is not a message id of this conversation",
        ));
    }
    let conversation_id = ConversationId::between(reader, peer);
    Ok(PendingEvent::new(None, move |stamp| {
        Event::ConversationRead(ConversationRead {
            conversation_id,
            reader,
            up_to,
            at: stamp.at,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Stamp;
    use serde_json::json;

    #[test]
    fn sender_is_the_caller_never_the_body() {
        let me = UserId::new();
        let peer = UserId::new().to_string();
        let other = json!(UserId::new().to_string());
        let mine = json!(me.to_string());
        assert_eq!(
            ensure_sender(me, &[&other]),
            Err(SendRejected::Impersonation)
        );
        assert_eq!(
            ensure_sender(me, &[&mine, &json!(42)]),
            Err(SendRejected::Impersonation)
        );
        assert_eq!(ensure_sender(me, &[&mine, &mine]), Ok(()));
        assert_eq!(ensure_sender(me, &[]), Ok(()));
        let ok = SendMessage::decide(me, &peer, "hi".into(), None).unwrap();
        assert_eq!(ok.from, me);
    }

    #[test]
    fn field_errors_name_the_field() {
        let me = UserId::new();
        let peer = UserId::new().to_string();
        let field = |r: Result<SendMessage, SendRejected>| match r {
            Err(SendRejected::Invalid(e)) => e.field,
            other => panic!("expected a validation error, got {other:?}"),
        };
        assert_eq!(field(SendMessage::decide(me, "x", "hi".into(), None)), "to");
        assert_eq!(
            field(SendMessage::decide(me, &me.to_string(), "hi".into(), None)),
            "to"
        );
        assert_eq!(
            field(SendMessage::decide(me, &peer, "  ".into(), None)),
            "body"
        );
        assert_eq!(
            field(SendMessage::decide(
                me,
                &peer,
                "hi".into(),
                Some(String::new())
            )),
            "client_id"
        );
    }

    #[test]
    fn a_retry_repeats_the_first_send_and_other_content_does_not() {
        let (me, peer, third) = (UserId::new(), UserId::new(), UserId::new());
        let send = |to: UserId, body: &str| {
            SendMessage::decide(me, &to.to_string(), body.into(), Some("c1".into())).unwrap()
        };
        let first = match (send(peer, "hello").into_pending().build)(Stamp::now()) {
            Event::MessageSent(m) => m,
            other => panic!("{other:?}"),
        };
        assert!(send(peer, "hello").repeats(&first));
        assert!(!send(peer, "hello?").repeats(&first));
        assert!(!send(third, "hello").repeats(&first));
    }

    #[test]
    fn given_a_send_then_the_event_carries_the_stamp_and_a_dedup_key() {
        let me = UserId::new();
        let peer = UserId::new();
        let cmd =
            SendMessage::decide(me, &peer.to_string(), "hello".into(), Some("c1".into())).unwrap();
        let pending = cmd.into_pending();
        assert_eq!(
            pending.dedup.as_deref(),
            Some(format!("send:{me}:c1").as_str())
        );
        let stamp = Stamp::now();
        match (pending.build)(stamp) {
            Event::MessageSent(m) => {
                assert_eq!(m.message_id.as_uuid(), stamp.id.as_uuid());
                assert_eq!(m.sent_at, stamp.at);
                assert_eq!(m.conversation_id, ConversationId::between(peer, me));
                assert_eq!(m.body.as_str(), "hello");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn only_the_recipient_can_ack() {
        let (a, b) = (UserId::new(), UserId::new());
        let m = MessageRef {
            id: MessageId::new(),
            conversation_id: ConversationId::between(a, b),
            from: a,
            to: b,
        };
        assert!(decide_delivery(a, &m).is_none());
        let p = decide_delivery(b, &m).unwrap();
        assert_eq!(p.dedup, Some(format!("delivered:{}", m.id)));
    }

    #[test]
    fn read_markers_from_the_future_are_refused() {
        let (a, b) = (UserId::new(), UserId::new());
        let now = Timestamp::now();
        let past = MessageId::new().to_string();
        assert!(decide_read(a, b, &past, now).is_ok());
        let future =
            MessageId::floor_of(Timestamp::from_millis(now.millis() + 3_600_000)).to_string();
        assert_eq!(
            decide_read(a, b, &future, now).err().map(|e| e.field),
            Some("up_to")
        );
        assert_eq!(
            decide_read(a, a, &past, now).err().map(|e| e.field),
            Some("peer_id")
        );
    }
}

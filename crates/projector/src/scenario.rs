//! Conversations written as event logs, for the tests that hold the
//! projection rules and both stores to the same cases: a few users send,
//! acknowledge and read, one millisecond apart, so every message id is
//! distinct and ordered as sent.

use parley_domain::{
    events::{ConversationRead, MessageDelivered, MessageSent},
    ConversationId, Event, MessageBody, MessageId, Timestamp, UserId,
};
use uuid::Uuid;

/// One thing a user does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// User `from` sends user `to` a message (`from == to` is skipped).
    Send { from: usize, to: usize },
    /// The recipient of the `nth` message sent so far (modulo their
    /// number) acknowledges it.
    Deliver { nth: usize },
    /// A participant of the `nth` message's conversation (its recipient,
    /// or with `by_sender` its sender) marks it read up to that message.
    Read { nth: usize, by_sender: bool },
}

/// A log being written.
#[derive(Clone, Debug)]
pub struct Script {
    users: Vec<UserId>,
    sent: Vec<MessageSent>,
    events: Vec<Event>,
    clock: i64,
}

impl Script {
    /// `users` users (fixed ids, so a failing case reads the same every
    /// time), the first event at `start`.
    pub fn new(users: usize, start: Timestamp) -> Self {
        let salt = Uuid::new_v4().as_u128() & !0xffff;
        Self {
            users: (0..users.max(2))
                .map(|i| UserId::from_uuid(Uuid::from_u128(salt | (i as u128 + 1))))
                .collect(),
            sent: Vec::new(),
            events: Vec::new(),
            clock: start.millis(),
        }
    }

    pub fn user(&self, i: usize) -> UserId {
        self.users[i % self.users.len()]
    }

    pub fn users(&self) -> &[UserId] {
        &self.users
    }

    fn tick(&mut self) -> Timestamp {
        self.clock += 1;
        Timestamp::from_millis(self.clock)
    }

    /// Adds `step`; a step that needs a message before there is one adds
    /// nothing.
    pub fn step(&mut self, step: Step) -> &mut Self {
        match step {
            Step::Send { from, to } => {
                let (from, to) = (self.user(from), self.user(to));
                if from != to {
                    self.send(from, to);
                }
            }
            Step::Deliver { nth } => {
                if let Some(m) = self.nth(nth) {
                    let at = self.tick();
                    self.events.push(Event::MessageDelivered(MessageDelivered {
                        message_id: m.message_id,
                        conversation_id: m.conversation_id,
                        to: m.to,
                        at,
                    }));
                }
            }
            Step::Read { nth, by_sender } => {
                if let Some(m) = self.nth(nth) {
                    let at = self.tick();
                    self.events.push(Event::ConversationRead(ConversationRead {
                        conversation_id: m.conversation_id,
                        reader: if by_sender { m.from } else { m.to },
                        up_to: m.message_id,
                        at,
                    }));
                }
            }
        }
        self
    }

    /// `from` sends `to` a message; its id.
    pub fn send(&mut self, from: UserId, to: UserId) -> MessageId {
        let at = self.tick();
        let m = MessageSent {
            message_id: MessageId::floor_of(at),
            conversation_id: ConversationId::between(from, to),
            from,
            to,
            body: MessageBody::from_trusted(format!("message {}", self.sent.len())),
            client_id: None,
            sent_at: at,
        };
        self.sent.push(m.clone());
        self.events.push(Event::MessageSent(m));
        self.sent[self.sent.len() - 1].message_id
    }

    fn nth(&self, nth: usize) -> Option<MessageSent> {
        match self.sent.len() {
            0 => None,
            n => Some(self.sent[nth % n].clone()),
        }
    }

    pub fn sent(&self) -> &[MessageSent] {
        &self.sent
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }
}

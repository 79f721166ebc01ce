//! What every event does to the read models, decided once for both stores.
//!
//! [`project`] turns one event into [`Change`]s: rows keyed by what they
//! describe, each merging with whatever a store already holds under that
//! key by its [`Rule`]. Every rule is idempotent and order-free, so applying
//! the changes of a log twice, in another order, or after a replay from
//! any point, ends in the same read models. The SQLite and CQL adapters
//! only apply changes (the first with `INSERT OR IGNORE`, `MIN`, `MAX` and
//! conditional upserts, the second with write timestamps); [`crate::model`]
//! applies them in memory, and is what both are tested against.
//!
//! | event | changes |
//! |---|---|
//! | `MessageSent` | the message; each participant's inbox entry; an unread mark for the recipient; a feed entry for each participant |
//! | `MessageDelivered` | the delivery stamp; a feed entry for the sender |
//! | `ConversationRead` | the reader's marker; a feed entry for each participant |
//! | `UserRegistered` | the user's entry in the directory |
//!
//! The directory is a read model like the others: a replay (into a fresh
//! keyspace too, where no credential is) rebuilds it from the log. It is
//! also written with the credential at registration, on both backends, so
//! it answers the moment the `201` does; the projector's insert of the same
//! entry then changes nothing.
//!
//! An event that contradicts itself (a message whose conversation is not
//! that of its sender and recipient, a receipt by someone outside the
//! conversation) changes nothing: no client can cause one, and projecting
//! it would file rows under the wrong users.

use parley_domain::{
    events::{ConversationRead, MessageDelivered, MessageSent},
    ConversationId, Event, LogPosition, PublicUser, RecordedEvent, UserId,
};

/// How a change merges with the row a store holds under the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The row is written once; a repeat carries the same values and
    /// changes nothing.
    InsertOnce,
    /// Of two stamps for the same key, the earlier stays: a message was
    /// delivered when its first receipt says.
    EarliestWins,
    /// Of two markers for the same key, the one further along the
    /// conversation (the greater `up_to`) stays, and on a tie the later
    /// one: a marker never moves back.
    FurthestWins,
    /// Of two values for the same key, the one about the newer message
    /// (the greater id) stays: an inbox shows the latest message.
    NewestWins,
    /// A member of a set (inserted once) that counts towards its owner's
    /// unread total until the owner's marker in that conversation reaches
    /// it.
    CountUnlessRead,
}

/// One row change. Borrowed from the event it came from: applying a batch
/// copies only what a store keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change<'a> {
    /// The message on its conversation's timeline, under
    /// `(conversation, message id)`; stores also index it by participant
    /// so a receipt can find it by id. [`Rule::InsertOnce`].
    Message {
        sent: &'a MessageSent,
        position: LogPosition,
    },
    /// When the recipient's device acknowledged the message, under
    /// `(conversation, message id)`; `sender` is the other participant.
    /// Both inboxes show the stamp while it is their last message.
    /// [`Rule::EarliestWins`].
    Delivered {
        delivery: &'a MessageDelivered,
        sender: UserId,
    },
    /// How far `read.reader` has read, under `(conversation, reader)`;
    /// `peer` is the other participant, whose inbox shows it too.
    /// [`Rule::FurthestWins`].
    Marker {
        read: &'a ConversationRead,
        peer: UserId,
    },
    /// `owner`'s inbox entry for the conversation, under
    /// `(owner, conversation)`. [`Rule::NewestWins`] by message id.
    Inbox {
        owner: UserId,
        peer: UserId,
        last: &'a MessageSent,
    },
    /// A message `owner` has not read, under
    /// `(owner, conversation, message id)`. [`Rule::CountUnlessRead`].
    /// Always beside `owner`'s [`Change::Inbox`] for the same message, so
    /// a store that keeps the count on the inbox entry can apply both in
    /// one write.
    Unread {
        owner: UserId,
        message: &'a MessageSent,
    },
    /// A user's public view in the directory, under the user's id (and
    /// found by username prefix). [`Rule::InsertOnce`].
    User { user: &'a PublicUser },
    /// The event in `owner`'s sync feed, under `(owner, log position)`:
    /// what a socket resuming from an older position is sent.
    /// [`Rule::InsertOnce`].
    Feed {
        owner: UserId,
        event: &'a RecordedEvent,
    },
}

impl Change<'_> {
    pub fn rule(&self) -> Rule {
        match self {
            Change::Message { .. } | Change::Feed { .. } | Change::User { .. } => Rule::InsertOnce,
            Change::Delivered { .. } => Rule::EarliestWins,
            Change::Marker { .. } => Rule::FurthestWins,
            Change::Inbox { .. } => Rule::NewestWins,
            Change::Unread { .. } => Rule::CountUnlessRead,
        }
    }
}

/// The changes `e` makes, in a fixed order: the rows of the event itself,
/// then each user's.
pub fn project(e: &RecordedEvent) -> Vec<Change<'_>> {
    let mut out = Vec::with_capacity(7);
    match &e.event {
        Event::MessageSent(m) => {
            if m.from == m.to || m.conversation_id != ConversationId::between(m.from, m.to) {
                return out;
            }
            out.extend([
                Change::Message {
                    sent: m,
                    position: e.position,
                },
                Change::Inbox {
                    owner: m.from,
                    peer: m.to,
                    last: m,
                },
                Change::Inbox {
                    owner: m.to,
                    peer: m.from,
                    last: m,
                },
                Change::Unread {
                    owner: m.to,
                    message: m,
                },
            ]);
        }
        Event::MessageDelivered(d) => match d.conversation_id.peer_of(d.to) {
            Some(sender) => out.push(Change::Delivered {
                delivery: d,
                sender,
            }),
            None => return out,
        },
        Event::ConversationRead(r) => match r.conversation_id.peer_of(r.reader) {
            Some(peer) => out.push(Change::Marker { read: r, peer }),
            None => return out,
        },
        Event::UserRegistered(u) => out.push(Change::User { user: &u.user }),
    }
    for owner in e.event.audience().into_iter().flatten() {
        out.push(Change::Feed { owner, event: e });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_domain::{events::UserRegistered, EventId, MessageBody, MessageId, Timestamp};

    fn recorded(offset: i64, event: Event) -> RecordedEvent {
        RecordedEvent {
            position: LogPosition {
                partition: 0,
                offset,
            },
            id: EventId::new(),
            at: Timestamp::from_millis(1_000 + offset),
            event,
        }
    }

    fn sent(from: UserId, to: UserId) -> MessageSent {
        MessageSent {
            message_id: MessageId::new(),
            conversation_id: ConversationId::between(from, to),
            from,
            to,
            body: MessageBody::from_trusted("hi".into()),
            client_id: None,
            sent_at: Timestamp::from_millis(1_000),
        }
    }

    fn kinds(changes: &[Change<'_>]) -> Vec<(&'static str, Option<UserId>, Rule)> {
        changes
            .iter()
            .map(|c| {
                let (kind, owner) = match c {
                    Change::Message { .. } => ("message", None),
                    Change::Delivered { sender, .. } => ("delivered", Some(*sender)),
                    Change::Marker { read, .. } => ("marker", Some(read.reader)),
                    Change::Inbox { owner, .. } => ("inbox", Some(*owner)),
                    Change::Unread { owner, .. } => ("unread", Some(*owner)),
                    Change::Feed { owner, .. } => ("feed", Some(*owner)),
                    Change::User { user } => ("user", Some(user.id)),
                };
                (kind, owner, c.rule())
            })
            .collect()
    }

    #[test]
    fn given_a_message_then_both_inboxes_and_feeds_change_and_the_recipient_has_it_unread() {
        let (a, b) = (UserId::new(), UserId::new());
        let e = recorded(1, Event::MessageSent(sent(a, b)));
        assert_eq!(
            kinds(&project(&e)),
            vec![
                ("message", None, Rule::InsertOnce),
                ("inbox", Some(a), Rule::NewestWins),
                ("inbox", Some(b), Rule::NewestWins),
                ("unread", Some(b), Rule::CountUnlessRead),
                ("feed", Some(b), Rule::InsertOnce),
                ("feed", Some(a), Rule::InsertOnce),
            ]
        );
    }

    #[test]
    fn given_a_delivery_then_the_stamp_changes_and_only_the_sender_hears() {
        let (a, b) = (UserId::new(), UserId::new());
        let m = sent(a, b);
        let e = recorded(
            2,
            Event::MessageDelivered(MessageDelivered {
                message_id: m.message_id,
                conversation_id: m.conversation_id,
                to: b,
                at: Timestamp::from_millis(2_000),
            }),
        );
        assert_eq!(
            kinds(&project(&e)),
            vec![
                ("delivered", Some(a), Rule::EarliestWins),
                ("feed", Some(a), Rule::InsertOnce),
            ]
        );
    }

    #[test]
    fn given_a_read_then_the_marker_changes_and_both_participants_hear() {
        let (a, b) = (UserId::new(), UserId::new());
        let m = sent(a, b);
        let e = recorded(
            3,
            Event::ConversationRead(ConversationRead {
                conversation_id: m.conversation_id,
                reader: b,
                up_to: m.message_id,
                at: Timestamp::from_millis(3_000),
            }),
        );
        assert_eq!(
            kinds(&project(&e)),
            vec![
                ("marker", Some(b), Rule::FurthestWins),
                ("feed", Some(a), Rule::InsertOnce),
                ("feed", Some(b), Rule::InsertOnce),
            ]
        );
    }

    #[test]
    fn given_a_registration_then_the_directory_has_the_user_and_no_feed_changes() {
        let id = UserId::new();
        let e = recorded(
            4,
            Event::UserRegistered(UserRegistered {
                user: PublicUser {
                    id,
                    username: parley_domain::Username::from_trusted("alice".into()),
                    display_name: parley_domain::DisplayName::from_trusted("Alice".into()),
                    created_at: Timestamp::from_millis(1),
                },
            }),
        );
        assert_eq!(
            kinds(&project(&e)),
            vec![("user", Some(id), Rule::InsertOnce)]
        );
    }

    #[test]
    fn given_an_event_that_contradicts_itself_then_nothing_changes() {
        let (a, b, c) = (UserId::new(), UserId::new(), UserId::new());
        let mut misfiled = sent(a, b);
        misfiled.conversation_id = ConversationId::between(a, c);
        assert!(project(&recorded(5, Event::MessageSent(misfiled))).is_empty());
        let to_self = sent(a, a);
        assert!(project(&recorded(6, Event::MessageSent(to_self))).is_empty());
        let m = sent(a, b);
        let outsider = Event::ConversationRead(ConversationRead {
            conversation_id: m.conversation_id,
            reader: c,
            up_to: m.message_id,
            at: Timestamp::from_millis(1),
        });
        assert!(project(&recorded(7, outsider)).is_empty());
        let stray = Event::MessageDelivered(MessageDelivered {
            message_id: m.message_id,
            conversation_id: m.conversation_id,
            to: c,
            at: Timestamp::from_millis(1),
        });
        assert!(project(&recorded(8, stray)).is_empty());
    }
}

//! The read models in memory: [`Change`]s applied by their [`Rule`]s, and
//! the answers the read ports give. No store runs this; it is the
//! reference both stores are held to (the store contract suite asks each
//! adapter what it asks this), and where the rules are shown to converge.

use std::collections::{BTreeMap, BTreeSet};

use parley_domain::{
    events::MessageSent,
    ports::{InboxEntry, InboxReader, SyncFeed, TimelineReader, UserStore},
    ConversationId, LogPosition, Message, MessageId, MessageRef, PublicUser, ReadMarkers,
    RecordedEvent, StoreError, Timestamp, UserId,
};

use crate::changes::{project, Change};

/// Everything the read models hold, keyed as the changes are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    messages: BTreeMap<(ConversationId, MessageId), (MessageSent, LogPosition)>,
    delivered: BTreeMap<(ConversationId, MessageId), Timestamp>,
    markers: BTreeMap<(ConversationId, UserId), (MessageId, Timestamp)>,
    inbox: BTreeMap<(UserId, ConversationId), (UserId, MessageSent)>,
    unread: BTreeSet<(UserId, ConversationId, MessageId)>,
    feed: BTreeMap<(UserId, u32, i64), RecordedEvent>,
    users: BTreeMap<UserId, PublicUser>,
}

impl Model {
    /// Projects `events` in the order given.
    pub fn of(events: &[RecordedEvent]) -> Self {
        let mut m = Self::default();
        for e in events {
            m.apply_event(e);
        }
        m
    }

    pub fn apply_event(&mut self, e: &RecordedEvent) {
        for c in project(e) {
            self.apply(&c);
        }
    }

    /// Merges one change by its rule.
    pub fn apply(&mut self, change: &Change<'_>) {
        match *change {
            Change::Message { sent, position } => {
                self.messages
                    .entry((sent.conversation_id, sent.message_id))
                    .or_insert_with(|| (sent.clone(), position));
            }
            Change::Delivered { delivery, .. } => {
                let key = (delivery.conversation_id, delivery.message_id);
                let at = self.delivered.entry(key).or_insert(delivery.at);
                *at = (*at).min(delivery.at);
            }
            Change::Marker { read, .. } => {
                let key = (read.conversation_id, read.reader);
                let marker = self.markers.entry(key).or_insert((read.up_to, read.at));
                *marker = (*marker).max((read.up_to, read.at));
            }
            Change::Inbox { owner, peer, last } => {
                let entry = self
                    .inbox
                    .entry((owner, last.conversation_id))
                    .or_insert_with(|| (peer, last.clone()));
                if last.message_id > entry.1.message_id {
                    *entry = (peer, last.clone());
                }
            }
            Change::Unread { owner, message } => {
                self.unread
                    .insert((owner, message.conversation_id, message.message_id));
            }
            Change::User { user } => {
                self.users.entry(user.id).or_insert_with(|| user.clone());
            }
            Change::Feed { owner, event } => {
                let p = event.position;
                self.feed
                    .entry((owner, p.partition, p.offset))
                    .or_insert_with(|| event.clone());
            }
        }
    }

    fn markers_of(&self, conversation: ConversationId) -> ReadMarkers {
        let mut out = ReadMarkers::default();
        let (a, b) = conversation.participants();
        for reader in [a, b] {
            if let Some((up_to, at)) = self.markers.get(&(conversation, reader)) {
                out.insert(reader, *up_to, *at);
            }
        }
        out
    }

    /// A message as readers see it, with its receipts.
    fn view(&self, sent: &MessageSent, markers: &ReadMarkers) -> Message {
        let mut m = sent.to_message();
        m.delivered_at = self
            .delivered
            .get(&(sent.conversation_id, sent.message_id))
            .copied();
        markers.stamp(&mut m);
        m
    }

    /// `TimelineReader::page`: at most `limit` messages older than
    /// `before`, newest first.
    pub fn page(
        &self,
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: usize,
    ) -> Vec<Message> {
        let markers = self.markers_of(conversation);
        let lo = (conversation, MessageId::floor_of(Timestamp::from_millis(0)));
        self.messages
            .range(lo..)
            .take_while(|((c, _), _)| *c == conversation)
            .filter(|((_, id), _)| before.is_none_or(|b| *id < b))
            .map(|(_, (sent, _))| self.view(sent, &markers))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .take(limit)
            .collect()
    }

    /// `TimelineReader::message_of`: a message `user` sent or received.
    pub fn message_of(&self, user: UserId, id: MessageId) -> Option<MessageRef> {
        self.messages
            .iter()
            .find(|((_, m), (sent, _))| *m == id && (sent.from == user || sent.to == user))
            .map(|(_, (sent, _))| MessageRef {
                id: sent.message_id,
                conversation_id: sent.conversation_id,
                from: sent.from,
                to: sent.to,
            })
    }

    /// `InboxReader::inbox`: newest activity first, with unread counts.
    pub fn inbox(&self, user: UserId, limit: usize) -> Vec<InboxEntry> {
        let mut out: Vec<InboxEntry> = self
            .inbox
            .iter()
            .filter(|((owner, _), _)| *owner == user)
            .map(|((_, conversation), (peer, last))| {
                let read_to = self.markers.get(&(*conversation, user)).map(|m| m.0);
                let unread = self
                    .unread
                    .iter()
                    .filter(|(o, c, id)| {
                        *o == user && c == conversation && read_to.is_none_or(|r| *id > r)
                    })
                    .count();
                InboxEntry {
                    conversation_id: *conversation,
                    peer: *peer,
                    last_message: self.view(last, &self.markers_of(*conversation)),
                    unread_count: unread as u64,
                }
            })
            .collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.last_message.id));
        out.truncate(limit);
        out
    }

    /// `UserStore::by_id`, as far as the log tells it.
    pub fn user(&self, id: UserId) -> Option<&PublicUser> {
        self.users.get(&id)
    }

    /// `SyncFeed::user_events`: `user`'s events in `partition` with an
    /// offset in `(after, upto]`, oldest first, at most `limit`.
    pub fn feed(
        &self,
        user: UserId,
        partition: u32,
        after: Option<i64>,
        upto: i64,
        limit: usize,
    ) -> Vec<RecordedEvent> {
        let from = after.map_or(i64::MIN, |a| a.saturating_add(1));
        if from > upto {
            return Vec::new();
        }
        self.feed
            .range((user, partition, from)..=(user, partition, upto))
            .map(|(_, e)| e.clone())
            .take(limit)
            .collect()
    }
}

/// A store's read ports, as [`Model::mismatches`] asks them.
pub struct Readers<'a> {
    pub timelines: &'a dyn TimelineReader,
    pub inboxes: &'a dyn InboxReader,
    pub feed: &'a dyn SyncFeed,
    pub users: &'a dyn UserStore,
}

impl Model {
    /// Every answer `store` gives that differs from this model's, for
    /// `users`: their inboxes, their feeds (log partition 0, up to
    /// `upto`), every message looked up by each of them, and every page of
    /// `page` messages of every conversation, walked by cursor; and the
    /// directory entry of every user the log registered. Empty when the
    /// store holds what the rules say the log makes.
    pub async fn mismatches(
        &self,
        store: &Readers<'_>,
        users: &[UserId],
        page: usize,
        upto: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut differ = |what: String, same: bool| {
            if !same {
                out.push(what);
            }
        };
        for &user in users {
            let (got, want) = (
                store.inboxes.inbox(user, 1000).await?,
                self.inbox(user, 1000),
            );
            differ(
                format!("inbox of {user}: {got:?}, not {want:?}"),
                got == want,
            );
            let got = store.feed.user_events(user, 0, None, upto, 1000).await?;
            let want = self.feed(user, 0, None, upto, 1000);
            differ(
                format!("feed of {user}: {got:?}, not {want:?}"),
                got == want,
            );
            for &(_, id) in self.messages.keys() {
                let (got, want) = (
                    store.timelines.message_of(user, id).await?,
                    self.message_of(user, id),
                );
                differ(
                    format!("message {id} for {user}: {got:?}, not {want:?}"),
                    got == want,
                );
            }
        }
        let conversations: BTreeSet<ConversationId> =
            self.messages.keys().map(|(c, _)| *c).collect();
        for c in conversations {
            let mut before = None;
            loop {
                let got = store.timelines.page(c, before, page).await?;
                let want = self.page(c, before, page);
                differ(
                    format!("page of {c:?} before {before:?}: {got:?}, not {want:?}"),
                    got == want,
                );
                match want.last() {
                    Some(last) if want.len() == page => before = Some(last.id),
                    _ => break,
                }
            }
        }
        for (id, want) in &self.users {
            let got = store.users.by_id(*id).await?;
            differ(
                format!("user {id}: {got:?}, not {want:?}"),
                got.as_ref() == Some(want),
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;

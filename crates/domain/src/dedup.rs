//! Appending once per de-duplication key on a log that cannot check the
//! key in the same write as the append. (The embedded log checks it inside
//! its own transaction and needs none of this.)

use std::sync::Arc;

use async_trait::async_trait;

use crate::{
    events::{Event, LogPosition, RecordedEvent, Stamp},
    ports::{Appended, Claim, DedupKeys, EncodedAppender, EventAppender, PendingEvent},
    StoreError,
};

/// An [`EventAppender`] whose keyed events are claimed in [`DedupKeys`]
/// before they are appended. The claim stores the encoded event, so a
/// retry after any crash appends that same event (same id) rather than a
/// second one; readers drop the copy by its id.
pub struct ClaimedAppender<L> {
    log: Arc<L>,
    keys: Arc<dyn DedupKeys>,
}

impl<L> ClaimedAppender<L> {
    pub fn new(log: Arc<L>, keys: Arc<dyn DedupKeys>) -> Self {
        Self { log, keys }
    }
}

impl<L: EncodedAppender> ClaimedAppender<L> {
    #[tracing::instrument(name = "log.append_once", skip_all)]
    async fn append_once(
        &self,
        key: &str,
        build: Box<dyn FnOnce(Stamp) -> Event + Send>,
    ) -> Result<Appended, StoreError> {
        // Counted per append asked for, as the embedded log counts them.
        metrics::counter!("parley_log_appends_total").increment(1);
        let stamp = Stamp::now();
        let event = build(stamp);
        let payload = event.encode(stamp).map_err(StoreError::unexpected)?;
        // What the key holds: this event, or the one claimed first and
        // where it landed, if its appender lived to see that.
        let (won, stamp, event, payload, appended) = match self.keys.claim(key, &payload).await? {
            Claim::Won => (true, stamp, event, payload, None),
            Claim::Taken { payload, appended } => {
                let (stamp, event) = Event::decode(&payload)
                    .map_err(StoreError::unexpected)?
                    .ok_or_else(|| StoreError::unexpected_msg("claimed event of unknown type"))?;
                (false, stamp, event, payload, appended)
            }
        };
        let position = match appended {
            Some(p) => p,
            None => {
                let p = self
                    .log
                    .append_encoded(&event.partition_key(), &payload)
                    .await?;
                self.settle(key, p).await;
                p
            }
        };
        let recorded = RecordedEvent::stamped(position, stamp, event);
        Ok(if won {
            Appended::New(recorded)
        } else {
            Appended::Duplicate(recorded)
        })
    }

    /// A failed settle only costs a retry one extra (idempotent) append.
    async fn settle(&self, key: &str, at: LogPosition) {
        if let Err(e) = self.keys.settle(key, at).await {
            tracing::warn!(error = %e.chain(), key, "could not settle a dedup claim");
        }
    }
}

#[async_trait]
impl<L: EventAppender + EncodedAppender + 'static> EventAppender for ClaimedAppender<L> {
    async fn append(&self, pending: PendingEvent) -> Result<Appended, StoreError> {
        match pending.dedup {
            Some(key) => self.append_once(&key, pending.build).await,
            None => self.log.append(pending).await,
        }
    }
}

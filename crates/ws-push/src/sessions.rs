//! Sockets whose session has ended: a logout on any instance, or a token
//! past its expiry. Each process already keeps the logouts in memory
//! (refreshed about every second), so one pass over this instance's
//! sockets costs a lookup each, not a store read.

use std::{collections::HashSet, sync::Arc, time::Duration};

use parley_domain::Timestamp;
use parley_http_kit::AuthState;
use tokio_util::sync::CancellationToken;

use crate::Hub;

/// How often the sockets' sessions are checked.
const EVERY: Duration = Duration::from_secs(1);

pub async fn watch(hub: Arc<Hub>, auth: Arc<AuthState>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let sessions = hub.sessions();
        let now = Timestamp::now().millis() / 1000;
        let mut ended = HashSet::new();
        for s in &sessions {
            let over = match auth.revocations.is_revoked(s).await {
                Ok(revoked) => revoked || s.expires_at < now,
                // The store cannot say now: the next pass asks again.
                Err(e) => {
                    tracing::debug!(error = %e.chain(), "cannot check a socket's session");
                    s.expires_at < now
                }
            };
            if over {
                ended.insert(s.session_id.as_str());
            }
        }
        if !ended.is_empty() {
            metrics::counter!("parley_ws_sessions_ended_total").increment(ended.len() as u64);
            hub.end_sessions(&ended);
        }
    }
}

//! The log tail that feeds this instance's hub.

use std::{sync::Arc, time::Duration};

use parley_domain::{
    ports::{EventLog, StartFrom},
    retry::Backoff,
};
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;

const BATCH: usize = 1000;
const POLL_WAIT: Duration = Duration::from_millis(500);

pub async fn run(log: Arc<dyn EventLog>, hub: Arc<Hub>, shutdown: CancellationToken) {
    // Each instance reads everything under a group of its own; a backlog
    // older than the hub's start comes from the store.
    let group = format!("ws-push-{}", uuid::Uuid::now_v7().simple());
    let mut backoff = Backoff::default();
    while !shutdown.is_cancelled() {
        // Start (and after an outage, continue) where dispatch stands, so
        // connected sockets see no gap.
        let start = StartFrom::After((*hub.dispatched()).clone());
        let sub = tokio::select! {
            s = log.subscribe(&group, start) => s,
            _ = shutdown.cancelled() => return,
        };
        match sub {
            Ok(mut consumer) => {
                backoff.reset();
                loop {
                    let batch = tokio::select! {
                        b = consumer.poll(BATCH, POLL_WAIT) => b,
                        _ = shutdown.cancelled() => return,
                    };
                    match batch {
                        Ok(events) => hub.dispatch(&events),
                        Err(e) => {
                            tracing::warn!(error = %e.chain(), "ws-push lost the log; resubscribing");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e.chain(), "ws-push cannot subscribe yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

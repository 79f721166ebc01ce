//! Password hashing on a fixed set of threads with a short queue.
//!
//! One argon2 hash takes ~19 MiB and tens of milliseconds of a core. Run
//! as they come, a flood of logins takes memory without bound and every
//! core from everyone else's requests; here at most `threads` run at once,
//! at most `queue` wait, and the rest are told 503 + `Retry-After` at once.

use std::{
    sync::{mpsc, Arc, Mutex},
    time::Duration,
};

use parley_http_kit::Problem;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// How long a client turned away is asked to wait.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

pub struct HashPool {
    jobs: mpsc::SyncSender<Job>,
}

impl HashPool {
    /// `threads` 0 means half the cores (at least one), leaving the rest
    /// to everything else.
    pub fn new(threads: usize, queue: usize) -> std::io::Result<Self> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
            n => n,
        };
        let (tx, rx) = mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("parley-hash-{i}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next job.
                    let job = match rx.lock() {
                        Ok(r) => r.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        // Every sender is gone: the server stopped.
                        Err(_) => return,
                    }
                })?;
        }
        Ok(Self { jobs: tx })
    }

    /// Runs `f` on a hashing thread, or answers 503 at once when the queue
    /// is full. A job whose client went away before its turn is skipped.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Problem> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            if !tx.is_closed() {
                let _ = tx.send(f());
            }
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => {
                metrics::counter!("parley_password_hashing_refused_total").increment(1);
                return Err(Problem::busy(
                    "too many password checks at once; retry shortly",
                    BUSY_RETRY_AFTER,
                ));
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                tracing::error!("the password hashing threads are gone");
                return Err(Problem::internal());
            }
        }
        rx.await.map_err(|_| {
            tracing::error!("a password hashing job was dropped");
            Problem::internal()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_the_threads_and_the_queue_callers_are_turned_away() {
        let pool = Arc::new(HashPool::new(1, 2).unwrap());
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut running = Vec::new();
        for i in 0..3 {
            let (pool, gate, started_tx) = (pool.clone(), gate.clone(), started_tx.clone());
            running.push(tokio::spawn(async move {
                pool.run(move || {
                    let _ = started_tx.send(());
                    gate.lock().unwrap().recv().is_ok()
                })
                .await
            }));
            if i == 0 {
                // The first is on the thread before the others queue.
                started.recv().await.unwrap();
            } else {
                tokio::task::yield_now().await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        // One runs, two wait: the fourth is refused at once.
        let refused = pool.run(|| true).await.unwrap_err();
        assert_eq!(refused.status, 503);
        assert_eq!(refused.retry_after, Some(1));
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        for r in running {
            assert!(r.await.unwrap().unwrap());
        }
        assert!(pool.run(|| true).await.unwrap());
    }
}

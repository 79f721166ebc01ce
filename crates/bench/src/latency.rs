//! Send → push latency at a fixed, open-loop rate: each send is scheduled
//! at `start + i / rate` whether or not earlier ones were answered, and its
//! latency is measured from that *intended* time, so a stalled server shows
//! up as latency instead of as a slower send rate (no coordinated omission).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message as Ws;

use crate::{
    client::{Socket, Target, User},
    report::{histogram, Progress},
};

/// One rate step's numbers.
pub struct Step {
    pub rate: f64,
    pub offered: u64,
    pub accepted: u64,
    pub statuses: BTreeMap<u16, u64>,
    /// Send → push at every recipient socket, after warm-up (µs).
    pub push: Histogram<u64>,
    /// HTTP send round trip (µs).
    pub http: Histogram<u64>,
    /// Accepted sends some recipient socket never got.
    pub drops: u64,
    /// Frames a socket got twice.
    pub duplicates: u64,
    pub achieved_rate: f64,
    /// The accepted send intended last.
    pub last: Option<Last>,
}

/// A send, and when its answer came.
pub struct Last {
    pub from: usize,
    pub to: usize,
    pub id: String,
    /// When it was meant to go, since the listeners' epoch (µs).
    pub intended_us: u64,
    pub accepted_at: Instant,
}

/// One open-loop step.
pub struct StepPlan {
    /// Tags the messages, so late pushes of one step never count in another.
    pub step: u32,
    pub rate: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub grace: Duration,
}

/// What the senders of one step gathered.
struct Sent {
    statuses: BTreeMap<u16, u64>,
    /// (message id, recipient sockets) of each accepted send.
    accepted: Vec<(u128, u32)>,
    /// HTTP round trips.
    http: Histogram<u64>,
    last: Option<Last>,
}

impl Default for Sent {
    fn default() -> Self {
        Self {
            statuses: BTreeMap::new(),
            accepted: Vec::new(),
            http: histogram(),
            last: None,
        }
    }
}

#[derive(Default)]
struct Stats {
    push: HashMap<u32, Histogram<u64>>,
    /// (step, message id) → recipient sockets that got it.
    received: HashMap<(u32, u128), u32>,
    seen: HashSet<(u32, u128)>,
    duplicates: u64,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow)]
    message: Option<Pushed<'a>>,
}

#[derive(Deserialize)]
struct Pushed<'a> {
    id: &'a str,
    to: &'a str,
    body: &'a str,
}

/// Sockets that read pushes and record their latency until dropped.
pub struct Listeners {
    epoch: Instant,
    stats: Arc<Mutex<Stats>>,
    /// Sockets per user, to know how many pushes a message should cause.
    per_user: Vec<u32>,
    warmup_us: Arc<Mutex<HashMap<u32, u64>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Listeners {
    pub fn start(users: &[User], sockets: Vec<(usize, Socket)>) -> Self {
        let epoch = Instant::now();
        let stats: Arc<Mutex<Stats>> = Arc::default();
        let warmup_us: Arc<Mutex<HashMap<u32, u64>>> = Arc::default();
        let mut per_user = vec![0u32; users.len()];
        let mut tasks = Vec::new();
        for (n, (u, ws)) in sockets.into_iter().enumerate() {
            per_user[u] += 1;
            let me = users[u].id.clone();
            let (stats, warmup_us) = (stats.clone(), warmup_us.clone());
            tasks.push(tokio::spawn(listen(
                ws, n as u32, me, epoch, stats, warmup_us,
            )));
        }
        Self {
            epoch,
            stats,
            per_user,
            warmup_us,
            tasks,
        }
    }

    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }

    /// Sends at `rate`/s for `duration`, then waits up to `grace` for the
    /// pushes. Samples from the first `warmup` are left out of the
    /// histograms (not out of the drop count).
    pub async fn step(&self, target: &Target, users: &Arc<Vec<User>>, plan: StepPlan) -> Step {
        let StepPlan {
            step,
            rate,
            duration,
            warmup,
            grace,
        } = plan;
        let start_us = self.epoch.elapsed().as_micros() as u64;
        // One rule for both histograms: a sample counts when its intended
        // send time is at or past this.
        let counted_from = start_us + warmup.as_micros() as u64;
        if let Ok(mut w) = self.warmup_us.lock() {
            w.insert(step, counted_from);
        }
        let total = (rate * duration.as_secs_f64()).round() as u64;
        let outcome: Arc<Mutex<Sent>> = Arc::default();
        let mut inflight = Vec::with_capacity(total as usize);
        let mut progress = Progress::default();
        let started = Instant::now();
        for i in 0..total {
            let intended_us = start_us + (i as f64 * 1e6 / rate) as u64;
            let at = self.epoch + Duration::from_micros(intended_us);
            tokio::time::sleep_until(at.into()).await;
            let from = fastrand::usize(..users.len());
            let to = (from + 1 + fastrand::usize(..users.len() - 1)) % users.len();
            let expected = self.per_user[to];
            let (target, users, outcome) = (target.clone(), users.clone(), outcome.clone());
            let (epoch, counted) = (self.epoch, intended_us >= counted_from);
            inflight.push(tokio::spawn(async move {
                let body = format!("s{step}:{intended_us}");
                let (status, id) = target.send(&users[from], &users[to], &body, true).await;
                let answered = Instant::now();
                // From the intended send time, like the pushes, so a late
                // schedule shows up here rather than hiding.
                let took =
                    (answered.duration_since(epoch).as_micros() as u64).saturating_sub(intended_us);
                if let Ok(mut o) = outcome.lock() {
                    *o.statuses.entry(status).or_default() += 1;
                    if counted {
                        let _ = o.http.record(took.max(1));
                    }
                    if let Some((uuid, id)) =
                        id.and_then(|s| Some((uuid::Uuid::parse_str(&s).ok()?, s)))
                    {
                        o.accepted.push((uuid.as_u128(), expected));
                        if o.last.as_ref().is_none_or(|l| l.intended_us < intended_us) {
                            o.last = Some(Last {
                                from,
                                to,
                                id,
                                intended_us,
                                accepted_at: answered,
                            });
                        }
                    }
                }
            }));
            progress.tick(|| format!("step {step}: {i}/{total} sends at {rate:.0}/s"));
        }
        for t in inflight {
            let _ = t.await;
        }
        let achieved_rate = total as f64 / started.elapsed().as_secs_f64();
        let Sent {
            statuses,
            accepted,
            http,
            last,
        } = match Arc::try_unwrap(outcome) {
            Ok(m) => m.into_inner().unwrap_or_else(|e| e.into_inner()),
            Err(_) => Sent::default(),
        };
        // Wait until every accepted send reached all its recipient sockets,
        // or the grace period ends.
        let deadline = Instant::now() + grace;
        let drops = loop {
            let missing = self.stats.lock().map_or(accepted.len() as u64, |s| {
                accepted
                    .iter()
                    .filter(|(id, want)| s.received.get(&(step, *id)).copied().unwrap_or(0) < *want)
                    .count() as u64
            });
            if missing == 0 || Instant::now() >= deadline {
                break missing;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (push, duplicates) = self.stats.lock().map_or((histogram(), 0), |mut s| {
            (
                s.push.remove(&step).unwrap_or_else(histogram),
                std::mem::take(&mut s.duplicates),
            )
        });
        Step {
            rate,
            offered: total,
            accepted: accepted.len() as u64,
            statuses,
            push,
            http,
            drops,
            duplicates,
            achieved_rate,
            last,
        }
    }
}

async fn listen(
    mut ws: Socket,
    n: u32,
    me: String,
    epoch: Instant,
    stats: Arc<Mutex<Stats>>,
    warmup_us: Arc<Mutex<HashMap<u32, u64>>>,
) {
    while let Some(Ok(frame)) = ws.next().await {
        let Ws::Text(text) = frame else { continue };
        let now_us = epoch.elapsed().as_micros() as u64;
        let Ok(f) = serde_json::from_str::<Frame<'_>>(&text) else {
            continue;
        };
        let Some(m) = f.message.filter(|_| f.kind == "message") else {
            continue;
        };
        if m.to != me {
            continue; // the sender's own echo
        }
        let Some((step, intended)) = m
            .body
            .strip_prefix('s')
            .and_then(|b| b.split_once(':'))
            .and_then(|(s, t)| Some((s.parse::<u32>().ok()?, t.parse::<u64>().ok()?)))
        else {
            continue;
        };
        let Ok(id) = uuid::Uuid::parse_str(m.id) else {
            continue;
        };
        let id = id.as_u128();
        let counted = warmup_us
            .lock()
            .ok()
            .and_then(|w| w.get(&step).copied())
            .is_some_and(|from| intended >= from);
        if let Ok(mut s) = stats.lock() {
            if !s.seen.insert((n, id)) {
                s.duplicates += 1;
                continue;
            }
            *s.received.entry((step, id)).or_default() += 1;
            if counted {
                let h = s.push.entry(step).or_insert_with(histogram);
                let _ = h.record(now_us.saturating_sub(intended).max(1));
            }
        }
    }
}

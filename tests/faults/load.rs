//! The clients of a run: every user sends to its peer and holds a socket
//! that resumes from the last `seq` it processed, and every one records
//! what it saw. A probe reads one conversation's history all along, to
//! time how far the read models fall behind.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::StreamExt;
use reqwest::header;
use serde_json::{json, Value};
use tokio::{task::JoinHandle, time::Instant};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message as Ws};
use tokio_util::sync::CancellationToken;

use crate::{
    checker::{History, Seen, SendOp},
    helpers::PASSWORD,
    roles::{Endpoints, Parley},
};

pub struct User {
    pub id: String,
    pub token: String,
}

/// A send attempt that was not a 202: when, and what came back.
#[derive(Clone, Debug)]
pub struct Failure {
    /// When the attempt was made, and when its answer (or error) came.
    pub tried: Instant,
    pub answered: Instant,
    pub what: String,
}

#[derive(Default)]
struct Shared {
    sends: Vec<(SendOp, Option<Instant>)>,
    failures: Vec<Failure>,
    streams: HashMap<usize, Vec<Seen>>,
    violations: Vec<String>,
    /// When the probe first saw each message of conversation 0.
    visible: HashMap<String, Instant>,
}

type Record = Arc<Mutex<Shared>>;

fn with<T>(r: &Record, f: impl FnOnce(&mut Shared) -> T) -> T {
    f(&mut r.lock().unwrap_or_else(|e| e.into_inner()))
}

pub struct Load {
    users: Vec<Arc<User>>,
    record: Record,
    stop_sending: CancellationToken,
    stop_sockets: CancellationToken,
    senders: Vec<JoinHandle<()>>,
    sockets: Vec<JoinHandle<()>>,
    probe: JoinHandle<()>,
    queries: Endpoints,
    http: reqwest::Client,
}

/// What a run measured, besides the verdict.
pub struct Timings {
    /// From the start of the first send attempt that was not answered 202
    /// to the answer of the last (zero if every attempt was).
    pub unavailable: Duration,
    /// The longest time no client got a 202 at all: a stall shows here
    /// even when it ended without a 503.
    pub longest_gap: Duration,
    /// Send attempts not answered 202, by what came back.
    pub failed_attempts: std::collections::BTreeMap<String, usize>,
    /// The longest a 202'd message of the probed conversation took to
    /// show in its history, and how long after the load stopped every
    /// history and every socket held every 202.
    pub read_lag: Duration,
    pub settle: Duration,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_else(|e| panic!("http client: {e}"))
}

async fn register(http: &reqwest::Client, commands: &Endpoints, name: &str) -> User {
    for attempt in 0.. {
        let addr = commands
            .pick(attempt)
            .unwrap_or_else(|| panic!("no command-api"));
        let r = http
            .post(format!("http://{addr}/v1/auth/register"))
            .json(&json!({"username": name, "password": PASSWORD}))
            .send()
            .await;
        if let Ok(r) = r {
            if r.status() == 201 {
                let v: Value = r.json().await.unwrap_or_else(|e| panic!("register: {e}"));
                return User {
                    id: v["user"]["id"].as_str().unwrap_or_default().to_owned(),
                    token: v["token"].as_str().unwrap_or_default().to_owned(),
                };
            }
            assert!(attempt < 50, "register {name}: {}", r.status());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    unreachable!()
}

impl Load {
    /// Registers `pairs` pairs, connects every socket, then starts every
    /// sender: one message per `pace` each.
    pub async fn start(parley: &Parley, pairs: usize, pace: Duration) -> Load {
        let http = client();
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let mut users = Vec::new();
        for i in 0..pairs * 2 {
            users.push(Arc::new(
                register(&http, &parley.commands, &format!("f{tag}_{i}")).await,
            ));
        }
        let record: Record = Arc::default();
        let stop_sending = CancellationToken::new();
        let stop_sockets = CancellationToken::new();
        let mut sockets = Vec::new();
        for (i, u) in users.iter().enumerate() {
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            sockets.push(tokio::spawn(socket(
                i,
                u.clone(),
                parley.pushes.clone(),
                record.clone(),
                stop_sockets.clone(),
                ready_tx,
            )));
            tokio::time::timeout(Duration::from_secs(30), ready_rx)
                .await
                .unwrap_or_else(|_| panic!("user {i}'s socket never synced"))
                .unwrap_or_else(|_| panic!("user {i}'s socket task ended"));
        }
        let senders = users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                tokio::spawn(sender(
                    i,
                    u.clone(),
                    users[i ^ 1].id.clone(),
                    parley.commands.clone(),
                    record.clone(),
                    stop_sending.clone(),
                    pace,
                ))
            })
            .collect();
        let probe = tokio::spawn(probe(
            users[0].clone(),
            users[1].id.clone(),
            parley.queries.clone(),
            record.clone(),
            stop_sockets.clone(),
        ));
        Load {
            users,
            record,
            stop_sending,
            stop_sockets,
            senders,
            sockets,
            probe,
            queries: parley.queries.clone(),
            http,
        }
    }

    /// 202s so far.
    pub fn accepted(&self) -> usize {
        with(&self.record, |s| {
            s.sends.iter().filter(|(o, _)| o.accepted.is_some()).count()
        })
    }

    /// Stops the senders (each finishes the send it is retrying), waits
    /// until every 202 is in every history and every participant's sync,
    /// then stops the sockets and reads the histories.
    pub async fn finish(self) -> (History, Timings) {
        self.stop_sending.cancel();
        for s in self.senders {
            s.await.unwrap_or_else(|e| panic!("sender task: {e}"));
        }
        let stopped = Instant::now();
        let deadline = stopped + Duration::from_secs(120);
        let mut histories;
        loop {
            histories = Vec::new();
            for k in 0..self.users.len() / 2 {
                histories.push(
                    full_history(
                        &self.http,
                        &self.queries,
                        &self.users[2 * k],
                        &self.users[2 * k + 1],
                    )
                    .await,
                );
            }
            let complete = with(&self.record, |s| {
                s.sends.iter().all(|(op, _)| {
                    let Some(id) = &op.accepted else { return true };
                    let k = op.from / 2;
                    let in_history = histories[k].iter().any(|m: &Seen| &m.id == id);
                    let synced = [2 * k, 2 * k + 1].iter().all(|u| {
                        s.streams
                            .get(u)
                            .is_some_and(|st| st.iter().any(|m| &m.id == id))
                    });
                    in_history && synced
                })
            });
            if complete || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let settle = stopped.elapsed();
        // A moment more, for any duplicate still on its way.
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.stop_sockets.cancel();
        for s in self.sockets {
            s.await.unwrap_or_else(|e| panic!("socket task: {e}"));
        }
        self.probe
            .await
            .unwrap_or_else(|e| panic!("probe task: {e}"));
        let users = self.users.len();
        let shared = std::mem::take(&mut *self.record.lock().unwrap_or_else(|e| e.into_inner()));
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        for f in &shared.failures {
            let kind = f.what.split(':').next().unwrap_or_default().to_owned();
            *kinds.entry(kind).or_default() += 1;
        }
        let read_lag = shared
            .sends
            .iter()
            .filter(|(op, _)| op.from < 2)
            .filter_map(|(op, at)| {
                let seen = shared.visible.get(op.accepted.as_ref()?)?;
                Some(seen.saturating_duration_since((*at)?))
            })
            .max()
            .unwrap_or_default();
        let mut accepted_at: Vec<Instant> = shared.sends.iter().filter_map(|(_, at)| *at).collect();
        accepted_at.sort();
        let longest_gap = accepted_at
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        let unavailable = match (
            shared.failures.iter().map(|f| f.tried).min(),
            shared.failures.iter().map(|f| f.answered).max(),
        ) {
            (Some(first), Some(last)) => last - first,
            _ => Duration::ZERO,
        };
        let timings = Timings {
            unavailable,
            failed_attempts: kinds,
            longest_gap,
            read_lag,
            settle,
        };
        let mut streams = shared.streams;
        let history = History {
            sends: shared.sends.into_iter().map(|(op, _)| op).collect(),
            streams: (0..users)
                .map(|u| streams.remove(&u).unwrap_or_default())
                .collect(),
            histories,
            violations: shared.violations,
        };
        (history, timings)
    }
}

/// Sends one message after another to `to`, each retried with its
/// client_id through 503s, timeouts and dead instances until a 202 (or,
/// once the run is stopping, for at most 60 s).
async fn sender(
    me: usize,
    user: Arc<User>,
    to: String,
    commands: Endpoints,
    record: Record,
    stop: CancellationToken,
    pace: Duration,
) {
    let http = client();
    let mut which = me;
    for n in 0.. {
        if stop.is_cancelled() {
            return;
        }
        let op_body = format!("u{me}-{n}");
        let client_id = uuid::Uuid::new_v4().to_string();
        let mut accepted = None;
        let mut retries = 0;
        let mut gave_up_at: Option<Instant> = None;
        while accepted.is_none() {
            if stop.is_cancelled() {
                let since = *gave_up_at.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(60) {
                    break;
                }
            }
            let Some(addr) = commands.pick(which) else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let tried = Instant::now();
            let r = http
                .post(format!("http://{addr}/v1/messages"))
                .bearer_auth(&user.token)
                .json(&json!({"to": to, "body": op_body, "client_id": client_id}))
                .send()
                .await;
            let failure = match r {
                Ok(r) if r.status() == 202 => {
                    let v: Value = r.json().await.unwrap_or_default();
                    match v["message"]["id"].as_str() {
                        Some(id) => {
                            accepted = Some((id.to_owned(), Instant::now()));
                            continue;
                        }
                        None => "202 without a message id".to_owned(),
                    }
                }
                Ok(r) => {
                    let status = r.status();
                    let retry_after = r
                        .headers()
                        .get(header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                    if status != 503 {
                        let text = r.text().await.unwrap_or_default();
                        with(&record, |s| {
                            s.violations
                                .push(format!("user {me}: send answered {status}: {text}"))
                        });
                    } else if retry_after.is_none() {
                        with(&record, |s| {
                            s.violations
                                .push(format!("user {me}: 503 without Retry-After"))
                        });
                    }
                    format!("{status}")
                }
                Err(e) => {
                    which += 1;
                    format!("no answer: {e}")
                }
            };
            retries += 1;
            with(&record, |s| {
                s.failures.push(Failure {
                    tried,
                    answered: Instant::now(),
                    what: failure,
                })
            });
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (id, at) = match accepted {
            Some((id, at)) => (Some(id), Some(at)),
            None => (None, None),
        };
        with(&record, |s| {
            s.sends.push((
                SendOp {
                    from: me,
                    client_id,
                    body: op_body,
                    accepted: id,
                    retries,
                },
                at,
            ))
        });
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
    }
}

/// One user's device: a socket to some ws-push, resumed after any drop
/// from the `seq` of the last frame it processed.
async fn socket(
    me: usize,
    user: Arc<User>,
    pushes: Endpoints,
    record: Record,
    stop: CancellationToken,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut since: Option<String> = None;
    let mut which = me;
    while !stop.is_cancelled() {
        let Some(addr) = pushes.pick(which) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        which += 1;
        let url = match &since {
            Some(s) => format!("ws://{addr}/v1/ws?since={s}"),
            None => format!("ws://{addr}/v1/ws"),
        };
        let Ok(mut req) = url.as_str().into_client_request() else {
            panic!("bad socket url {url}");
        };
        let Ok(auth) = format!("Bearer {}", user.token).parse() else {
            panic!("token is not a header value");
        };
        req.headers_mut().insert(header::AUTHORIZATION, auth);
        let Ok(Ok((mut ws, _))) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(req),
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        loop {
            let msg = tokio::select! {
                () = stop.cancelled() => return,
                m = ws.next() => m,
            };
            let text = match msg {
                Some(Ok(Ws::Text(t))) => t,
                Some(Ok(Ws::Close(c))) => {
                    let code = c.map(|c| u16::from(c.code));
                    if code == Some(4409) {
                        with(&record, |s| {
                            s.violations
                                .push(format!("user {me}: since={since:?} refused with 4409"))
                        });
                    }
                    break;
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => break,
            };
            let Ok(v) = serde_json::from_str::<Value>(&text) else {
                with(&record, |s| {
                    s.violations
                        .push(format!("user {me}: frame is not JSON: {text}"))
                });
                continue;
            };
            match v["type"].as_str() {
                Some("ready") => {
                    if let Some(s) = &since {
                        if v["seq"].as_str() != Some(s) {
                            with(&record, |r| {
                                r.violations
                                    .push(format!("user {me}: ready {} after since={s}", v["seq"]))
                            });
                        }
                    }
                }
                Some("synced") => {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
                Some("message") => {
                    let m = &v["message"];
                    let seen = Seen {
                        id: m["id"].as_str().unwrap_or_default().to_owned(),
                        body: m["body"].as_str().unwrap_or_default().to_owned(),
                    };
                    with(&record, |s| s.streams.entry(me).or_default().push(seen));
                }
                Some("error") => with(&record, |s| {
                    s.violations.push(format!("user {me}: error frame {v}"))
                }),
                _ => {}
            }
            if let Some(seq) = v["seq"].as_str() {
                since = Some(seq.to_owned());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the newest page of conversation 0 four times a second and notes
/// when each message first shows.
async fn probe(
    user: Arc<User>,
    peer: String,
    queries: Endpoints,
    record: Record,
    stop: CancellationToken,
) {
    let http = client();
    let mut which = 0;
    while !stop.is_cancelled() {
        if let Some(addr) = queries.pick(which) {
            let r = http
                .get(format!(
                    "http://{addr}/v1/conversations/{peer}/messages?limit=50"
                ))
                .bearer_auth(&user.token)
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 200 => {
                    let v: Value = r.json().await.unwrap_or_default();
                    let now = Instant::now();
                    with(&record, |s| {
                        for m in v["messages"].as_array().into_iter().flatten() {
                            if let Some(id) = m["id"].as_str() {
                                s.visible.entry(id.to_owned()).or_insert(now);
                            }
                        }
                    });
                }
                Ok(_) => {}
                Err(_) => which += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A whole conversation from query-api, oldest first; empty while it
/// cannot be read.
async fn full_history(
    http: &reqwest::Client,
    queries: &Endpoints,
    me: &User,
    peer: &User,
) -> Vec<Seen> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let Some(addr) = queries.pick(0) else {
            return Vec::new();
        };
        let q = match &cursor {
            Some(c) => format!("?limit=200&before={c}"),
            None => "?limit=200".to_owned(),
        };
        let r = http
            .get(format!(
                "http://{addr}/v1/conversations/{}/messages{q}",
                peer.id
            ))
            .bearer_auth(&me.token)
            .send()
            .await;
        let Ok(r) = r else { return Vec::new() };
        if r.status() != 200 {
            return Vec::new();
        }
        let page: Value = r.json().await.unwrap_or_default();
        for m in page["messages"].as_array().into_iter().flatten() {
            all.push(Seen {
                id: m["id"].as_str().unwrap_or_default().to_owned(),
                body: m["body"].as_str().unwrap_or_default().to_owned(),
            });
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    all.reverse();
    all
}

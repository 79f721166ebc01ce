//! The sync storm: sixteen senders write to one recipient through several
//! command-api processes while the recipient's two devices drop their
//! sockets at random moments, often in the middle of a backlog, and come
//! back to a random ws-push instance (one serving backlogs from memory,
//! one only from the store, one from both) with the `seq` of the last
//! frame they processed. Each device must see every message exactly once,
//! each conversation in order, and every read receipt exactly once.
//!
//! The run is random; the seed is printed, and `PARLEY_STORM_SEED`
//! repeats a run.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use futures_util::StreamExt;
use parley::cli::Backend;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as Ws;

use crate::helpers::{migrate, Deployment, Process, TestApp, User};

const SENDERS: usize = 16;
const PER_SENDER: usize = 63;

struct Storm {
    seed: u64,
    recipient: User,
    senders: Vec<User>,
    pushes: Vec<TestApp>,
    commands: Vec<TestApp>,
    /// Set once every send is accepted.
    quiet: AtomicBool,
    /// Set once device 0, the one that marks messages read as they come,
    /// has every message: no read is posted after, so a device that has
    /// everything by then has everything.
    reads_final: AtomicBool,
    /// Read receipts device 0 posted and had accepted: (sender, up_to).
    /// Held while one is being posted.
    reads: tokio::sync::Mutex<Vec<(usize, String)>>,
    reads_posted: AtomicUsize,
}

/// What one device processed, in order.
#[derive(Default)]
struct Seen {
    /// Per sender, the index of each message in the order it arrived.
    messages: HashMap<usize, Vec<usize>>,
    /// The last message id per sender (device 0 marks them read).
    last_id: HashMap<usize, String>,
    read_frames: Vec<String>,
    connections: usize,
    drops_before_synced: usize,
    total: usize,
}

#[tokio::test]
async fn a_recipient_whose_devices_drop_at_random_sees_everything_once_in_order() {
    let seed = std::env::var("PARLEY_STORM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("sync storm seed {seed} (PARLEY_STORM_SEED={seed} repeats this run)");
    let mut d = Deployment::new();
    d.partitions = 12;
    migrate(&d).await;
    let commands_n = match d.backend {
        Backend::Cluster => 3,
        Backend::Embedded => 2,
    };
    let mut processes = Vec::new();
    let mut commands = Vec::new();
    for _ in 0..commands_n {
        let p = Process::spawn(&["serve", "command-api"], &d, &[]).await;
        commands.push(p.client().await);
        processes.push(p);
    }
    processes.push(Process::spawn(&["serve", "projector"], &d, &[]).await);
    let mut pushes = Vec::new();
    for kib in ["65536", "0", "32"] {
        let p = Process::spawn(&["serve", "ws-push"], &d, &["--sync-memory-kib", kib]).await;
        pushes.push(p.client().await);
        processes.push(p);
    }
    let recipient = commands[0].register("rita").await;
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        senders.push(
            commands[i % commands_n]
                .register(&format!("sender{i}"))
                .await,
        );
    }
    let storm = Arc::new(Storm {
        seed,
        recipient,
        senders,
        pushes,
        commands,
        quiet: AtomicBool::new(false),
        reads_final: AtomicBool::new(false),
        reads: tokio::sync::Mutex::new(Vec::new()),
        reads_posted: AtomicUsize::new(0),
    });

    // Each device connects once before the first send, so every message
    // is after the point it starts from.
    let mut devices = Vec::new();
    for device in 0..2 {
        let first = storm.pushes[device].socket(&storm.recipient).await;
        let since = first.last_seq();
        devices.push(tokio::spawn(run_device(storm.clone(), device, since)));
    }
    let sends: Vec<_> = (0..SENDERS)
        .map(|i| {
            let storm = storm.clone();
            tokio::spawn(async move {
                let app = &storm.commands[i % storm.commands.len()];
                for k in 0..PER_SENDER {
                    let body = format!("{i}:{k}");
                    let sent = app.send(&storm.senders[i], &storm.recipient, &body).await;
                    assert_eq!(sent["body"], body.as_str());
                }
            })
        })
        .collect();
    for s in sends {
        s.await.expect("a sender failed");
    }
    storm.quiet.store(true, Ordering::SeqCst);
    let mut outcomes = Vec::new();
    for d in devices {
        outcomes.push(
            tokio::time::timeout(Duration::from_secs(180), d)
                .await
                .unwrap_or_else(|_| panic!("seed {seed}: a device never caught up"))
                .unwrap_or_else(|e| panic!("seed {seed}: a device failed: {e}")),
        );
    }
    let posted = storm.reads.lock().await.clone();
    let sender_of: HashMap<&str, usize> = posted.iter().map(|(i, u)| (u.as_str(), *i)).collect();
    let mut drops_before_synced = 0;
    for (device, seen) in outcomes.iter().enumerate() {
        for i in 0..SENDERS {
            let got = seen.messages.get(&i).cloned().unwrap_or_default();
            let want: Vec<usize> = (0..PER_SENDER).collect();
            assert_eq!(
                got, want,
                "seed {seed}: device {device}, sender {i}: every message once, in order"
            );
        }
        // Each conversation is in order; conversations in different log
        // partitions may interleave either way.
        for i in 0..SENDERS {
            let of = |reads: &mut dyn Iterator<Item = &str>| -> Vec<String> {
                reads
                    .filter(|u| sender_of.get(u) == Some(&i))
                    .map(str::to_owned)
                    .collect()
            };
            assert_eq!(
                of(&mut seen.read_frames.iter().map(String::as_str)),
                of(&mut posted.iter().map(|(_, u)| u.as_str())),
                "seed {seed}: device {device}, sender {i}: every read receipt once, in order"
            );
        }
        assert_eq!(
            seen.read_frames.len(),
            posted.len(),
            "seed {seed}: device {device}"
        );
        drops_before_synced += seen.drops_before_synced;
        eprintln!(
            "device {device}: {} frames over {} connections, {} dropped before synced",
            seen.total, seen.connections, seen.drops_before_synced
        );
    }
    assert!(!posted.is_empty(), "seed {seed}: no read receipt was made");
    assert!(
        drops_before_synced >= 5,
        "seed {seed}: only {drops_before_synced} drops fell in a backlog"
    );
    drop(processes);
}

/// One device: connects, processes frames, drops at random, reconnects
/// with the last `seq` until it has everything; then connects once more
/// to prove nothing is left.
async fn run_device(storm: Arc<Storm>, device: usize, since: String) -> Seen {
    let mut rng = fastrand::Rng::with_seed(storm.seed.wrapping_add(device as u64));
    let mut seen = Seen::default();
    let mut since = Some(since);
    let total = SENDERS * PER_SENDER;
    let mut settled_at = None;
    loop {
        if device == 0 && seen.total_messages() == total {
            storm.reads_final.store(true, Ordering::SeqCst);
        }
        let settled =
            storm.quiet.load(Ordering::SeqCst) && storm.reads_final.load(Ordering::SeqCst);
        if storm.quiet.load(Ordering::SeqCst) && settled_at.is_none() {
            settled_at = Some(std::time::Instant::now());
        }
        // A device still missing something a minute after the last send
        // stops waiting, so the assertions say what it is missing.
        let given_up = settled_at.is_some_and(|t| t.elapsed() > Duration::from_secs(60));
        let done = given_up
            || settled
                && seen.total_messages() == total
                && seen.read_frames.len() == storm.reads_posted.load(Ordering::SeqCst);
        let push = &storm.pushes[rng.usize(..storm.pushes.len())];
        let mut s = push
            .bearer_socket_since(&storm.recipient.token, since.as_deref())
            .await;
        seen.connections += 1;
        // Past the end: the frames this connection may process before it
        // drops, and how long it may sit idle.
        let budget = if done { usize::MAX } else { rng.usize(1..30) };
        let idle = Duration::from_millis(if done { 700 } else { rng.u64(20..400) });
        let (mut processed, mut synced) = (0, false);
        loop {
            if processed >= budget {
                break;
            }
            let frame = match tokio::time::timeout(idle, s.ws.next()).await {
                Err(_) => break,
                Ok(Some(Ok(Ws::Text(t)))) => serde_json::from_str::<Value>(&t).unwrap(),
                Ok(Some(Ok(Ws::Close(c)))) => {
                    let code = c.map(|c| u16::from(c.code));
                    // Lagging, or an instance not ready for this backlog
                    // yet: both mean "come back with your last seq".
                    assert!(
                        matches!(code, Some(4008 | 1013)),
                        "seed {}: closed with {code:?}",
                        storm.seed
                    );
                    break;
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_)) | None) => break,
            };
            seen.process(&storm, device, &frame, since.as_deref(), &mut synced)
                .await;
            if let Some(seq) = frame["seq"].as_str() {
                since = Some(seq.to_owned());
            }
            processed += 1;
        }
        if done {
            assert!(
                synced,
                "seed {}: the last connection never synced",
                storm.seed
            );
            return seen;
        }
        if !synced {
            seen.drops_before_synced += 1;
        }
        // Gone without a close frame, as a phone losing its network.
        drop(s);
        tokio::time::sleep(Duration::from_millis(rng.u64(0..150))).await;
    }
}

impl Seen {
    fn total_messages(&self) -> usize {
        self.messages.values().map(Vec::len).sum()
    }

    async fn process(
        &mut self,
        storm: &Storm,
        device: usize,
        f: &Value,
        since: Option<&str>,
        synced: &mut bool,
    ) {
        let seed = storm.seed;
        self.total += 1;
        match f["type"].as_str() {
            Some("ready") => {
                assert_eq!(f["user_id"], storm.recipient.id.as_str());
                if let Some(since) = since {
                    assert_eq!(
                        f["seq"], since,
                        "seed {seed}: ready says where it continues"
                    );
                }
            }
            Some("synced") => *synced = true,
            Some("message") => {
                let m = &f["message"];
                assert_eq!(m["to"], storm.recipient.id.as_str());
                let body = m["body"].as_str().unwrap();
                let (i, k) = body.split_once(':').unwrap();
                let (i, k): (usize, usize) = (i.parse().unwrap(), k.parse().unwrap());
                assert_eq!(m["from"], storm.senders[i].id.as_str());
                self.messages.entry(i).or_default().push(k);
                self.last_id.insert(i, m["id"].as_str().unwrap().to_owned());
                // The first device reads now and then, as a person would.
                if device == 0 && k % 9 == 8 {
                    mark_read(storm, i, &self.last_id[&i]).await;
                }
            }
            Some("read") => {
                assert_eq!(f["by"], storm.recipient.id.as_str());
                self.read_frames
                    .push(f["up_to"].as_str().unwrap().to_owned());
            }
            _ => panic!("seed {seed}: unexpected frame {f}"),
        }
    }
}

async fn mark_read(storm: &Storm, sender: usize, up_to: &str) {
    let mut reads = storm.reads.lock().await;
    // Each read moves the marker forward: a repeat would be a read of
    // its own, which this test does not track.
    if reads.iter().any(|(_, u)| u == up_to) {
        return;
    }
    let app = &storm.commands[sender % storm.commands.len()];
    let r = app
        .post_until_ready(
            &format!("/v1/conversations/{}/read", storm.senders[sender].id),
            Some(&storm.recipient.token),
            json!({ "up_to": up_to }),
        )
        .await;
    assert_eq!(r.status, 202, "seed {}: {}", storm.seed, r.text);
    reads.push((sender, up_to.to_owned()));
    storm.reads_posted.fetch_add(1, Ordering::SeqCst);
}

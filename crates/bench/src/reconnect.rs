//! Reconnect storm: many sockets lose their ws-push instance, messages keep
//! arriving through command-api while it is down, and every socket comes
//! back with the `seq` of the last frame it processed. Measures how long
//! until every socket has its backlog and whether anything was missed or
//! repeated.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use futures_util::{stream, StreamExt};
use hdrhistogram::Histogram;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as Ws;

use crate::{
    client::{Socket, Target, User},
    report::{histogram, Report},
};

/// Longest a socket keeps trying to come back.
const GIVE_UP: Duration = Duration::from_secs(60);

pub async fn run(
    target: &Target,
    run_id: &str,
    sockets: usize,
    n_users: usize,
    restart_cmd: &str,
) -> anyhow::Result<Report> {
    let users = crate::users(target, run_id, n_users).await?;
    let opened = crate::open_sockets(target, &users, sockets).await?;
    // One message to every user, so each socket has a last message seen.
    eprintln!("sending one message to each of {} users...", users.len());
    let before = deliver_round(target, &users, "before").await?;
    let mut owners = Vec::with_capacity(opened.len());
    let mut waiting = Vec::with_capacity(opened.len());
    for (u, mut ws) in opened {
        let want = before[u].clone();
        owners.push(u);
        waiting.push(tokio::spawn(async move {
            wait_for(&mut ws, &want, None).await.map(|seq| (ws, seq))
        }));
    }
    let mut live = Vec::with_capacity(waiting.len());
    let mut seqs = Vec::with_capacity(waiting.len());
    for w in waiting {
        let (ws, seq) = w.await??;
        live.push(ws);
        seqs.push(seq);
    }

    eprintln!("restarting ws-push: {restart_cmd}");
    let closed = tokio::spawn(async move {
        // Every socket should now be closed by the server (1001).
        stream::iter(live)
            .for_each_concurrent(1024, |mut ws: Socket| async move {
                while let Some(Ok(f)) = ws.next().await {
                    if matches!(f, Ws::Close(_)) {
                        break;
                    }
                }
            })
            .await;
    });
    let restart_began = Instant::now();
    let restarted = tokio::process::Command::new("sh")
        .args(["-c", restart_cmd])
        .status()
        .await
        .context("cannot run --restart-cmd")?;
    if !restarted.success() {
        bail!("--restart-cmd failed: {restarted}");
    }
    let restart_took = restart_began.elapsed();
    let _ = tokio::time::timeout(Duration::from_secs(30), closed).await;
    // Sent while the sockets were away: each must arrive in the backlog.
    let during = deliver_round(target, &users, "during").await?;

    eprintln!("reconnecting {} sockets...", owners.len());
    let started = Instant::now();
    let users = Arc::new(users);
    let results: Vec<anyhow::Result<Duration>> = stream::iter(owners.into_iter().zip(seqs))
        .map(|(u, seq)| {
            let (target, users) = (target.clone(), users.clone());
            let (seen, want) = (before[u].clone(), during[u].clone());
            async move {
                let mut ws = reconnect(&target, &users[u], &seq, started).await?;
                wait_for(&mut ws, &want, Some(&seen)).await?;
                let took = started.elapsed();
                let _ = ws.close(None).await;
                Ok(took)
            }
        })
        .buffer_unordered(512)
        .collect()
        .await;
    let all = started.elapsed();
    let (mut h, mut missed): (Histogram<u64>, u64) = (histogram(), 0);
    for r in results {
        match r {
            Ok(d) => {
                let _ = h.record((d.as_micros() as u64).max(1));
            }
            Err(e) => {
                missed += 1;
                eprintln!("a socket did not sync: {e:#}");
            }
        }
    }
    let mut r = Report::default();
    r.count("sockets", "sockets", h.len() + missed);
    r.number(
        "restart_s",
        "restart command took (not in the figures below)",
        restart_took.as_secs_f64(),
        "s",
    );
    r.latency(
        "resumed_after",
        "reconnect start → backlog in (per socket)",
        &h,
    );
    r.number(
        "all_within_s",
        "every socket had its backlog within",
        all.as_secs_f64(),
        "s",
    );
    r.count(
        "missed",
        "sockets that missed a message or got one twice",
        missed,
    );
    Ok(r)
}

/// Sends one message to every user (from the next user) and returns, per
/// user, the id of the message they should receive.
async fn deliver_round(target: &Target, users: &[User], tag: &str) -> anyhow::Result<Vec<String>> {
    let ids: Vec<anyhow::Result<String>> = stream::iter(0..users.len())
        .map(|u| async move {
            let from = &users[(u + 1) % users.len()];
            for _ in 0..100 {
                match target
                    .send(from, &users[u], &format!("{tag}{u}"), true)
                    .await
                {
                    (202, Some(id)) => return Ok(id),
                    _ => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
            bail!("sends to user {u} kept failing")
        })
        .buffered(64)
        .collect()
        .await;
    ids.into_iter().collect()
}

async fn reconnect(
    target: &Target,
    user: &User,
    since: &str,
    started: Instant,
) -> anyhow::Result<Socket> {
    loop {
        match target.socket_since(user, Some(since)).await {
            Ok(ws) => return Ok(ws),
            Err(e) if started.elapsed() > GIVE_UP => return Err(e.context("gave up reconnecting")),
            Err(_) => tokio::time::sleep(Duration::from_millis(20 + fastrand::u64(..80))).await,
        }
    }
}

/// Reads until a `message` frame with id `want` arrives and returns its
/// `seq`; a frame of message `seen` on the way is a duplicate, an error.
async fn wait_for(ws: &mut Socket, want: &str, seen: Option<&str>) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .with_context(|| format!("message {want} never arrived"))?;
        match frame {
            Some(Ok(Ws::Text(t))) => {
                let v: Value = serde_json::from_str(&t)?;
                if v["type"] == "message" {
                    let id = v["message"]["id"].as_str();
                    if id == Some(want) {
                        let seq = v["seq"].as_str().context("a message frame without seq")?;
                        return Ok(seq.to_owned());
                    }
                    if id.is_some() && id == seen {
                        bail!("message {} arrived twice", id.unwrap_or_default());
                    }
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => bail!("socket closed before message {want}"),
        }
    }
}

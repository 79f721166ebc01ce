//! The load generator's view of Parley: users, sends and sockets, through
//! the public API only.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use anyhow::{anyhow, bail, Context};
use futures_util::{stream, SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, Message as Ws},
    WebSocketStream,
};

use crate::http1;

pub const PASSWORD: &str = "parley bench password";

#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub token: String,
}

pub type Socket = WebSocketStream<TcpStream>;

/// Where the load goes.
#[derive(Clone)]
pub struct Target {
    pub http: reqwest::Client,
    /// command-api and query-api (or `parley dev`).
    pub url: String,
    /// ws-push instances; sockets are spread over them.
    pub ws: Vec<String>,
    /// Sockets bind 127.0.0.1 .. 127.0.0.N in turn, so one source
    /// address's ephemeral ports do not cap the socket count.
    pub source_ips: u8,
    next_ip: std::sync::Arc<AtomicUsize>,
    /// Sends and history pages go through their own lean client (see
    /// `http1`).
    pub hot: std::sync::Arc<http1::Pool>,
}

impl Target {
    pub fn new(url: &str, ws: &[String], source_ips: u8) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(4096)
            .timeout(Duration::from_secs(30))
            .build()?;
        let url = url.trim_end_matches('/').to_owned();
        let ws = if ws.is_empty() {
            vec![url.clone()]
        } else {
            ws.iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect()
        };
        let parsed = reqwest::Url::parse(&url).with_context(|| format!("bad URL {url}"))?;
        if parsed.scheme() != "http" {
            bail!("{url}: the load generator speaks plain HTTP (it runs beside the server)");
        }
        // `host_str` keeps an IPv6 address's brackets, as `Host` wants them.
        let host = parsed
            .host_str()
            .ok_or_else(|| anyhow!("no host in {url}"))?;
        let port = parsed.port_or_known_default().unwrap_or(80);
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.trim_matches(['[', ']']), port))
            .with_context(|| format!("resolve {host}"))?
            .min_by_key(|a| !a.is_ipv4())
            .ok_or_else(|| anyhow!("{host} resolves to no address"))?;
        // A base URL with a path (behind a proxy's prefix) keeps it.
        let prefix = parsed.path().trim_end_matches('/').to_owned();
        let hot = http1::Pool::new(addr, format!("{host}:{port}"), prefix);
        Ok(Self {
            hot: std::sync::Arc::new(hot),
            http,
            url,
            ws,
            source_ips: source_ips.max(1),
            next_ip: Default::default(),
        })
    }

    /// Registers `n` users named `bench_<run>_<i>`, a few at a time (the
    /// server hashes every password with argon2).
    pub async fn register_users(&self, run: &str, n: usize) -> anyhow::Result<Vec<User>> {
        let users: Vec<anyhow::Result<User>> = stream::iter(0..n)
            .map(|i| async move { self.register(&format!("bench_{run}_{i}")).await })
            .buffered(16)
            .collect()
            .await;
        users.into_iter().collect()
    }

    /// Registers one user, waiting as told when the server is busy (503)
    /// or briefly rate-limits (429).
    pub async fn register(&self, username: &str) -> anyhow::Result<User> {
        let mut tries = 0;
        let (status, body) = loop {
            let r = self
                .http
                .post(format!("{}/v1/auth/register", self.url))
                .json(&json!({"username": username, "password": PASSWORD}))
                .send()
                .await
                .context("register")?;
            let status = r.status();
            let wait = retry_after(r.headers());
            let body: Value = r.json().await.context("register body")?;
            tries += 1;
            match (status.as_u16(), wait) {
                (429 | 503, Some(wait)) if tries < 20 && wait <= MAX_REGISTER_WAIT => {
                    tokio::time::sleep(wait).await;
                }
                (429, _) => bail!(
                    "register {username}: 429 {body}: the server rate-limits registrations; \
                     benchmark one started with --register-limit-per-address off"
                ),
                _ => break (status, body),
            }
        };
        if status != 201 {
            bail!("register {username}: {status} {body}");
        }
        Ok(User {
            id: body["user"]["id"].as_str().unwrap_or_default().to_owned(),
            token: body["token"].as_str().unwrap_or_default().to_owned(),
        })
    }

    /// One send; the HTTP status, and the message id when accepted and
    /// `want_id`. `body` must need no JSON escaping (the bench's own
    /// bodies never do), so the request is written without a serializer.
    pub async fn send(
        &self,
        from: &User,
        to: &User,
        body: &str,
        want_id: bool,
    ) -> (u16, Option<String>) {
        let (status, id, _) = self.send_full(from, to, body, want_id).await;
        (status, id)
    }

    /// [`Target::send`], with the `Retry-After` of a 429 or 503.
    pub async fn send_full(
        &self,
        from: &User,
        to: &User,
        body: &str,
        want_id: bool,
    ) -> (u16, Option<String>, Option<Duration>) {
        let json = format!(r#"{{"to":"{}","body":"{body}"}}"#, to.id);
        let answer = match self.hot.post_json("/v1/messages", &from.token, &json).await {
            Ok(a) => a,
            Err(_) => return (0, None, None),
        };
        if answer.status != 202 || !want_id {
            return (answer.status, None, answer.retry_after);
        }
        #[derive(serde::Deserialize)]
        struct Accepted<'a> {
            #[serde(borrow)]
            message: Id<'a>,
        }
        #[derive(serde::Deserialize)]
        struct Id<'a> {
            id: &'a str,
        }
        let id = serde_json::from_slice::<Accepted>(&answer.body)
            .ok()
            .map(|a| a.message.id.to_owned());
        (answer.status, id, None)
    }

    /// An authenticated socket that has seen its `ready` frame. Sockets go
    /// round-robin over the ws-push URLs and the source addresses.
    pub async fn socket(&self, user: &User) -> anyhow::Result<Socket> {
        self.socket_since(user, None).await
    }

    /// [`Target::socket`], syncing from `since` (the `seq` of the last
    /// frame a previous socket processed).
    pub async fn socket_since(&self, user: &User, since: Option<&str>) -> anyhow::Result<Socket> {
        let n = self.next_ip.fetch_add(1, Ordering::Relaxed);
        let base = &self.ws[n % self.ws.len()];
        let query = since.map_or_else(String::new, |s| format!("?since={s}"));
        let url = format!("{}/v1/ws{query}", base.replacen("http", "ws", 1));
        let mut req = url.as_str().into_client_request()?;
        req.headers_mut()
            .insert("authorization", format!("Bearer {}", user.token).parse()?);
        let host = req
            .uri()
            .host()
            .ok_or_else(|| anyhow!("no host in {url}"))?;
        let port = req.uri().port_u16().unwrap_or(80);
        let ip: IpAddr = host.parse().context("ws URLs must use an IP address")?;
        let socket = TcpSocket::new_v4()?;
        let last = (n % self.source_ips as usize) as u8 + 1;
        socket
            .bind(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)),
                0,
            ))
            .context("bind a loopback source address")?;
        let stream = socket.connect(SocketAddr::new(ip, port)).await?;
        stream.set_nodelay(true)?;
        let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await?;
        loop {
            match ws.next().await {
                Some(Ok(Ws::Text(t))) => {
                    let v: Value = serde_json::from_str(&t)?;
                    if v["type"] == "ready" {
                        return Ok(ws);
                    }
                    bail!("unexpected first frame {v}");
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => bail!("socket closed before ready"),
            }
        }
    }

    /// Opens `n` sockets for `users` (socket i belongs to user i % len),
    /// `parallel` handshakes at a time.
    pub async fn sockets(
        &self,
        users: &[User],
        n: usize,
        parallel: usize,
        progress: impl Fn(usize) + Sync,
    ) -> anyhow::Result<Vec<(usize, Socket)>> {
        let opened: Vec<anyhow::Result<(usize, Socket)>> = stream::iter(0..n)
            .map(|i| {
                let u = i % users.len();
                let progress = &progress;
                async move {
                    let s = self.socket(&users[u]).await?;
                    progress(i);
                    Ok((u, s))
                }
            })
            .buffer_unordered(parallel)
            .collect()
            .await;
        opened.into_iter().collect()
    }

    /// Reads a counter or gauge from `/metrics` at `base`.
    pub async fn metric(&self, base: &str, name: &str) -> anyhow::Result<f64> {
        let text = self
            .http
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .reduce(|a, b| a + b)
            .ok_or_else(|| anyhow!("{base}/metrics has no {name}"))
    }
}

/// Longest `Retry-After` registering waits out; a longer one means the
/// server limits registrations, and the run stops and says so.
const MAX_REGISTER_WAIT: Duration = Duration::from_secs(5);

/// A `Retry-After` in seconds.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// Closes a socket politely.
pub async fn close(mut ws: Socket) {
    let _ = ws.send(Ws::Close(None)).await;
}

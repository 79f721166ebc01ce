//! `spawn_app()` and a small client for the end-to-end suite: a real server
//! on port 0 with a fresh data dir, driven over real HTTP and WebSocket.

use std::{path::PathBuf, process::Stdio, time::Duration};

use futures_util::{SinkExt, StreamExt};
use parley::cli::{Backend, BackendArgs};
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use tokio::{io::AsyncBufReadExt, net::TcpStream};
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, Message as Ws},
    MaybeTlsStream, WebSocketStream,
};
use tokio_util::sync::CancellationToken;

pub const PASSWORD: &str = "correct horse battery";
/// The JWT secret of spawned processes, so separate roles accept each
/// other's sessions.
pub const TEST_SECRET: &str = "test-secret-test-secret-test-secret!";

/// Which backend the suite runs against: `PARLEY_TEST_BACKEND`, default
/// `embedded`. Anything else fails loudly; so does a cluster that is not
/// running (the readiness wait panics), never a silent skip.
pub fn backend() -> Backend {
    match std::env::var("PARLEY_TEST_BACKEND").as_deref() {
        Err(_) | Ok("embedded") => Backend::Embedded,
        Ok("cluster") => Backend::Cluster,
        Ok(other) => panic!("PARLEY_TEST_BACKEND={other}: expected embedded or cluster"),
    }
}

pub struct TestApp {
    pub addr: String,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    pub _deployment: Option<Deployment>,
}

pub struct User {
    pub id: String,
    pub token: String,
}

/// Where one test's data lives: a temp data dir, and on the cluster a
/// topic and keyspace of its own, so tests run in parallel on one Kafka
/// and one Cassandra without seeing each other.
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    pub topic: String,
    pub keyspace: String,
    /// Partitions of the topic when it is made.
    pub partitions: i32,
}

impl Deployment {
    pub fn new() -> Self {
        Self::on(backend())
    }

    pub fn on(backend: Backend) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            backend,
            topic: format!("t{}", &id[..16]),
            keyspace: format!("t{}", &id[..16]),
            partitions: 3,
        }
    }

    /// On the cluster, the same log read into a keyspace of its own;
    /// `None` on the embedded backend, whose replay rebuilds in place.
    pub fn replay_target(&self) -> Option<Self> {
        (self.backend == Backend::Cluster).then(|| {
            let mut d = Self::on(self.backend);
            d.topic.clone_from(&self.topic);
            d.partitions = self.partitions;
            d
        })
    }

    pub fn args(&self) -> BackendArgs {
        // TLS and credentials as the environment gives them, so the suite
        // runs unchanged on a secured cluster (scripts/test does).
        use clap::Parser as _;
        let env = match parley::cli::Cli::try_parse_from(["parley", "migrate"]) {
            Ok(parley::cli::Cli {
                command: parley::cli::Command::Migrate(b),
                ..
            }) => b,
            Ok(other) => panic!("parsed {other:?}"),
            Err(e) => panic!("PARLEY_* settings of the environment: {e}"),
        };
        BackendArgs {
            backend: self.backend,
            data_dir: self.dir.path().to_owned(),
            kafka_brokers: env_or("PARLEY_KAFKA_BROKERS", "127.0.0.1:9092"),
            kafka_topic: self.topic.clone(),
            kafka_partitions: self.partitions,
            kafka_replication: env.kafka_replication,
            scylla_nodes: env_or("PARLEY_SCYLLA_NODES", "127.0.0.1:9042"),
            scylla_keyspace: self.keyspace.clone(),
            scylla_replication: env.scylla_replication,
            scylla_consistency: env.scylla_consistency,
            scylla_serial_consistency: env.scylla_serial_consistency,
            kafka_security: env.kafka_security,
            cql_security: env.cql_security,
        }
    }

    /// The same settings as command-line flags, for spawned processes.
    pub fn flags(&self) -> Vec<String> {
        let a = self.args();
        let backend = match a.backend {
            Backend::Embedded => "embedded",
            Backend::Cluster => "cluster",
        };
        [
            ("--backend", backend.to_owned()),
            ("--data-dir", a.data_dir.display().to_string()),
            ("--kafka-brokers", a.kafka_brokers),
            ("--kafka-topic", a.kafka_topic),
            ("--kafka-partitions", a.kafka_partitions.to_string()),
            ("--kafka-replication", a.kafka_replication.to_string()),
            ("--scylla-nodes", a.scylla_nodes),
            ("--scylla-keyspace", a.scylla_keyspace),
            ("--scylla-replication", a.scylla_replication.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v])
        .collect()
    }
}

/// A cluster test's keyspace goes when the test does: each one holds
/// several megabytes of Cassandra's heap for as long as it exists, and a
/// whole run makes hundreds. (Its topic stays: Kafka holds little for one.)
impl Drop for Deployment {
    fn drop(&mut self) {
        // A failing test's keyspace stays, for whoever reads the failure.
        if self.backend != Backend::Cluster || std::thread::panicking() {
            return;
        }
        let keyspace = self.keyspace.clone();
        // Settings are read again in a thread of its own, so neither a bad
        // environment nor an unreachable store can panic inside a drop.
        let args = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.args()));
        let Ok(args) = args else { return };
        // Only on a single node: on the replicated cluster a fault can
        // leave a node behind on the schema, and a drop then leaves the
        // nodes disagreeing (Cassandra's "Unknown CF" in its migration
        // stage), so the next test's migrate waits for ever. The fault
        // suite makes few keyspaces anyway.
        if args.scylla_replication > 1 {
            return;
        }
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let config = parley::backend::cql_config(&args);
                tokio::time::timeout(
                    Duration::from_secs(60),
                    parley_store_cql::Cql::drop_keyspace(&config),
                )
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("keyspace {keyspace} was not dropped: {e}"),
            Err(_) => eprintln!("keyspace {keyspace} was not dropped: the drop panicked"),
        }
    }
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

pub async fn spawn_app() -> TestApp {
    spawn_app_on(Deployment::new()).await
}

pub async fn spawn_app_on(deployment: Deployment) -> TestApp {
    spawn_app_with(deployment, |_| {}).await
}

/// The settings every in-process test server starts from.
pub fn test_config() -> parley::ServeConfig {
    parley::ServeConfig::new(parley::AuthConfig {
        keys: parley_domain::config::JwtKeys::single(parley_domain::config::JwtSecret::new(
            TEST_SECRET.as_bytes().to_vec(),
        ))
        .expect("test key"),
        ttl: Duration::from_secs(3600),
        cookie_secure: false,
    })
}

/// A server whose settings `configure` changed from [`test_config`].
pub async fn spawn_app_with(
    deployment: Deployment,
    configure: impl FnOnce(&mut parley::ServeConfig),
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let shutdown = CancellationToken::new();
    let mut config = test_config();
    configure(&mut config);
    let args = deployment.args();
    if args.backend == Backend::Cluster {
        parley::backend::migrate(&args)
            .await
            .expect("cannot migrate: are Kafka and Cassandra up? (infra/local/up)");
    }
    let token = shutdown.clone();
    tokio::spawn(async move {
        parley::serve_roles(parley::ALL_ROLES, &args, config, listener, token)
            .await
            .expect("server");
    });
    let app = TestApp {
        addr,
        http: reqwest::Client::new(),
        shutdown,
        _deployment: Some(deployment),
    };
    app.wait_ready().await;
    app
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    /// Asserts a problem+json with this status and returns it.
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(
            self.headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "body: {}",
            self.text
        );
        let p = self.json();
        assert_eq!(p["status"], status);
        assert!(p["title"].is_string() && p["type"].is_string());
        p
    }
    pub fn field_error(&self) -> String {
        self.problem(422)["errors"][0]["field"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn wait_ready(&self) {
        // Cluster roles connect in the background; allow them a while.
        for _ in 0..1200 {
            if let Ok(r) = self.http.get(self.url("/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server never became ready");
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> Reply {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header(header::CONTENT_TYPE, "application/json").body(b);
        }
        let res = req.send().await.expect("request");
        Reply {
            status: res.status(),
            headers: res.headers().clone(),
            text: res.text().await.expect("body"),
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body.to_string()))
            .await
    }

    pub async fn register(&self, username: &str) -> User {
        let r = self
            .post(
                "/v1/auth/register",
                None,
                json!({"username": username, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let v = r.json();
        User {
            id: v["user"]["id"].as_str().expect("id").to_owned(),
            token: v["token"].as_str().expect("token").to_owned(),
        }
    }

    /// Sends and returns the accepted message.
    pub async fn send(&self, from: &User, to: &User, body: &str) -> Value {
        let r = self
            .post(
                "/v1/messages",
                Some(&from.token),
                json!({"to": to.id, "body": body}),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
        r.json()["message"].clone()
    }

    /// `reader` marks the conversation with `peer` read up to `up_to`,
    /// which must be accepted.
    pub async fn mark_read(&self, reader: &User, peer: &User, up_to: &Value) {
        let r = self
            .post_until_ready(
                &format!("/v1/conversations/{}/read", peer.id),
                Some(&reader.token),
                json!({"up_to": up_to}),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
    }

    /// Posts as a client does: a 503 with Retry-After (the read side not
    /// yet caught up with a marker's message) is asked again after the
    /// wait it names, for up to 30 s; any other answer is returned.
    pub async fn post_until_ready(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.post(path, token, body.clone()).await;
            let wait = r
                .headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            match wait {
                Some(secs) if r.status == 503 && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_secs(secs.clamp(1, 5))).await;
                }
                _ => return r,
            }
        }
    }

    pub async fn page(&self, me: &User, peer: &User, query: &str) -> Value {
        let r = self
            .get(
                &format!("/v1/conversations/{}/messages{query}", peer.id),
                Some(&me.token),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    }

    /// Every message of a conversation, newest first, following cursors.
    pub async fn history(&self, me: &User, peer: &User) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                Some(c) => format!("?limit=200&before={c}"),
                None => "?limit=200".to_owned(),
            };
            let page = self.page(me, peer, &q).await;
            all.extend(
                page["messages"]
                    .as_array()
                    .expect("messages")
                    .iter()
                    .cloned(),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return all,
            }
        }
    }

    /// Waits until the conversation shows `n` messages (the projector is
    /// asynchronous), then returns them.
    pub async fn history_of_len(&self, me: &User, peer: &User, n: usize) -> Vec<Value> {
        // Generous: a restarted projector waits out its predecessor's
        // consumer-group session before it catches up.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let last = self.history(me, peer).await;
            if last.len() >= n {
                return last;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "history has {} messages after 30 s, expected {n}",
                    last.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn inbox(&self, me: &User) -> Value {
        let r = self.get("/v1/conversations", Some(&me.token)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// A socket that offered `token` as `Authorization: Bearer`; its first
    /// frame says whether the server took it.
    pub async fn bearer_socket(&self, token: &str) -> Socket {
        self.bearer_socket_since(token, None).await
    }

    /// [`TestApp::bearer_socket`] syncing from `since`.
    pub async fn bearer_socket_since(&self, token: &str, since: Option<&str>) -> Socket {
        let url = match since {
            Some(s) => format!("{}?since={s}", self.ws_url()),
            None => self.ws_url(),
        };
        let mut req = url.into_client_request().expect("ws request");
        req.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header"),
        );
        Socket::connect(req).await
    }

    /// A socket authenticated by `Authorization: Bearer`, past `ready` and
    /// `synced`: only live frames follow.
    pub async fn socket(&self, user: &User) -> Socket {
        let mut s = self.bearer_socket(&user.token).await;
        let ready = s.expect("ready").await;
        assert_eq!(ready["user_id"], user.id.as_str());
        let synced = s.expect("synced").await;
        assert_eq!(synced["seq"], ready["seq"], "nothing to sync");
        s
    }

    /// A socket syncing from `since`, past `ready`, which must say it
    /// continues from there.
    pub async fn socket_since(&self, user: &User, since: &str) -> Socket {
        let mut s = self.bearer_socket_since(&user.token, Some(since)).await;
        let ready = s.expect("ready").await;
        assert_eq!(ready["user_id"], user.id.as_str());
        assert_eq!(ready["seq"], since);
        s
    }
}

pub struct Socket {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The `seq` of the last frame read that carried one: where a client
    /// that processed every frame so far reconnects from.
    pub seq: Option<String>,
}

pub enum Frame {
    Json(Value),
    Closed(Option<u16>),
}

impl Socket {
    pub async fn connect(
        req: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Socket {
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("ws connect");
        Socket { ws, seq: None }
    }

    /// The `seq` of the last frame read.
    pub fn last_seq(&self) -> String {
        self.seq.clone().expect("no frame with a seq yet")
    }

    pub async fn send(&mut self, v: Value) {
        self.send_raw(&v.to_string()).await;
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws
            .send(Ws::Text(text.to_owned().into()))
            .await
            .expect("ws send");
    }

    /// The next JSON frame or close, within 10 s.
    pub async fn frame(&mut self) -> Frame {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("no frame within 10 s");
            match msg {
                Some(Ok(Ws::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).expect("frame is JSON");
                    if let Some(seq) = v["seq"].as_str() {
                        self.seq = Some(seq.to_owned());
                    }
                    return Frame::Json(v);
                }
                Some(Ok(Ws::Close(c))) => return Frame::Closed(c.map(|c| u16::from(c.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Frame::Closed(None),
            }
        }
    }

    pub async fn next(&mut self) -> Value {
        match self.frame().await {
            Frame::Json(v) => v,
            Frame::Closed(c) => panic!("socket closed ({c:?}) while a frame was expected"),
        }
    }

    /// The next frame of type `kind`, skipping none: asserts it is next.
    pub async fn expect(&mut self, kind: &str) -> Value {
        let v = self.next().await;
        assert_eq!(v["type"], kind, "unexpected frame {v}");
        v
    }

    /// Asserts nothing arrives for `ms` (used to prove "no duplicate").
    pub async fn assert_quiet(&mut self, ms: u64) {
        loop {
            match tokio::time::timeout(Duration::from_millis(ms), self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Ws::Ping(_) | Ws::Pong(_)))) => continue,
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    pub async fn expect_close(&mut self, code: u16) {
        match self.frame().await {
            Frame::Closed(c) => assert_eq!(c, Some(code)),
            Frame::Json(v) => panic!("expected close {code}, got {v}"),
        }
    }
}

/// Spawned processes start with every rate limit off, like the in-process
/// servers: the suite registers and sends far faster than a person. A flag
/// in `extra` still wins over these.
const NO_RATE_LIMITS: &[&str] = &[
    "PARLEY_LOGIN_LIMIT_PER_ADDRESS",
    "PARLEY_LOGIN_LIMIT_PER_USERNAME",
    "PARLEY_REGISTER_LIMIT_PER_ADDRESS",
    "PARLEY_SEND_LIMIT_PER_USER",
    "PARLEY_FRAME_LIMIT_PER_USER",
];

/// A `parley` process started from the built binary, for tests that kill
/// or signal it.
pub struct Process {
    pub child: tokio::process::Child,
    pub addr: String,
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_parley"))
}

/// The `parley-bench` binary of this build: the load generator.
pub fn bench_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_parley-bench"))
}

/// Runs `parley <args> <deployment flags>` to completion.
pub async fn run_parley(args: &[&str], deployment: &Deployment) -> std::process::Output {
    tokio::process::Command::new(binary())
        .args(args)
        .args(deployment.flags())
        .env_remove("PARLEY_JWT_SECRET")
        .output()
        .await
        .expect("run parley")
}

/// `parley migrate` on `deployment`, which must succeed.
pub async fn migrate(deployment: &Deployment) {
    let out = run_parley(&["migrate"], deployment).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Process {
    /// `parley dev` on `deployment`.
    pub async fn start(deployment: &Deployment) -> Process {
        Self::spawn(&["dev"], deployment, &[]).await
    }

    /// `parley <command> --listen 127.0.0.1:0 <deployment flags> <extra>`.
    pub async fn spawn(command: &[&str], deployment: &Deployment, extra: &[&str]) -> Process {
        Self::spawn_from(
            tokio::process::Command::new(binary()),
            command,
            deployment,
            extra,
        )
        .await
    }

    /// [`Process::spawn`] after the shell command `setup` (`ulimit -n 256`,
    /// `umask 022`), which applies to the process.
    pub async fn spawn_after(
        setup: &str,
        command: &[&str],
        deployment: &Deployment,
        extra: &[&str],
    ) -> Process {
        let mut sh = tokio::process::Command::new("sh");
        sh.arg("-c")
            .arg(format!("{setup} && exec \"$0\" \"$@\""))
            .arg(binary());
        Self::spawn_from(sh, command, deployment, extra).await
    }

    async fn spawn_from(
        mut cmd: tokio::process::Command,
        command: &[&str],
        deployment: &Deployment,
        extra: &[&str],
    ) -> Process {
        let mut child = cmd
            .args(command)
            .args(["--listen", "127.0.0.1:0"])
            .args(deployment.flags())
            .args(extra)
            .env("PARLEY_JWT_SECRET", TEST_SECRET)
            .env("RUST_LOG", "warn")
            .envs(NO_RATE_LIMITS.iter().map(|k| (k, "off")))
            // A test that blocks its runtime (stopping Kafka, say) cannot
            // notice the server closing its idle pooled connection, and
            // would send its next request on it; 10 s is shorter than such
            // a pause. The slow-client tests pass their own.
            .env("PARLEY_HEADER_READ_TIMEOUT", "120")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn parley");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        // `dev` on the cluster first migrates a fresh keyspace: a few dozen
        // schema changes, each waiting for schema agreement, which on a
        // busy box with a Cassandra just restarted takes over a minute.
        let addr = tokio::time::timeout(Duration::from_secs(180), async {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .expect("read stdout")
                    .expect("parley exited early");
                if let Some(addr) = line.strip_prefix("parley listening on http://") {
                    return addr.to_owned();
                }
            }
        })
        .await
        .expect("parley never said where it listens");
        Process { child, addr }
    }

    /// A client for this process; the caller owns its data dir.
    pub async fn client(&self) -> TestApp {
        let app = TestApp {
            addr: self.addr.clone(),
            http: reqwest::Client::new(),
            shutdown: CancellationToken::new(),
            _deployment: None,
        };
        app.wait_ready().await;
        app
    }
}

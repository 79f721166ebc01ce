//! Wiring: builds the roles on a backend and runs them. `main` only parses
//! flags; tests call [`serve_roles`] directly on port 0.

pub mod backend;
pub mod cli;
mod connecting;
pub mod security;
pub mod telemetry;

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, OnceLock},
    time::Duration,
};

use anyhow::{bail, Context};
use axum::Router;
use parley_command_api::{CommandApi, Guards, HashPool};
use parley_domain::{
    auth::TokenService,
    config::{CookiePolicy, JwtKeys, JwtSecret},
    ports::HealthCheck,
    retry::Backoff,
};
use parley_http_kit::{
    limit::{Limiter, Rate},
    ops,
    ops::Readiness,
    origin::Origins,
    server::{self, HttpConfig},
    AuthState,
};
use parley_projector::Projector;
use parley_query_api::QueryApi;
use parley_store_sqlite::Embedded;
use parley_ws_push::{Hub, WsPush};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    backend::Ports,
    cli::{Backend, BackendArgs, Cli, Command, Role, ServeArgs},
};

pub const ALL_ROLES: &[Role] = &[
    Role::CommandApi,
    Role::Projector,
    Role::QueryApi,
    Role::WsPush,
];

/// Session settings, resolved from flags (and, for `dev`, the data dir).
#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub keys: JwtKeys,
    pub ttl: Duration,
    pub cookie_secure: bool,
}

/// ws-push settings.
#[derive(Clone, Copy, Debug)]
pub struct PushConfig {
    /// What each instance keeps of recent events for reconnecting sockets.
    pub sync_memory_bytes: usize,
    /// Sockets one user may hold on one instance.
    pub max_sockets_per_user: usize,
}

impl PushConfig {
    fn from_args(args: &ServeArgs) -> Self {
        Self {
            sync_memory_bytes: usize::try_from(args.sync_memory_kib.saturating_mul(1024))
                .unwrap_or(usize::MAX),
            max_sockets_per_user: args.max_sockets_per_user.max(1),
        }
    }
}

/// Everything [`serve_roles`] needs besides the backend and the listener.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub auth: AuthConfig,
    pub http: HttpConfig,
    pub limits: LimitConfig,
    pub push: PushConfig,
    /// How long background work may take to finish on shutdown.
    pub grace: Duration,
    /// Serve the web chat at `/`. Only `parley dev` does: the page needs
    /// the REST API and the socket on its own origin, which only a process
    /// running every role has. A split deployment puts its proxy in front
    /// of the roles and serves no page.
    pub web: bool,
}

impl ServeConfig {
    /// Settings for tests and tools: `auth`, the default HTTP settings and
    /// no rate limits (tests register and send far faster than a person;
    /// the tests of the limits turn them on).
    pub fn new(auth: AuthConfig) -> Self {
        Self {
            auth,
            http: HttpConfig::default(),
            limits: LimitConfig::off(),
            push: PushConfig::default(),
            grace: Duration::from_secs(5),
            web: false,
        }
    }
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            sync_memory_bytes: 64 << 20,
            max_sockets_per_user: 32,
        }
    }
}

/// The rate limits and the password hashing pool (see `cli::LimitArgs`).
#[derive(Clone, Debug)]
pub struct LimitConfig {
    pub hash_threads: usize,
    pub hash_queue: usize,
    pub login_per_address: Rate,
    pub login_per_username: Rate,
    pub register_per_address: Rate,
    pub sends_per_user: Rate,
    /// For ws-push: frames per user across its sockets.
    pub frames_per_user: Rate,
}

impl LimitConfig {
    /// Every rate off; the hashing pool as by default.
    pub fn off() -> Self {
        Self {
            hash_threads: 0,
            hash_queue: 16,
            login_per_address: Rate::OFF,
            login_per_username: Rate::OFF,
            register_per_address: Rate::OFF,
            sends_per_user: Rate::OFF,
            frames_per_user: Rate::OFF,
        }
    }

    fn from_args(a: &cli::LimitArgs) -> Self {
        Self {
            hash_threads: a.hash_threads,
            hash_queue: a.hash_queue,
            login_per_address: a.login_limit_per_address,
            login_per_username: a.login_limit_per_username,
            register_per_address: a.register_limit_per_address,
            sends_per_user: a.send_limit_per_user,
            frames_per_user: a.frame_limit_per_user,
        }
    }

    fn guards(&self) -> std::io::Result<Guards> {
        Ok(Guards {
            hashing: HashPool::new(self.hash_threads, self.hash_queue)?,
            login_per_address: Limiter::new("logins from this address", self.login_per_address),
            login_per_username: Limiter::new("logins for this username", self.login_per_username),
            register_per_address: Limiter::new(
                "registrations from this address",
                self.register_per_address,
            ),
            sends_per_user: Limiter::new("sends", self.sends_per_user),
        })
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(args) => {
            let config = serve_config(&args, true)?;
            if args.backend.backend == Backend::Cluster {
                // `dev` needs no set-up: create the keyspace and topic.
                println!("{}", backend::migrate(&args.backend).await?);
            }
            let listener = bind(args.listen).await?;
            serve_roles(
                ALL_ROLES,
                &args.backend,
                config,
                listener,
                signal_shutdown(),
            )
            .await
        }
        Command::Serve { role, args } => {
            let config = serve_config(&args, false)?;
            let listener = bind(args.listen).await?;
            serve_roles(&[role], &args.backend, config, listener, signal_shutdown()).await
        }
        Command::Replay(b) => {
            let ports = match b.backend {
                Backend::Embedded => Ports::embedded(&backend::open_embedded(&b)?),
                Backend::Cluster => {
                    // Replay targets a keyspace that may be brand new.
                    backend::migrate(&b).await?;
                    Ports::cluster(&b)
                        .await
                        .context("cannot reach Kafka and the CQL store")?
                }
            };
            let projector = Projector {
                log: ports.log.clone(),
                writer: ports.writer.clone(),
            };
            let started = std::time::Instant::now();
            let n = projector.replay().await.context("replay failed")?;
            let secs = started.elapsed().as_secs_f64();
            ports.close(Duration::from_secs(5)).await;
            println!(
                "replayed {n} events in {secs:.2}s ({:.0} events/s)",
                n as f64 / secs.max(1e-9)
            );
            Ok(())
        }
        Command::Migrate(b) => {
            println!("{}", backend::migrate(&b).await?);
            Ok(())
        }
    }
}

fn serve_config(args: &ServeArgs, dev: bool) -> anyhow::Result<ServeConfig> {
    let h = &args.http;
    let allowed_origins = Origins::parse(&h.allowed_origins)
        .map_err(|e| anyhow::anyhow!("--allowed-origins: {e}"))?;
    Ok(ServeConfig {
        auth: auth_config(args, dev)?,
        http: HttpConfig {
            header_read_timeout: Duration::from_secs(h.header_read_timeout.max(1)),
            body_read_timeout: Duration::from_secs(h.body_read_timeout.max(1)),
            trust_forwarded_for: h.trust_forwarded_for,
            allowed_origins,
        },
        limits: LimitConfig::from_args(&args.limits),
        push: PushConfig::from_args(args),
        grace: Duration::from_secs(args.shutdown_grace),
        web: dev,
    })
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    // One line on stdout, for people and for scripts that start us on port 0.
    println!("parley listening on http://{local}");
    Ok(listener)
}

/// `serve` refuses to start without an explicit secret; `dev` keeps a
/// generated one in the data dir so sessions survive restarts.
fn auth_config(args: &ServeArgs, dev: bool) -> anyhow::Result<AuthConfig> {
    let keys = match (&args.jwt_keys, &args.jwt_secret) {
        (Some(_), Some(_)) => bail!(
            "give --jwt-keys or --jwt-secret, not both (--jwt-secret S is --jwt-keys default=S)"
        ),
        (Some(spec), None) => {
            JwtKeys::parse(spec).map_err(|e| anyhow::anyhow!("--jwt-keys: {e}"))?
        }
        (None, Some(s)) => JwtKeys::single(JwtSecret::new(s.as_bytes().to_vec()))
            .map_err(|e| anyhow::anyhow!("--jwt-secret: {e}"))?,
        (None, None) if dev => JwtKeys::single(dev_secret(&args.backend.data_dir)?)
            .map_err(|e| anyhow::anyhow!("the generated JWT secret: {e}"))?,
        (None, None) => bail!(
            "production roles need an explicit JWT secret: set --jwt-secret or --jwt-keys \
             (PARLEY_JWT_SECRET, PARLEY_JWT_KEYS)"
        ),
    };
    Ok(AuthConfig {
        keys,
        ttl: Duration::from_secs(args.jwt_ttl.max(1)),
        cookie_secure: args.cookie_secure,
    })
}

fn dev_secret(dir: &Path) -> anyhow::Result<JwtSecret> {
    let path = dir.join("jwt-secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if s.len() >= 32 {
            return Ok(JwtSecret::new(s.as_bytes().to_vec()));
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    write_private(&path, &secret).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(JwtSecret::new(secret.into_bytes()))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(contents.as_bytes())
}

/// The OpenAPI document of every route of every role (each role serves
/// all of it): built once from the handlers' annotations and the limits
/// their parsers enforce.
pub fn openapi() -> Arc<str> {
    static DOC: OnceLock<Arc<str>> = OnceLock::new();
    DOC.get_or_init(|| {
        use utoipa::OpenApi;
        let mut doc = parley_http_kit::api::shared();
        doc.merge(parley_command_api::Doc::openapi());
        doc.merge(parley_query_api::Doc::openapi());
        doc.to_json().unwrap_or_default().into()
    })
    .clone()
}

/// Cancelled on SIGINT or SIGTERM.
pub fn signal_shutdown() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown requested");
        t.cancel();
    });
    token
}

/// Runs `roles` on one listener until `shutdown`, then drains: the server
/// stops accepting and finishes in-flight requests, sockets close with
/// 1001, the projector finishes its batch, the producer flushes.
/// Background work gets `grace`.
///
/// The listener answers at once. On the cluster backend the roles connect
/// in the background with bounded exponential backoff; until then
/// `/readyz` and the API answer 503 with `Retry-After`.
pub async fn serve_roles(
    roles: &[Role],
    backend: &BackendArgs,
    config: ServeConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let grace = config.grace;
    let http = config.http.clone();
    // Install the recorder before anything records.
    parley_http_kit::observe::prometheus();
    // The embedded backend opens at once or fails loudly (a bad data dir
    // will not fix itself); the cluster may simply not be up yet.
    let embedded = match backend.backend {
        Backend::Embedded => Some(backend::open_embedded(backend)?),
        Backend::Cluster => None,
    };
    let app = Arc::new(OnceLock::new());
    let last_attempt = connecting::LastAttempt::default();
    let bring_up = tokio::spawn(bring_up(
        roles.to_vec(),
        backend.clone(),
        embedded,
        config,
        (app.clone(), last_attempt.clone()),
        shutdown.clone(),
    ));
    tracing::info!(?roles, addr = %listener.local_addr()?, "parley listening");
    let token = shutdown.clone();
    let front = ops::deferred(
        app,
        server::finish(connecting::starting(last_attempt, openapi()), &http),
    );
    server::serve(listener, front, http.header_read_timeout, async move {
        token.cancelled().await
    })
    .await
    .context("server failed")?;
    shutdown.cancel();
    // Background work has `grace`; flushing the producer gets as long again.
    if tokio::time::timeout(grace * 2, bring_up).await.is_err() {
        tracing::warn!("background work did not finish within the grace period");
    }
    tracing::info!("parley stopped");
    Ok(())
}

/// Connects (retrying), builds the roles, publishes their router, then
/// waits for shutdown and drains the background work.
async fn bring_up(
    roles: Vec<Role>,
    args: BackendArgs,
    embedded: Option<Embedded>,
    config: ServeConfig,
    (app, last_attempt): (Arc<OnceLock<Router>>, connecting::LastAttempt),
    shutdown: CancellationToken,
) {
    let grace = config.grace;
    let mut backoff = Backoff::default();
    let mut background = JoinSet::new();
    let ports = loop {
        let attempt = async {
            let ports = match &embedded {
                Some(e) => Ports::embedded(e),
                None => Ports::cluster(&args).await?,
            };
            let router = build_roles(&roles, &ports, &config, &shutdown, &mut background)
                .await
                .map_err(backend::ConnectError::on("backend"))?;
            Ok::<_, backend::ConnectError>((ports, router))
        };
        let outcome = tokio::select! {
            r = attempt => r,
            _ = shutdown.cancelled() => return,
        };
        match outcome {
            Ok((ports, router)) => {
                let _ = app.set(server::finish(router, &config.http));
                tracing::info!(?roles, "parley ready");
                break ports;
            }
            Err(e) => {
                background.abort_all();
                let nap = backoff.next_delay();
                last_attempt.failed(&e);
                tracing::warn!(
                    dependency = e.dependency,
                    error = %e.error.chain(),
                    retry_in = ?nap,
                    "cannot connect to {}; retrying",
                    e.dependency
                );
                tokio::select! {
                    _ = tokio::time::sleep(nap) => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    };
    shutdown.cancelled().await;
    if tokio::time::timeout(grace, async {
        while background.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("background work did not finish within the grace period");
    }
    ports.close(grace).await;
}

async fn build_roles(
    roles: &[Role],
    ports: &Ports,
    config: &ServeConfig,
    shutdown: &CancellationToken,
    background: &mut JoinSet<()>,
) -> Result<Router, parley_domain::StoreError> {
    let a = &config.auth;
    let auth = Arc::new(AuthState {
        tokens: TokenService::new(&a.keys, a.ttl),
        revocations: ports.revocations.clone(),
        cookie: CookiePolicy {
            secure: a.cookie_secure,
            max_age_secs: a.ttl.as_secs(),
        },
        origins: config.http.allowed_origins.clone(),
    });
    let mut checks = ports.checks.clone();
    let mut app = Router::new();
    for role in roles {
        let (router, check) =
            role_router(*role, ports, &auth, config, shutdown, background).await?;
        app = app.merge(router);
        checks.extend(check);
    }
    if config.web {
        app = app.merge(parley_web::router());
    }
    Ok(ops::router(Readiness { checks }, openapi()).merge(app))
}

async fn role_router(
    role: Role,
    ports: &Ports,
    auth: &Arc<AuthState>,
    config: &ServeConfig,
    shutdown: &CancellationToken,
    background: &mut JoinSet<()>,
) -> Result<(Router, Option<Arc<dyn HealthCheck>>), parley_domain::StoreError> {
    Ok(match role {
        Role::CommandApi => (
            parley_command_api::router(CommandApi {
                users: ports.users.clone(),
                appender: ports.appender.clone(),
                timelines: ports.timelines.clone(),
                log: ports.log.clone(),
                auth: auth.clone(),
                guards: Arc::new(
                    config
                        .limits
                        .guards()
                        .map_err(parley_domain::StoreError::unexpected)?,
                ),
            }),
            None,
        ),
        Role::QueryApi => (
            parley_query_api::router(QueryApi {
                users: ports.users.clone(),
                timelines: ports.timelines.clone(),
                inboxes: ports.inboxes.clone(),
                auth: auth.clone(),
            }),
            None,
        ),
        Role::Projector => {
            let projector = Projector {
                log: ports.log.clone(),
                writer: ports.writer.clone(),
            };
            let token = shutdown.clone();
            background.spawn(async move { projector.run(token).await });
            (Router::new(), None)
        }
        Role::WsPush => {
            let end = ports.log.latest().await?;
            let start = warm_start(&end, config.push.sync_memory_bytes);
            let hub = Arc::new(Hub::new(
                ports.log.identity(),
                start,
                end,
                config.push.sync_memory_bytes,
            ));
            let ws = WsPush {
                hub: hub.clone(),
                auth: auth.clone(),
                log: ports.log.clone(),
                timelines: ports.timelines.clone(),
                feed: ports.sync_feed.clone(),
                appender: ports.appender.clone(),
                max_sockets_per_user: config.push.max_sockets_per_user,
                frames: Arc::new(Limiter::new("socket frames", config.limits.frames_per_user)),
                shutdown: shutdown.clone(),
                sessions: Default::default(),
            };
            let tail = ws.clone();
            background.spawn(async move { tail.run_background().await });
            (
                parley_ws_push::router(ws),
                Some(hub as Arc<dyn HealthCheck>),
            )
        }
    })
}

/// Where a new ws-push starts reading: as far before the log's end as its
/// sync memory is likely to hold (events average well under this many
/// bytes there), so sockets reconnecting after a restart find their
/// backlog in memory rather than all asking the store at once.
fn warm_start(end: &parley_domain::Watermark, memory: usize) -> parley_domain::Watermark {
    const BYTES_PER_EVENT: usize = 1024;
    let partitions = end.slots().len().max(1);
    let per_partition = (memory / BYTES_PER_EVENT / partitions) as i64;
    parley_domain::Watermark::from_slots(
        end.slots()
            .iter()
            .map(|o| o.and_then(|o| (o - per_partition >= 0).then_some(o - per_partition)))
            .collect(),
    )
}

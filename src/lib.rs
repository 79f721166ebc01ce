//! Wiring: builds the roles on a backend and runs them. `main` only parses
//! flags; tests call [`serve_roles`] directly on port 0.

pub mod cli;
pub mod telemetry;

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use anyhow::{bail, Context};
use axum::Router;
use parley_command_api::CommandApi;
use parley_domain::ports::EventLog;
use parley_domain::{auth::TokenService, config::CookiePolicy, config::JwtSecret};
use parley_http_kit::{ops::Readiness, server, AuthState};
use parley_projector::Projector;
use parley_query_api::QueryApi;
use parley_store_sqlite::Embedded;
use parley_ws_push::{Hub, WsPush};
use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::cli::{Backend, BackendArgs, Cli, Command, Role, ServeArgs};

pub const ALL_ROLES: &[Role] = &[
    Role::CommandApi,
    Role::Projector,
    Role::QueryApi,
    Role::WsPush,
];

/// Session settings, resolved from flags (and, for `dev`, the data dir).
#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub secret: JwtSecret,
    pub ttl: Duration,
    pub cookie_secure: bool,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(args) => {
            let auth = auth_config(&args, true)?;
            let listener = bind(args.listen).await?;
            serve_roles(
                ALL_ROLES,
                &args.backend,
                auth,
                listener,
                signal_shutdown(),
                grace(&args),
            )
            .await
        }
        Command::Serve { role, args } => {
            let auth = auth_config(&args, false)?;
            let listener = bind(args.listen).await?;
            serve_roles(
                &[role],
                &args.backend,
                auth,
                listener,
                signal_shutdown(),
                grace(&args),
            )
            .await
        }
        Command::Replay(b) => {
            let embedded = open_backend(&b)?;
            let projector = Projector {
                log: embedded.log.clone(),
                writer: embedded.read_models.clone(),
            };
            let started = std::time::Instant::now();
            let n = projector.replay().await.context("replay failed")?;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "replayed {n} events in {secs:.2}s ({:.0} events/s)",
                n as f64 / secs.max(1e-9)
            );
            Ok(())
        }
        Command::Migrate(b) => {
            require_embedded(&b)?;
            let v = Embedded::migrate(&b.data_dir).context("migration failed")?;
            println!("schema at version {v} in {}", b.data_dir.display());
            Ok(())
        }
    }
}

fn grace(args: &ServeArgs) -> Duration {
    Duration::from_secs(args.shutdown_grace)
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

fn require_embedded(b: &BackendArgs) -> anyhow::Result<()> {
    if b.backend == Backend::Cluster {
        bail!(
            "the cluster backend (Kafka + ScyllaDB) is not available in this build yet; \
             use --backend embedded"
        );
    }
    Ok(())
}

fn open_backend(b: &BackendArgs) -> anyhow::Result<Embedded> {
    require_embedded(b)?;
    Embedded::open(&b.data_dir).with_context(|| {
        format!(
            "cannot open the embedded backend in {}",
            b.data_dir.display()
        )
    })
}

/// `serve` refuses to start without an explicit secret; `dev` keeps a
/// generated one in the data dir so sessions survive restarts.
fn auth_config(args: &ServeArgs, dev: bool) -> anyhow::Result<AuthConfig> {
    let secret = match &args.jwt_secret {
        Some(s) if s.len() >= 32 => JwtSecret::new(s.as_bytes().to_vec()),
        Some(_) => bail!("--jwt-secret must be at least 32 bytes"),
        None if dev => dev_secret(&args.backend.data_dir)?,
        None => bail!(
            "production roles need an explicit JWT secret: set --jwt-secret or PARLEY_JWT_SECRET"
        ),
    };
    Ok(AuthConfig {
        secret,
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
/// 1001, the projector finishes its batch. Background work gets `grace`.
pub async fn serve_roles(
    roles: &[Role],
    backend: &BackendArgs,
    auth: AuthConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    // Install the recorder before anything records.
    parley_http_kit::observe::prometheus();
    let embedded = open_backend(backend)?;
    let auth = Arc::new(AuthState {
        tokens: TokenService::new(&auth.secret, auth.ttl),
        revocations: embedded.users.clone(),
        cookie: CookiePolicy {
            secure: auth.cookie_secure,
            max_age_secs: auth.ttl.as_secs(),
        },
    });
    let mut app = parley_http_kit::ops::router(Readiness {
        checks: vec![Arc::new(embedded.clone())],
    });
    let mut background = JoinSet::new();
    for role in roles {
        app = app.merge(role_router(*role, &embedded, &auth, &shutdown, &mut background).await?);
    }
    tracing::info!(?roles, addr = %listener.local_addr()?, "parley started");
    let token = shutdown.clone();
    server::serve(listener, server::finish(app), async move {
        token.cancelled().await
    })
    .await
    .context("server failed")?;
    shutdown.cancel();
    if tokio::time::timeout(grace, async {
        while background.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("background work did not finish within the grace period");
    }
    tracing::info!("parley stopped");
    Ok(())
}

async fn role_router(
    role: Role,
    embedded: &Embedded,
    auth: &Arc<AuthState>,
    shutdown: &CancellationToken,
    background: &mut JoinSet<()>,
) -> anyhow::Result<Router> {
    Ok(match role {
        Role::CommandApi => parley_command_api::router(CommandApi {
            users: embedded.users.clone(),
            appender: embedded.appender.clone(),
            auth: auth.clone(),
        }),
        Role::QueryApi => parley_query_api::router(QueryApi {
            users: embedded.users.clone(),
            timelines: embedded.read_models.clone(),
            inboxes: embedded.read_models.clone(),
            auth: auth.clone(),
        }),
        Role::Projector => {
            let projector = Projector {
                log: embedded.log.clone(),
                writer: embedded.read_models.clone(),
            };
            let token = shutdown.clone();
            background.spawn(async move { projector.run(token).await });
            Router::new()
        }
        Role::WsPush => {
            let ws = WsPush {
                hub: Arc::new(Hub::starting_at(
                    embedded
                        .log
                        .latest()
                        .await
                        .context("cannot read the end of the log")?,
                )),
                auth: auth.clone(),
                log: embedded.log.clone(),
                timelines: embedded.read_models.clone(),
                appender: embedded.appender.clone(),
                shutdown: shutdown.clone(),
            };
            let tail = ws.clone();
            background.spawn(async move { tail.run_tail().await });
            parley_ws_push::router(ws)
        }
    })
}

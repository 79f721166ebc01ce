//! The HTTP server loop and the layers every role's router gets.

use std::{
    future::Future,
    net::SocketAddr,
    pin::pin,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request},
    http::{header, HeaderName, HeaderValue, StatusCode},
    middleware, Extension, Router,
};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::watch};
use tower::ServiceExt;
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use crate::{observe::track_http, origin::Origins, problem::Problem};

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// A request still running after this is answered 503 and dropped.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// How the server treats slow or untrusted clients. Requests carry it as an
/// extension, so extractors deep in a handler can read it.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// A connection that has not sent a whole request head within this is
    /// closed: a client trickling its headers (slowloris) or sitting idle
    /// between keep-alive requests holds a file descriptor only this long.
    pub header_read_timeout: Duration,
    /// A request body not received whole within this is answered 408, so a
    /// stalled or trickled body does not hold a handler for the full
    /// request timeout.
    pub body_read_timeout: Duration,
    /// Take the client's address from the last `X-Forwarded-For` entry
    /// (the one the nearest proxy wrote). Only behind a proxy that sets it:
    /// otherwise any client could pick its own rate-limit key.
    pub trust_forwarded_for: bool,
    /// Browser origins other than the server's own that may call the API
    /// with the session cookie; CORS answers only for these.
    pub allowed_origins: Origins,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            trust_forwarded_for: false,
            allowed_origins: Origins::default(),
        }
    }
}

/// Adds the fallbacks and layers every role shares: problem+json 404/405,
/// body limit, timeout, request ids, tracing spans, HTTP metrics, the
/// headers every response carries, and CORS when origins are allowed.
pub fn finish(app: Router, config: &HttpConfig) -> Router {
    let app = app
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async { Problem::method_not_allowed() })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(track_http))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("unmatched", |p| p.as_str());
                    let id = req
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    let method = crate::observe::method_label(req.method());
                    tracing::info_span!("http", method, route, request_id = id)
                })
                // A 5xx's cause is logged where it arose; one line per refused
                // request here would let a flood fill the log as well.
                .on_failure(
                    tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
                ),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        // Responses hold sessions and private messages: no browser may
        // guess another type for them, and no cache may keep them.
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    let app = match crate::origin::cors(&config.allowed_origins) {
        Some(cors) => app.layer(cors),
        None => app,
    };
    app.layer(Extension(Arc::new(config.clone())))
}

/// Serves `app` until `shutdown` resolves, then stops accepting and lets
/// in-flight requests finish. Each request carries the client's socket
/// address (`ConnectInfo`); a connection that does not finish a request
/// head within `header_read_timeout` is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Connection tasks watch `signal` close to start a graceful shutdown,
    // and hold `closed` until they end, so its sender can wait for them.
    let (signal_tx, signal_rx) = watch::channel(());
    let (closed_tx, closed_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    let mut accept_errors = AcceptErrors::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_errors.wait_after(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req)
        });
        let signal = signal_tx.clone();
        let closed = closed_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let mut conn = pin!(builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades());
            let mut stopping = pin!(signal.closed());
            let mut told = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, %peer, "connection ended with an error");
                        }
                        break;
                    }
                    () = &mut stopping, if !told => {
                        told = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(closed);
        });
    }
    drop(listener);
    drop(signal_rx);
    drop(closed_rx);
    closed_tx.closed().await;
    Ok(())
}

/// What the accept loop does when `accept` fails. Running out of file
/// descriptors must not end the loop: it waits a moment (so it does not
/// spin) and accepts again once connections have closed; the warning is
/// logged at most once a second.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
}

impl AcceptErrors {
    async fn wait_after(&mut self, e: std::io::Error) {
        use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
        // The peer gave up before we accepted: nothing is wrong here.
        if matches!(
            e.kind(),
            ConnectionAborted | ConnectionRefused | ConnectionReset
        ) {
            return;
        }
        metrics::counter!("parley_http_accept_errors_total").increment(1);
        if self
            .last_logged
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            self.last_logged = Some(Instant::now());
            tracing::warn!(error = %e, "cannot accept connections");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The client address a request came from, if the server loop recorded it.
pub fn peer_addr(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| *a)
}

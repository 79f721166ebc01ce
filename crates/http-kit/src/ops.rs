//! Operational routes every role serves: liveness, readiness, metrics and
//! the OpenAPI document.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::{
    extract::{Request, State},
    http::{header, StatusCode},
    response::IntoResponse,
    routing::{any, get},
    Json, Router,
};
use parley_domain::ports::HealthCheck;
use serde_json::json;

use tower::ServiceExt;

use crate::{observe::metrics_page, problem::Problem};

/// Longest a readiness probe waits for one dependency.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` asks: every log and store this role depends on.
#[derive(Clone, Default)]
pub struct Readiness {
    pub checks: Vec<Arc<dyn HealthCheck>>,
}

/// `openapi` is the document `/openapi.json` serves (see [`crate::api`]).
pub fn router(readiness: Readiness, openapi: Arc<str>) -> Router {
    always(openapi)
        .route("/readyz", get(readyz))
        .with_state(Arc::new(readiness))
}

/// Routes that answer whether or not the backend is connected.
fn always<S: Clone + Send + Sync + 'static>(openapi: Arc<str>) -> Router<S> {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics_page))
        .route(
            "/openapi.json",
            get(move || {
                let doc = openapi.clone();
                async move {
                    (
                        [
                            (header::CONTENT_TYPE, "application/json"),
                            // The same for every caller and every request.
                            (header::CACHE_CONTROL, "public, max-age=300"),
                        ],
                        doc.to_string(),
                    )
                }
            }),
        )
}

/// What a role serves while it is still connecting to its log and store:
/// liveness, metrics and the OpenAPI document answer; `/readyz` and every
/// API route answer 503 with `Retry-After`.
pub fn starting(openapi: Arc<str>) -> Router {
    always(openapi)
        .route(
            "/readyz",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "1")],
                    Json(json!({"status": "not ready", "checks": {"backend": "connecting"}})),
                )
            }),
        )
        // Routes, not a fallback: `server::finish` sets the 404 fallback.
        .route("/", any(|| async { Problem::unavailable() }))
        .route("/{*path}", any(|| async { Problem::unavailable() }))
}

/// Serves the role's router once `app` is set, and [`starting`] until then,
/// so a role listens (and says it is not ready) before its backend is up.
pub fn deferred(app: Arc<OnceLock<Router>>, starting: Router) -> Router {
    Router::new().fallback_service(tower::service_fn(move |req: Request| {
        let target = app.get().cloned().unwrap_or_else(|| starting.clone());
        target.oneshot(req)
    }))
}

/// 200 only when every dependency answered within the timeout.
async fn readyz(State(r): State<Arc<Readiness>>) -> impl IntoResponse {
    let mut ready = true;
    let mut checks = serde_json::Map::new();
    for c in &r.checks {
        let ok = matches!(
            tokio::time::timeout(CHECK_TIMEOUT, c.check()).await,
            Ok(Ok(()))
        );
        ready &= ok;
        checks.insert(
            c.name().to_owned(),
            json!(if ok { "ok" } else { "unavailable" }),
        );
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({"status": if ready { "ready" } else { "not ready" }, "checks": checks});
    (status, Json(body))
}

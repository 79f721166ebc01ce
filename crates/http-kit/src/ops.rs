//! Operational routes every role serves: liveness, readiness, metrics and
//! the OpenAPI document.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    routing::get,
    Json, Router,
};
use parley_domain::ports::HealthCheck;
use serde_json::json;

use crate::observe::metrics_page;

/// The OpenAPI 3 description of every route, kept beside the code that
/// serves them; a test checks that every route is described.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Longest a readiness probe waits for one dependency.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/readyz` asks: every log and store this role depends on.
#[derive(Clone, Default)]
pub struct Readiness {
    pub checks: Vec<Arc<dyn HealthCheck>>,
}

pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .with_state(Arc::new(readiness))
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

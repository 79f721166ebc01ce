//! What a cluster role says while it cannot connect: `/readyz` names the
//! dependency that refused it and why (a wrong password, a TLS failure, a
//! node that does not answer), so an operator reads the cause from the
//! probe instead of a bare "connecting".

use std::sync::{Arc, Mutex};

use axum::{
    extract::{Request, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    Json, Router,
};
use parley_http_kit::ops;
use serde_json::json;

use crate::backend::ConnectError;

/// The last failed attempt to connect, shared by the retry loop and the
/// `/readyz` answer.
#[derive(Clone, Default)]
pub struct LastAttempt(Arc<Mutex<Option<(&'static str, String)>>>);

impl LastAttempt {
    pub fn failed(&self, e: &ConnectError) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some((e.dependency, e.error.chain().to_string()));
        }
    }

    fn get(&self) -> Option<(&'static str, String)> {
        self.0.lock().ok().and_then(|last| last.clone())
    }
}

/// [`ops::starting`], whose `/readyz` names the cause once an attempt
/// has failed.
pub fn starting(last: LastAttempt, openapi: std::sync::Arc<str>) -> Router {
    ops::starting(openapi).route_layer(middleware::from_fn_with_state(last, name_the_cause))
}

async fn name_the_cause(State(last): State<LastAttempt>, req: Request, next: Next) -> Response {
    if req.uri().path() != "/readyz" {
        return next.run(req).await;
    }
    match last.get() {
        Some((dependency, cause)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(json!({"status": "not ready", "checks": {dependency: cause}})),
        )
            .into_response(),
        None => next.run(req).await,
    }
}

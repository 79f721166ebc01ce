//! Extractors that turn malformed input into Parley's problem+json (400,
//! 408, 413, 415, 422) instead of axum's plain-text rejections.

use std::{sync::Arc, time::Duration};

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderMap, StatusCode},
};
use serde::de::DeserializeOwned;

use crate::{problem::Problem, server::HttpConfig};

/// A JSON body. Anything but `Content-Type: application/json` is 415 (a
/// page on another site can send `text/plain` without asking the browser's
/// permission first); a body that does not arrive whole in time is 408;
/// syntax errors are 400; a well-formed body of the wrong shape (missing
/// field, wrong type) is 422; over the body limit is 413.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(Problem::unsupported_media_type());
        }
        let deadline = req
            .extensions()
            .get::<Arc<HttpConfig>>()
            .map_or(Duration::from_secs(10), |c| c.body_read_timeout);
        let read = tokio::time::timeout(deadline, Bytes::from_request(req, state)).await;
        let Ok(read) = read else {
            metrics::counter!("parley_http_body_timeouts_total").increment(1);
            return Err(Problem::request_timeout());
        };
        let bytes = read.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::too_large()
            } else {
                Problem::bad_request("could not read the request body")
            }
        })?;
        parse_json(&bytes).map(AppJson)
    }
}

/// `application/json`, with or without parameters such as `charset`.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Parses a JSON document with the status rules of [`AppJson`].
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T =
        serde_path_to_error::deserialize(&mut de).map_err(|e| match e.inner().classify() {
            serde_json::error::Category::Data => {
                shape_problem(e.path().to_string(), e.inner().to_string())
            }
            _ => Problem::bad_request(format!("malformed JSON: {}", e.inner())),
        })?;
    de.end()
        .map_err(|e| Problem::bad_request(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Deserializes an already-parsed JSON value; shape errors are 422.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Problem> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| shape_problem(e.path().to_string(), e.inner().to_string()))
}

/// A 422 naming the field a shape error is about: the path where one is
/// known, else the field a "missing field `x`" message names.
fn shape_problem(path: String, message: String) -> Problem {
    let field = if path != "." {
        path
    } else if let Some(name) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next())
    {
        name.to_owned()
    } else {
        "body".to_owned()
    };
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or_default()
        .to_owned();
    Problem::invalid_field(field, message)
}

/// A query string; a value of the wrong type is 422.
pub struct AppQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for AppQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| AppQuery(q.0))
            .map_err(|e| {
                Problem::invalid(parley_domain::ValidationError::new("query", e.body_text()))
            })
    }
}

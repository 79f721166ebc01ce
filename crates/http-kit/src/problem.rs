//! RFC 9457 problem details. Every error Parley returns has this shape;
//! internal error text never reaches a response, it goes to the log.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use parley_domain::{StoreError, ValidationError};
use serde::Serialize;

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u32 = 1;

#[derive(Debug, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Seconds for `Retry-After` (429 and 503).
    #[serde(skip)]
    pub retry_after: Option<u64>,
    /// Ends the connection after the answer: the request's body was not
    /// read whole, so the stream is not at a request boundary.
    #[serde(skip)]
    pub close: bool,
}

impl Problem {
    fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<Option<String>>,
    ) -> Self {
        Self {
            kind,
            title,
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
            close: false,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "urn:parley:problem:malformed",
            "Malformed request",
            Some(detail.into()),
        )
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "urn:parley:problem:unauthorized",
            "Not authenticated",
            Some("a valid session token is required".to_owned()),
        )
    }
    pub fn bad_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "urn:parley:problem:bad-credentials",
            "Wrong username or password",
            None,
        )
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "urn:parley:problem:forbidden",
            "Forbidden",
            Some(detail.into()),
        )
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "urn:parley:problem:not-found",
            "Not found",
            Some(detail.into()),
        )
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "urn:parley:problem:method-not-allowed",
            "Method not allowed",
            None,
        )
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "urn:parley:problem:conflict",
            "Conflict",
            Some(detail.into()),
        )
    }
    pub fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "urn:parley:problem:too-large",
            "Request body too large",
            Some("bodies are limited to 64 KiB".to_owned()),
        )
    }
    pub fn invalid(e: ValidationError) -> Self {
        Self::invalid_field(e.field.to_owned(), e.message)
    }
    /// A 422 naming `field` (a JSON field or query parameter).
    pub fn invalid_field(field: String, message: String) -> Self {
        let mut p = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "urn:parley:problem:validation",
            "Invalid request",
            Some(format!("{field}: {message}")),
        );
        p.errors.push(FieldError { field, message });
        p
    }
    pub fn unavailable() -> Self {
        let mut p = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "urn:parley:problem:unavailable",
            "Service unavailable",
            Some("a backend is unavailable; retry later".to_owned()),
        );
        p.retry_after = Some(RETRY_AFTER_SECS.into());
        p
    }
    /// 503 because the server is at capacity (not because a backend is
    /// down): retry after `retry_after`.
    pub fn busy(detail: impl Into<String>, retry_after: std::time::Duration) -> Self {
        let mut p = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "urn:parley:problem:busy",
            "Server busy",
            Some(detail.into()),
        );
        p.retry_after = Some(whole_seconds(retry_after));
        p
    }
    /// 429: the caller used up a rate limit; it may try again after
    /// `retry_after`.
    pub fn too_many(detail: impl Into<String>, retry_after: std::time::Duration) -> Self {
        let mut p = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "urn:parley:problem:rate-limited",
            "Too many requests",
            Some(detail.into()),
        );
        p.retry_after = Some(whole_seconds(retry_after));
        p
    }
    /// 408: the request's body did not arrive in time.
    pub fn request_timeout() -> Self {
        let mut p = Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "urn:parley:problem:timeout",
            "Request timeout",
            Some("the request body did not arrive in time".to_owned()),
        );
        p.close = true;
        p
    }
    /// 415: the body is not JSON.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "urn:parley:problem:media-type",
            "Unsupported media type",
            Some("the body must be sent as Content-Type: application/json".to_owned()),
        )
    }
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "urn:parley:problem:internal",
            "Internal error",
            None,
        )
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// `Retry-After` takes whole seconds; a wait of 0.2 s is announced as 1 s
/// so a client that obeys it is never early.
fn whole_seconds(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl From<ValidationError> for Problem {
    fn from(e: ValidationError) -> Self {
        Self::invalid(e)
    }
}

impl From<StoreError> for Problem {
    /// Logs the cause server-side; the client sees only the category.
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Conflict(_) => Problem::conflict("the resource already exists"),
            StoreError::Unavailable(_) => {
                tracing::warn!(cause = %e.chain(), "backend unavailable");
                Problem::unavailable()
            }
            StoreError::Unexpected(_) => {
                tracing::error!(cause = %e.chain(), "unexpected backend error");
                Problem::internal()
            }
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.close {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}

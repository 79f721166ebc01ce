//! Errors shared by every port, sorted the way callers must react to them.

use std::fmt;

/// A rule a client-supplied value broke. `field` names the JSON field so the
/// client can point at it; `message` is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ValidationError {}

/// What went wrong talking to a log or a store. Adapters sort driver errors
/// into these three so the HTTP layer can answer 409, 503 or an opaque 500
/// without knowing which driver produced them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule said no (a taken username).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The backend cannot be reached or is overloaded; retrying later may work.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug, corrupt data, a schema mismatch.
    #[error("unexpected backend error: {0}")]
    Unexpected(String),
}

impl StoreError {
    pub fn unexpected(e: impl fmt::Display) -> Self {
        Self::Unexpected(e.to_string())
    }
    pub fn unavailable(e: impl fmt::Display) -> Self {
        Self::Unavailable(e.to_string())
    }
}

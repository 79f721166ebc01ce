//! Settings every role shares, independent of how they were parsed.

use std::fmt;

/// The JWT signing key. Never printed: `Debug` is redacted.
#[derive(Clone)]
pub struct JwtSecret(Vec<u8>);

impl JwtSecret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(<redacted>)")
    }
}

/// How the session cookie is written.
#[derive(Clone, Copy, Debug)]
pub struct CookiePolicy {
    /// Adds `Secure`, for deployments behind TLS.
    pub secure: bool,
    pub max_age_secs: u64,
}

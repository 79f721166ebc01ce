//! Session auth for REST and WebSocket: `Authorization: Bearer <token>` or
//! the `parley_session` cookie, verified and checked against logouts.

use std::sync::Arc;

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{header, request::Parts, HeaderMap, HeaderValue},
};
use parley_domain::{
    auth::{Session, TokenService},
    config::CookiePolicy,
    ports::SessionRevocations,
};

use crate::{origin::Origins, problem::Problem};

pub const COOKIE_NAME: &str = "parley_session";

/// Everything needed to turn a request into a verified caller.
pub struct AuthState {
    pub tokens: TokenService,
    pub revocations: Arc<dyn SessionRevocations>,
    pub cookie: CookiePolicy,
    /// Origins besides the server's own whose pages may act with the
    /// session cookie.
    pub origins: Origins,
}

impl AuthState {
    /// The session a raw token stands for, or 401 / 503.
    pub async fn verify(&self, token: &str) -> Result<Session, Problem> {
        let session = self
            .tokens
            .verify(token)
            .ok_or_else(Problem::unauthorized)?;
        if self.revocations.is_revoked(&session).await? {
            return Err(Problem::unauthorized());
        }
        Ok(session)
    }

    /// 403 when a browser page on a foreign origin sent this request with
    /// the session cookie (see [`crate::origin::check`]); the WebSocket
    /// upgrade calls it too.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), Problem> {
        crate::origin::check(headers, &self.origins)
    }

    /// `Set-Cookie` value that stores `token`.
    pub fn session_cookie(&self, token: &str) -> HeaderValue {
        self.cookie_value(token, self.cookie.max_age_secs)
    }

    /// `Set-Cookie` value that clears the session cookie.
    pub fn cleared_cookie(&self) -> HeaderValue {
        self.cookie_value("", 0)
    }

    fn cookie_value(&self, token: &str, max_age: u64) -> HeaderValue {
        let secure = if self.cookie.secure { "; Secure" } else { "" };
        let v = format!(
            "{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
        );
        HeaderValue::from_str(&v)
            .unwrap_or_else(|_| HeaderValue::from_static("parley_session=; Max-Age=0"))
    }
}

/// The token a request carries: the Bearer header first, then the cookie.
pub fn token_from_headers(headers: &HeaderMap) -> Option<&str> {
    session_token(headers).map(|(token, _)| token)
}

/// Where a request's token came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer`: a page on another site cannot make a
    /// browser send it, so it needs no origin check.
    Bearer,
    /// The session cookie, which a browser attaches on its own.
    Cookie,
}

/// The token a request carries and where it came from: the Bearer header
/// first, then the cookie.
pub fn session_token(headers: &HeaderMap) -> Option<(&str, TokenSource)> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| (token.trim(), TokenSource::Bearer));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
        .map(|v| (v, TokenSource::Cookie))
}

/// The verified caller of a request. The only way a handler learns who is
/// asking; a missing, invalid, expired or logged-out token is a 401. A
/// state-changing request authenticated by the cookie from a foreign origin
/// is a 403, decided before the body is read.
pub struct Caller(pub Session);

impl<S> FromRequestParts<S> for Caller
where
    Arc<AuthState>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Arc::<AuthState>::from_ref(state);
        let (token, source) = session_token(&parts.headers).ok_or_else(Problem::unauthorized)?;
        if source == TokenSource::Cookie && crate::origin::changes_state(&parts.method) {
            auth.check_origin(&parts.headers)?;
        }
        auth.verify(token).await.map(Caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_wins_over_cookie_and_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; parley_session=tok; b=2"),
        );
        assert_eq!(token_from_headers(&h), Some("tok"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer xyz"),
        );
        assert_eq!(token_from_headers(&h), Some("xyz"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert_eq!(token_from_headers(&h), None);
    }
}

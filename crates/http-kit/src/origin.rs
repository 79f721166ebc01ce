//! Which browser origins may act with a user's session cookie: the
//! server's own, plus those an operator allows. Guards against cross-site
//! request forgery on REST and against cross-site WebSocket hijacking on
//! the socket upgrade (both call [`check`]), and decides CORS.

use std::{sync::Arc, time::Duration};

use axum::http::{header, HeaderMap, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::problem::Problem;

/// Origins allowed besides the server's own, as `scheme://host[:port]`,
/// lower-cased.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origins(Arc<[String]>);

impl Origins {
    /// Parses `https://app.example.com`-style origins. A wildcard, `null`,
    /// or anything with a path is refused: each allowed origin is a site
    /// trusted with its users' sessions.
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<Self, String> {
        let mut out = Vec::with_capacity(list.len());
        for raw in list {
            let raw = raw.as_ref().trim();
            if raw.is_empty() {
                continue;
            }
            let o = raw.trim_end_matches('/').to_ascii_lowercase();
            let authority = o
                .strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"))
                .ok_or_else(|| format!("{raw}: an origin is http(s)://host[:port]"))?;
            if authority.is_empty()
                || authority.contains(['/', '?', '#', '*', '@', ' '])
                || HeaderValue::from_str(&o).is_err()
            {
                return Err(format!("{raw}: an origin is http(s)://host[:port]"));
            }
            out.push(o);
        }
        Ok(Self(out.into()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    fn contains(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o == origin)
    }
}

/// Refuses (403) a request that a page on a foreign origin made a browser
/// send. Call it for requests that the session cookie authenticates and
/// that change state, and for the WebSocket upgrade. A request without
/// `Origin` comes from a client that is not a browser page (curl, an app),
/// which no other site can make send the cookie: it passes.
pub fn check(headers: &HeaderMap, allowed: &Origins) -> Result<(), Problem> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let refused = || {
        metrics::counter!("parley_http_foreign_origin_total").increment(1);
        Problem::forbidden("requests with the session cookie are not accepted from this origin")
    };
    let origin = origin
        .to_str()
        .map_err(|_| refused())?
        .trim()
        .to_ascii_lowercase();
    if allowed.contains(&origin) || is_own(&origin, headers) {
        Ok(())
    } else {
        Err(refused())
    }
}

/// Whether `origin` names the host the request was sent to (default
/// ports aside), i.e. the page was served by this server.
fn is_own(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    let (scheme, authority) = match origin.split_once("://") {
        Some(parts) => parts,
        None => return false,
    };
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let strip = |a: &str| a.strip_suffix(default_port).unwrap_or(a).to_owned();
    !authority.is_empty() && strip(authority) == strip(&host)
}

/// Whether a method changes state (and so needs the origin check when the
/// cookie authenticates it).
pub fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// CORS for the allowed origins, with credentials; `None` (no CORS headers
/// at all, so browsers keep other sites out) when none are allowed.
pub fn cors(allowed: &Origins) -> Option<CorsLayer> {
    if allowed.is_empty() {
        return None;
    }
    let list: Vec<HeaderValue> = allowed
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::RETRY_AFTER])
            .max_age(Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&'static str>, host: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static(host));
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_static(o));
        }
        h
    }

    #[test]
    fn own_allowed_and_absent_origins_pass_others_do_not() {
        let allowed = Origins::parse(&["https://App.example.com/"]).unwrap();
        let ok = |o, host| check(&headers(o, host), &allowed).is_ok();
        assert!(ok(None, "chat.example.com"));
        assert!(ok(Some("https://chat.example.com"), "chat.example.com"));
        assert!(ok(Some("https://chat.example.com"), "chat.example.com:443"));
        assert!(ok(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"));
        assert!(ok(Some("https://app.example.com"), "chat.example.com"));
        assert!(!ok(Some("https://evil.example"), "chat.example.com"));
        assert!(!ok(Some("null"), "chat.example.com"));
        assert!(!ok(Some("http://127.0.0.1:9999"), "127.0.0.1:8080"));
        assert!(!ok(
            Some("https://chat.example.com.evil"),
            "chat.example.com"
        ));
    }

    #[test]
    fn only_plain_origins_can_be_allowed() {
        for bad in [
            "*",
            "null",
            "app.example.com",
            "https://a.example/path",
            "ftp://x",
        ] {
            assert!(Origins::parse(&[bad]).is_err(), "{bad}");
        }
        assert!(Origins::parse::<&str>(&[]).unwrap().is_empty());
    }
}

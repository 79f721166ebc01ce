//! Who is on the other end of a request, as far as rate limits care.

use std::{
    convert::Infallible,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use axum::{
    extract::FromRequestParts,
    http::{request::Parts, HeaderMap},
};

use crate::server::{peer_addr, HttpConfig};

/// The client's address: the socket's peer, or behind a trusted proxy
/// (`--trust-forwarded-for`) the last `X-Forwarded-For` entry, the one that
/// proxy wrote (earlier entries are whatever the client claimed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// What a per-address limit is keyed by: an IPv6 client controls a
    /// whole /64, so it counts as one address.
    pub fn limit_key(&self) -> IpAddr {
        match self.0 {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(Ipv6Addr::from(bits))
                }
            },
            v4 => v4,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let trust = parts
            .extensions
            .get::<Arc<HttpConfig>>()
            .is_some_and(|c| c.trust_forwarded_for);
        let forwarded = trust.then(|| last_forwarded(&parts.headers)).flatten();
        let peer = peer_addr(&parts.extensions).map(|a| a.ip());
        Ok(Self(
            forwarded
                .or(peer)
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        ))
    }
}

/// The last address of the last `X-Forwarded-For` header.
fn last_forwarded(headers: &HeaderMap) -> Option<IpAddr> {
    let last = headers.get_all("x-forwarded-for").iter().next_back()?;
    let entry = last.to_str().ok()?.rsplit(',').next()?.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_proxy_written_entry_is_the_last_one() {
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, 2.2.2.2"),
        );
        h.append(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 10.0.0.7"),
        );
        assert_eq!(last_forwarded(&h), Some("10.0.0.7".parse().unwrap()));
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("junk"));
        assert_eq!(last_forwarded(&h), None);
    }

    #[test]
    fn an_ipv6_client_is_keyed_by_its_64() {
        let a = ClientAddr("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = ClientAddr("2001:db8:1:2:bbbb::9".parse().unwrap());
        let c = ClientAddr("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a.limit_key(), b.limit_key());
        assert_ne!(a.limit_key(), c.limit_key());
        let mapped = ClientAddr("::ffff:127.0.0.1".parse().unwrap());
        assert_eq!(mapped.limit_key(), "127.0.0.1".parse::<IpAddr>().unwrap());
    }
}

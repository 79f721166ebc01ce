//! TLS and password authentication for the CQL connection, so managed and
//! secured clusters (Scylla Cloud, a cluster with client encryption and
//! `PasswordAuthenticator`) work.
//!
//! TLS is OpenSSL, the library librdkafka already links for Kafka's TLS and
//! SCRAM: one TLS stack in the binary, one set of PEM files and one place
//! for security updates. The driver checks each node's certificate against
//! the node's IP address, so node certificates carry their IPs as
//! subjectAltNames.

use std::{fmt, path::PathBuf};

use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use parley_domain::StoreError;
use scylla::client::session_builder::SessionBuilder;

/// A user name and its password. `Debug` never shows the password.
#[derive(Clone)]
pub struct CqlCredentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for CqlCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CqlCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Client encryption. Without a CA file the system's trust store verifies
/// the nodes (what a managed cluster with a public CA needs).
#[derive(Clone, Debug, Default)]
pub struct CqlTls {
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, for clusters that require one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// How Parley proves who it is to the cluster and protects the connection;
/// the default is neither (a cluster on a private network, or tests).
#[derive(Clone, Debug, Default)]
pub struct CqlSecurity {
    pub tls: Option<CqlTls>,
    pub credentials: Option<CqlCredentials>,
}

/// Adds what `security` asks for to a session builder. Fails (as a
/// configuration error, not "unavailable") when a file cannot be read:
/// retrying will not make it appear.
pub(crate) fn secure(
    builder: SessionBuilder,
    security: &CqlSecurity,
) -> Result<SessionBuilder, StoreError> {
    let (tls, credentials) = (security.tls.as_ref(), security.credentials.as_ref());
    let builder = match credentials {
        Some(c) => builder.user(c.username.clone(), c.password.clone()),
        None => builder,
    };
    let Some(tls) = tls else {
        return Ok(builder);
    };
    let mut ssl = SslConnector::builder(SslMethod::tls_client())
        .map_err(|e| StoreError::unexpected(e).context("cannot set up TLS"))?;
    ssl.set_verify(SslVerifyMode::PEER);
    if let Some(ca) = &tls.ca_file {
        ssl.set_ca_file(ca)
            .map_err(|e| file_error("CA file", ca, e))?;
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            ssl.set_certificate_chain_file(cert)
                .map_err(|e| file_error("client certificate", cert, e))?;
            ssl.set_private_key_file(key, SslFiletype::PEM)
                .map_err(|e| file_error("client key", key, e))?;
            ssl.check_private_key().map_err(|e| {
                StoreError::unexpected(e).context(format!(
                    "the CQL client key {} does not match its certificate",
                    key.display()
                ))
            })?;
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::unexpected_msg(
                "a CQL client certificate needs its key, and a key its certificate",
            ))
        }
    }
    Ok(builder.tls_context(Some(ssl)))
}

fn file_error(
    what: &str,
    path: &std::path::Path,
    e: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::unexpected(e).context(format!("cannot use {} as the CQL {what}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(tls: CqlTls) -> CqlSecurity {
        CqlSecurity {
            tls: Some(tls),
            credentials: None,
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let c = CqlCredentials {
            username: "parley".into(),
            password: "hunter2-hunter2".into(),
        };
        let shown = format!("{c:?}");
        assert!(
            shown.contains("parley") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn a_missing_ca_file_is_a_configuration_error() {
        let tls = CqlTls {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = secure(SessionBuilder::new(), &with(tls))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("unexpected") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let tls = CqlTls {
            cert_file: Some("/tmp/cert.pem".into()),
            ..Default::default()
        };
        assert!(secure(SessionBuilder::new(), &with(tls)).is_err());
    }
}

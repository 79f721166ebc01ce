//! What every Kafka client Parley creates (producer, consumers, admin)
//! shares: the brokers, the security settings and the operator's own
//! librdkafka properties, and a context that remembers why the cluster
//! refused us, so "not ready" can say "wrong password" instead of "timed
//! out".

use std::{
    fmt,
    sync::{Arc, Mutex},
};

use parley_domain::StoreError;
use rdkafka::{
    client::ClientContext,
    config::{ClientConfig, FromClientConfigAndContext, RDKafkaLogLevel},
    consumer::ConsumerContext,
    error::{KafkaError, RDKafkaErrorCode},
};

use crate::{kafka_error, KafkaConfig};

/// librdkafka properties applied to every client after Parley's own, so an
/// operator can tune anything (timeouts a managed cluster asks for, mutual
/// TLS, OAUTHBEARER) without a new flag. Values of secret properties never
/// appear in `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientProperties(Vec<(String, String)>);

impl ClientProperties {
    /// Adds or replaces one property.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        self.0.retain(|(k, _)| *k != key);
        self.0.push((key, value));
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Properties whose values are credentials or private keys.
pub fn is_secret_property(key: &str) -> bool {
    key.contains("password")
        || key.contains("secret")
        || key == "ssl.key.pem"
        || key == "ssl_key"
        || key == "sasl.oauthbearer.config"
}

impl fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_secret_property(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k, shown)
            }))
            .finish()
    }
}

/// The last error librdkafka reported for any client of one connection
/// (authentication, TLS, unreachable brokers). Requests that fail only
/// say "timed out"; this says why.
#[derive(Clone, Default)]
pub(crate) struct LastError(Arc<Mutex<Option<(RDKafkaErrorCode, String)>>>);

impl LastError {
    /// Keeps `code` unless it would hide a refusal: "all brokers down"
    /// follows every failed login, and must not replace it.
    fn record(&self, code: RDKafkaErrorCode, reason: &str) {
        if let Ok(mut last) = self.0.lock() {
            let keep_old = matches!(&*last, Some((old, _)) if refusal(*old).is_some())
                && refusal(code).is_none();
            if !keep_old {
                *last = Some((code, reason.to_owned()));
            }
        }
    }

    pub(crate) fn take(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.0.lock().ok().and_then(|mut last| last.take())
    }

    /// `e` with the reason the cluster gave, if one was reported: an
    /// authentication or TLS failure is named first, since no retry fixes
    /// it without the operator.
    pub(crate) fn explain(&self, e: StoreError) -> StoreError {
        let Some((code, reason)) = self.take() else {
            return e;
        };
        let cause = refusal(code).unwrap_or("cannot reach the brokers");
        let kept = match e {
            StoreError::Unavailable(c) | StoreError::Unexpected(c) | StoreError::Conflict(c) => c,
        };
        StoreError::Unavailable(kept).context(format!("{cause}: {reason}"))
    }
}

/// What a refusal by the cluster is called, for the errors no retry fixes
/// without the operator.
fn refusal(code: RDKafkaErrorCode) -> Option<&'static str> {
    match code {
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
            Some("authentication failed")
        }
        RDKafkaErrorCode::ClusterAuthorizationFailed
        | RDKafkaErrorCode::TopicAuthorizationFailed
        | RDKafkaErrorCode::GroupAuthorizationFailed => Some("not authorized"),
        RDKafkaErrorCode::SSL => Some("TLS failed"),
        _ => None,
    }
}

/// The client context of every Parley client: librdkafka's log lines go
/// to `tracing` at their own level (a failed login is one error line), and
/// its errors are kept for [`LastError::explain`].
#[derive(Clone, Default)]
pub struct Observed {
    pub(crate) last: LastError,
}

impl ClientContext for Observed {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{log_message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", facility = fac, "{log_message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        tracing::debug!(target: "librdkafka", error = %error, "kafka client: {reason}");
        if let Some(code) = code {
            self.last.record(code, reason);
        }
    }
}

impl ConsumerContext for Observed {}

/// Parley's settings for every client: brokers, reconnect pacing and the
/// security properties. Callers add their own, then [`create`].
pub(crate) fn client_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("socket.nagle.disable", "true")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "5000")
        .set("log_level", "4");
    c
}

/// Applies the operator's properties last (they win), then creates the
/// client with a context that reports into `last`.
pub(crate) fn create<T>(
    mut c: ClientConfig,
    config: &KafkaConfig,
    last: &LastError,
) -> Result<T, StoreError>
where
    T: FromClientConfigAndContext<Observed>,
{
    for (k, v) in config.properties.iter() {
        c.set(k, v);
    }
    c.create_with_context(Observed { last: last.clone() })
        .map_err(kafka_error)
}

/// The `security.protocol` a configuration asks for, for the log line that
/// says how Parley connected.
pub(crate) fn protocol(config: &KafkaConfig) -> &str {
    config
        .properties
        .get("security.protocol")
        .unwrap_or("plaintext")
}

pub(crate) type Producer = rdkafka::producer::FutureProducer<Observed>;
pub(crate) type Admin = rdkafka::admin::AdminClient<Observed>;
pub(crate) type Reader = rdkafka::consumer::BaseConsumer<Observed>;
pub(crate) type Stream = rdkafka::consumer::StreamConsumer<Observed>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secret_values_only() {
        let mut p = ClientProperties::default();
        p.set("sasl.username", "parley");
        p.set("sasl.password", "hunter2-hunter2");
        p.set("ssl.key.password", "pem-pass");
        p.set("ssl.key.pem", "-----BEGIN PRIVATE KEY-----");
        let shown = format!("{p:?}");
        assert!(shown.contains("parley"), "{shown}");
        for secret in ["hunter2", "pem-pass", "BEGIN PRIVATE"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn a_property_set_twice_keeps_the_last_value() {
        let mut p = ClientProperties::default();
        p.set("linger.ms", "1");
        p.set("linger.ms", "5");
        assert_eq!(p.iter().collect::<Vec<_>>(), [("linger.ms", "5")]);
    }

    #[test]
    fn an_authentication_error_is_named_before_the_timeout() {
        let last = LastError::default();
        last.record(
            RDKafkaErrorCode::Authentication,
            "SASL authentication error: invalid credentials",
        );
        // "All brokers down" follows a failed login and does not hide it.
        last.record(RDKafkaErrorCode::AllBrokersDown, "1/1 brokers are down");
        let text = last
            .explain(StoreError::unavailable_msg("timed out"))
            .to_string();
        assert!(
            text.contains("authentication failed: SASL authentication error"),
            "{text}"
        );
        assert!(text.contains("timed out"), "{text}");
        // Reported once: the next failure without news is itself.
        let again = last.explain(StoreError::unavailable_msg("timed out"));
        assert_eq!(again.to_string(), "backend unavailable: timed out");
    }
}

//! Flags for secured connections: TLS and SASL to Kafka, TLS and a
//! password to the CQL store, and librdkafka properties passed through.
//! Secrets are [`Secret`]s, which never print, and their environment
//! values are hidden from `--help`.

use std::{fmt, path::PathBuf, str::FromStr};

use clap::{Args, ValueEnum};
use parley_log_kafka::{is_secret_property, ClientProperties};
use parley_store_cql::{CqlCredentials, CqlSecurity, CqlTls};

/// A password or other credential. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KafkaProtocol {
    #[default]
    #[value(name = "plaintext")]
    Plaintext,
    #[value(name = "ssl")]
    Ssl,
    #[value(name = "sasl_plaintext")]
    SaslPlaintext,
    #[value(name = "sasl_ssl")]
    SaslSsl,
}

impl KafkaProtocol {
    fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }
    fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SaslMechanism {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[default]
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// Properties Parley's guarantees rest on, or that have a flag of their
/// own: a pass-through may not change them.
const OWNED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "use --kafka-brokers"),
    ("metadata.broker.list", "use --kafka-brokers"),
    ("group.id", "consumer groups are named after the keyspace"),
    (
        "enable.auto.commit",
        "offsets are committed after the work they cover",
    ),
    (
        "enable.auto.offset.store",
        "offsets are committed after the work they cover",
    ),
    ("enable.idempotence", "the producer must be idempotent"),
    (
        "acks",
        "a send is durable only when every in-sync replica has it",
    ),
    (
        "request.required.acks",
        "a send is durable only when every in-sync replica has it",
    ),
];

/// One `key=value` librdkafka property from `--kafka-config`.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaProperty {
    pub key: String,
    pub value: String,
}

impl FromStr for KafkaProperty {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| format!("expected key=value, got {s:?}"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("no property name in {s:?}"));
        }
        if let Some((_, why)) = OWNED_PROPERTIES.iter().find(|(k, _)| *k == key) {
            return Err(format!("{key} cannot be set here: {why}"));
        }
        Ok(Self {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }
}

impl fmt::Debug for KafkaProperty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_secret_property(&self.key) {
            write!(f, "{}=<redacted>", self.key)
        } else {
            write!(f, "{}={}", self.key, self.value)
        }
    }
}

#[derive(Args, Debug, Clone, Default)]
pub struct KafkaSecurityArgs {
    /// How to talk to the brokers: plaintext, ssl (TLS), sasl_plaintext or
    /// sasl_ssl (SASL over TLS, what managed clusters ask for).
    #[arg(
        long,
        env = "PARLEY_KAFKA_SECURITY_PROTOCOL",
        value_enum,
        default_value_t = KafkaProtocol::Plaintext,
        requires_ifs = [
            ("sasl_ssl", "kafka_sasl_username"),
            ("sasl_ssl", "kafka_sasl_password"),
            ("sasl_plaintext", "kafka_sasl_username"),
            ("sasl_plaintext", "kafka_sasl_password"),
        ]
    )]
    pub kafka_security_protocol: KafkaProtocol,
    /// SASL mechanism (with sasl_plaintext or sasl_ssl).
    #[arg(long, env = "PARLEY_KAFKA_SASL_MECHANISM", value_enum, ignore_case = true,
          default_value_t = SaslMechanism::ScramSha512)]
    pub kafka_sasl_mechanism: SaslMechanism,
    #[arg(long, env = "PARLEY_KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    #[arg(long, env = "PARLEY_KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<Secret>,
    /// PEM file of the CA that signed the brokers' certificates (default:
    /// the system's trust store).
    #[arg(long, env = "PARLEY_KAFKA_CA_FILE")]
    pub kafka_ca_file: Option<PathBuf>,
    /// Any librdkafka property, `key=value`, applied to the producer, the
    /// consumers and the admin client after Parley's own settings.
    /// Repeatable; in the environment, separated by `;`.
    #[arg(
        long = "kafka-config",
        env = "PARLEY_KAFKA_CONFIG",
        value_name = "KEY=VALUE",
        value_delimiter = ';',
        hide_env_values = true
    )]
    pub kafka_config: Vec<KafkaProperty>,
}

impl KafkaSecurityArgs {
    /// The librdkafka properties these flags stand for, the pass-through
    /// last.
    pub fn properties(&self) -> ClientProperties {
        let mut p = ClientProperties::default();
        let protocol = self.kafka_security_protocol;
        if protocol != KafkaProtocol::Plaintext {
            p.set("security.protocol", protocol.as_librdkafka());
        }
        if protocol.sasl() {
            p.set("sasl.mechanism", self.kafka_sasl_mechanism.as_librdkafka());
            if let Some(u) = &self.kafka_sasl_username {
                p.set("sasl.username", u.as_str());
            }
            if let Some(pw) = &self.kafka_sasl_password {
                p.set("sasl.password", pw.expose());
            }
        }
        if let Some(ca) = &self.kafka_ca_file {
            p.set("ssl.ca.location", ca.display().to_string());
        }
        for prop in &self.kafka_config {
            p.set(prop.key.as_str(), prop.value.as_str());
        }
        p
    }
}

#[derive(Args, Debug, Clone, Default)]
pub struct CqlSecurityArgs {
    /// Connect to the CQL store over TLS (on by itself when a CA,
    /// certificate or key file is given).
    #[arg(long, env = "PARLEY_SCYLLA_TLS")]
    pub scylla_tls: bool,
    /// PEM file of the CA that signed the nodes' certificates (default: the
    /// system's trust store). Node certificates must name the node's IP.
    #[arg(long, env = "PARLEY_SCYLLA_CA_FILE")]
    pub scylla_ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for clusters that require one.
    #[arg(long, env = "PARLEY_SCYLLA_CERT_FILE", requires = "scylla_key_file")]
    pub scylla_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "PARLEY_SCYLLA_KEY_FILE", requires = "scylla_cert_file")]
    pub scylla_key_file: Option<PathBuf>,
    #[arg(long, env = "PARLEY_SCYLLA_USERNAME", requires = "scylla_password")]
    pub scylla_username: Option<String>,
    #[arg(
        long,
        env = "PARLEY_SCYLLA_PASSWORD",
        hide_env_values = true,
        requires = "scylla_username"
    )]
    pub scylla_password: Option<Secret>,
}

impl CqlSecurityArgs {
    pub fn security(&self) -> CqlSecurity {
        let tls_on = self.scylla_tls
            || self.scylla_ca_file.is_some()
            || self.scylla_cert_file.is_some()
            || self.scylla_key_file.is_some();
        CqlSecurity {
            tls: tls_on.then(|| CqlTls {
                ca_file: self.scylla_ca_file.clone(),
                cert_file: self.scylla_cert_file.clone(),
                key_file: self.scylla_key_file.clone(),
            }),
            credentials: match (&self.scylla_username, &self.scylla_password) {
                (Some(username), Some(password)) => Some(CqlCredentials {
                    username: username.clone(),
                    password: password.expose().to_owned(),
                }),
                _ => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn backend(args: &[&str]) -> crate::cli::BackendArgs {
        let cli = Cli::try_parse_from(["parley", "migrate"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Migrate(b) => b,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn sasl_ssl_flags_become_librdkafka_properties_and_the_pass_through_wins() {
        let b = backend(&[
            "--kafka-security-protocol",
            "sasl_ssl",
            "--kafka-sasl-mechanism",
            "scram-sha-256",
            "--kafka-sasl-username",
            "parley",
            "--kafka-sasl-password",
            "hunter2-hunter2",
            "--kafka-ca-file",
            "/etc/parley/ca.pem",
            "--kafka-config",
            "session.timeout.ms=45000",
            "--kafka-config",
            "ssl.ca.location=/other/ca.pem",
        ]);
        let p = b.kafka_security.properties();
        assert_eq!(p.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(p.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
        assert_eq!(p.get("sasl.username"), Some("parley"));
        assert_eq!(p.get("sasl.password"), Some("hunter2-hunter2"));
        assert_eq!(p.get("session.timeout.ms"), Some("45000"));
        assert_eq!(p.get("ssl.ca.location"), Some("/other/ca.pem"));
        // Neither the flags nor what they become ever print the password.
        assert!(!format!("{b:?}").contains("hunter2"), "{b:?}");
        assert!(!format!("{p:?}").contains("hunter2"), "{p:?}");
    }

    #[test]
    fn plaintext_sets_nothing() {
        let p = backend(&[]).kafka_security.properties();
        assert_eq!(p.iter().count(), 0);
    }

    #[test]
    fn sasl_without_credentials_is_refused_at_parse_time() {
        let e = Cli::try_parse_from(["parley", "migrate", "--kafka-security-protocol", "sasl_ssl"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--kafka-sasl-username"), "{e}");
    }

    #[test]
    fn properties_parley_relies_on_cannot_be_passed_through() {
        for owned in ["acks=1", "enable.auto.commit=true", "group.id=x"] {
            let e = Cli::try_parse_from(["parley", "migrate", "--kafka-config", owned])
                .unwrap_err()
                .to_string();
            assert!(e.contains("cannot be set here"), "{owned}: {e}");
        }
        let e = Cli::try_parse_from(["parley", "migrate", "--kafka-config", "linger.ms"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("key=value"), "{e}");
    }

    #[test]
    fn a_ca_file_turns_cql_tls_on_and_credentials_go_together() {
        let s = backend(&[
            "--scylla-ca-file",
            "/etc/parley/cql-ca.pem",
            "--scylla-username",
            "parley",
            "--scylla-password",
            "hunter2-hunter2",
        ])
        .cql_security
        .security();
        let tls = s.tls.unwrap();
        assert_eq!(
            tls.ca_file.unwrap().to_str(),
            Some("/etc/parley/cql-ca.pem")
        );
        assert_eq!(s.credentials.unwrap().username, "parley");
        assert!(backend(&[]).cql_security.security().tls.is_none());
        let e = Cli::try_parse_from(["parley", "migrate", "--scylla-username", "parley"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--scylla-password"), "{e}");
    }
}

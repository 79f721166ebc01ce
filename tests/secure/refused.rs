use std::{collections::HashMap, path::PathBuf, process::Stdio, time::Duration};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

use crate::helpers::{binary, Deployment, TEST_SECRET};

/// The PARLEY_* settings that reach the secured cluster, as `up --secure`
/// wrote them.
fn secure_env() -> HashMap<String, String> {
    let dir = std::env::var("PARLEY_INFRA_DIR")
        .map_or_else(|_| std::env::temp_dir().join("parley-infra"), PathBuf::from);
    let path = dir.join("secure.env");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; start the secured cluster with infra/local/up --secure",
            path.display()
        )
    });
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A `parley` process on the secured cluster, its settings in its
/// environment (as a container gets them), `overrides` on top.
struct Role {
    child: tokio::process::Child,
    addr: String,
    stderr: tokio::task::JoinHandle<String>,
}

async fn start(args: &[&str], d: &Deployment, overrides: &[(&str, &str)]) -> Role {
    let mut cmd = tokio::process::Command::new(binary());
    cmd.args(args)
        .args(["--listen", "127.0.0.1:0", "--backend", "cluster"])
        .args(["--kafka-topic", &d.topic, "--scylla-keyspace", &d.keyspace])
        .args(["--kafka-partitions", "3"])
        .env_clear()
        .envs(secure_env())
        .envs(overrides.iter().copied())
        .env("PARLEY_JWT_SECRET", TEST_SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn parley");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("parley exited early");
            if let Some(addr) = line.strip_prefix("parley listening on http://") {
                return addr.to_owned();
            }
        }
    })
    .await
    .expect("parley never said where it listens");
    let mut err = child.stderr.take().unwrap();
    let stderr = tokio::spawn(async move {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s).await;
        s
    });
    Role {
        child,
        addr,
        stderr,
    }
}

impl Role {
    async fn readyz(&self) -> (u16, Value) {
        let r = reqwest::get(format!("http://{}/readyz", self.addr))
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    /// Stops the process and returns what it logged.
    async fn stop(mut self) -> String {
        let pid = self.child.id().unwrap().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("a refused role did not stop within 30 s of SIGTERM")
            .unwrap();
        assert!(status.success(), "SIGTERM exit: {status:?}");
        self.stderr.await.unwrap()
    }
}

/// Starts `role` with `overrides`, waits until `/readyz` names `dependency`
/// with a cause containing `cause`, checks the process is still running
/// (retrying, not crash-looping) a few seconds later and still says so,
/// then stops it and returns its log.
async fn refused(role: &str, overrides: &[(&str, &str)], dependency: &str, cause: &str) -> String {
    let d = Deployment::on(parley::cli::Backend::Cluster);
    if dependency == "kafka" {
        // Roles connect to the CQL store first: it must hold the keyspace
        // for the refusal to come from Kafka.
        migrate(&d, &[]).await;
    }
    let mut p = start(&["serve", role], &d, overrides).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let said = loop {
        let (status, body) = p.readyz().await;
        assert_eq!(status, 503, "{body}");
        if let Some(said) = body["checks"][dependency].as_str() {
            break said.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never named {dependency}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(said.contains(cause), "readyz said {said:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "the role exited instead of retrying"
    );
    let (status, body) = p.readyz().await;
    assert_eq!(status, 503, "{body}");
    assert!(body["checks"][dependency].is_string(), "{body}");
    let log = p.stop().await;
    assert!(
        log.contains(&format!("cannot connect to {dependency}; retrying")),
        "no log line names the dependency:\n{log}"
    );
    log
}

#[tokio::test]
async fn a_wrong_kafka_password_is_named_by_readyz_and_retried() {
    let wrong = "not-the-kafka-password";
    let log = refused(
        "command-api",
        &[("PARLEY_KAFKA_SASL_PASSWORD", wrong)],
        "kafka",
        "authentication failed",
    )
    .await;
    assert!(log.contains("SASL authentication error"), "{log}");
    assert!(!log.contains(wrong), "the password was logged");
}

#[tokio::test]
async fn a_wrong_cql_password_is_named_by_readyz_and_retried() {
    let wrong = "not-the-cql-password";
    let log = refused(
        "query-api",
        &[("PARLEY_SCYLLA_PASSWORD", wrong)],
        "cql",
        "Authentication failed",
    )
    .await;
    assert!(!log.contains(wrong), "the password was logged");
}

/// TLS really checks the brokers: with a CA that did not sign their
/// certificate (the system's trust store), the handshake fails and says so.
#[tokio::test]
async fn a_kafka_certificate_from_an_unknown_ca_is_refused() {
    refused(
        "projector",
        &[("PARLEY_KAFKA_CA_FILE", "/etc/ssl/certs/ca-certificates.crt")],
        "kafka",
        "TLS failed",
    )
    .await;
}

#[tokio::test]
async fn a_cql_certificate_from_an_unknown_ca_is_refused() {
    refused(
        "ws-push",
        &[(
            "PARLEY_SCYLLA_CA_FILE",
            "/etc/ssl/certs/ca-certificates.crt",
        )],
        "cql",
        "certificate verify failed",
    )
    .await;
}

/// `parley migrate` on the secured cluster with `overrides`, which must
/// succeed.
async fn migrate(d: &Deployment, overrides: &[(&str, &str)]) {
    let out = tokio::process::Command::new(binary())
        .args(["migrate", "--backend", "cluster"])
        .args(["--kafka-topic", &d.topic, "--scylla-keyspace", &d.keyspace])
        .args(["--kafka-partitions", "3"])
        .env_clear()
        .envs(secure_env())
        .envs(overrides.iter().copied())
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains(&format!("topic {} ready", d.topic)),
        "{overrides:?}: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every SASL mechanism Parley offers logs in (SCRAM-SHA-512, what
/// `secure.env` names, is every other test's).
#[tokio::test]
async fn scram_sha_256_and_plain_log_in_too() {
    for mechanism in ["SCRAM-SHA-256", "PLAIN"] {
        let d = Deployment::on(parley::cli::Backend::Cluster);
        migrate(&d, &[("PARLEY_KAFKA_SASL_MECHANISM", mechanism)]).await;
    }
}

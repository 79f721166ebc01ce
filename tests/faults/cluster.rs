//! The replicated cluster's servers as the suite sees them: which node is
//! which, killing one with SIGKILL, and `infra/local/up --replicated` to
//! bring back whatever is not running.

use std::{path::PathBuf, time::Duration};

use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    ClientConfig,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where `up --replicated` keeps pids and data, asked of the scripts
/// themselves so the suite and the scripts cannot disagree.
pub fn state_dir() -> PathBuf {
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg("source infra/local/lib.sh && echo \"$REPLICATED\"")
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash: {e}"));
    assert!(out.status.success(), "infra/local/lib.sh failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Fails the suite unless it was started against the replicated cluster:
/// a fault test on one broker and one node would prove nothing.
pub fn assert_replicated_settings() {
    let brokers = std::env::var("PARLEY_KAFKA_BROKERS").unwrap_or_default();
    let replication = std::env::var("PARLEY_KAFKA_REPLICATION").unwrap_or_default();
    assert!(
        brokers.split(',').count() == 3 && replication == "3",
        "the fault suite needs the replicated cluster's settings: \
         infra/local/up --replicated, then `set -a; . {}; set +a` \
         (PARLEY_KAFKA_BROKERS={brokers:?}, PARLEY_KAFKA_REPLICATION={replication:?})",
        state_dir().join("replicated.env").display()
    );
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Kafka(u8),
    Cassandra(u8),
}

impl Server {
    fn name(self) -> String {
        match self {
            Server::Kafka(n) => format!("kafka-{n}"),
            Server::Cassandra(n) => format!("cassandra-{n}"),
        }
    }

    fn pid(self) -> Option<u32> {
        let f = state_dir().join(format!("{}.pid", self.name()));
        std::fs::read_to_string(f).ok()?.trim().parse().ok()
    }
}

impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// `kill -9` of one server, and waits until it is gone.
pub async fn kill(server: Server) {
    let pid = server
        .pid()
        .unwrap_or_else(|| panic!("{server} has no pid file: is the replicated cluster up?"));
    assert!(alive(pid), "{server} (pid {pid}) is not running");
    let status = tokio::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .await
        .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
    assert!(status.success(), "kill -9 {pid} ({server}) failed");
    for _ in 0..100 {
        if !alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{server} (pid {pid}) survived kill -9");
}

/// Starts every server that is not running and waits until each node sees
/// the whole cluster again.
pub async fn restore() {
    let status = tokio::process::Command::new(repo().join("infra/local/up"))
        .arg("--replicated")
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .unwrap_or_else(|e| panic!("cannot run infra/local/up: {e}"));
    assert!(status.success(), "infra/local/up --replicated failed");
}

/// The node id of the active KRaft controller, from the quorum state each
/// node keeps on disk: the leader of the newest epoch any of them records.
pub fn active_controller() -> u8 {
    let mut best: Option<(i64, u8)> = None;
    for n in 1..=3u8 {
        let f = state_dir().join(format!("kafka-{n}/logs/__cluster_metadata-0/quorum-state"));
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let leader = v["leaderId"].as_i64().and_then(|id| u8::try_from(id).ok());
        if let (Some(id), Some(epoch)) = (leader, v["leaderEpoch"].as_i64()) {
            if (1..=3).contains(&id) && best.is_none_or(|(e, _)| epoch > e) {
                best = Some((epoch, id));
            }
        }
    }
    best.map(|(_, id)| id)
        .unwrap_or_else(|| panic!("no Kafka node records a controller leader"))
}

/// The broker leading `partition` of `topic`, asked of the cluster.
pub async fn partition_leader(topic: &str, partition: i32) -> u8 {
    let brokers = std::env::var("PARLEY_KAFKA_BROKERS").unwrap_or_default();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap_or_else(|e| panic!("kafka client: {e}"));
        let md = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
        let leader = md
            .topics()
            .iter()
            .flat_map(|t| t.partitions())
            .find(|p| p.id() == partition)
            .map(|p| p.leader())
            .unwrap_or_else(|| panic!("{topic} has no partition {partition}"));
        u8::try_from(leader).unwrap_or_else(|_| panic!("leader {leader} is not a node id"))
    })
    .await
    .unwrap_or_else(|e| panic!("metadata task: {e}"))
}

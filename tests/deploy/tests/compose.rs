//! infra/compose/compose.yaml run without a container engine: each Parley
//! service's command and environment, exactly as the file gives them,
//! started as a local `parley` process against infra/local's Kafka and
//! Cassandra, its health check run as written, and the cluster profile's
//! nginx configuration served by a real nginx in front of them. Service
//! host names map to 127.0.0.1 and each service's port to a free local
//! one, so a wrong flag, variable, port or route in the file fails here.
//! Only the topic and keyspace are added, so runs do not share data.

// Tests panic on purpose when the file is wrong.
#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use futures_util::StreamExt;
use parley_deploy_tests::{known_env, parley, root, yaml_documents};
use serde_json::{json, Value as Json};
use serde_yaml::Value;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

const SECRET: &str = "compose-test-secret-compose-test-secret";
/// The servers infra/local runs, which stand in for the compose file's.
const INFRA: &[&str] = &["kafka", "scylla"];

fn compose() -> Value {
    let path = root().join("infra/compose/compose.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    yaml_documents(&text).remove(0)
}

fn services(c: &Value) -> BTreeMap<String, Value> {
    c["services"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone()))
        .collect()
}

fn in_profile(svc: &Value, profile: &str) -> bool {
    svc["profiles"]
        .as_sequence()
        .is_some_and(|p| p.iter().any(|x| x == profile))
}

fn is_parley(svc: &Value) -> bool {
    svc["build"].is_mapping() || svc["image"].as_str().is_some_and(|i| i.contains("parley"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// `${NAME}` and `${NAME:-default}`, as compose interpolates them, from
/// the variables a user would export.
fn interpolate(text: &str, exported: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        let inner = &rest[start + 2..end];
        let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
        out.push_str(exported.get(name).copied().unwrap_or(default));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Where each service's ports are here: `(service, port in the file)` to a
/// free local port; infra/local's servers keep theirs.
struct Ports(BTreeMap<(String, u16), u16>);

impl Ports {
    fn local(&self, service: &str, port: u16) -> u16 {
        if INFRA.contains(&service) {
            return port;
        }
        *self
            .0
            .get(&(service.to_owned(), port))
            .unwrap_or_else(|| panic!("nothing listens on {service}:{port}"))
    }

    /// Rewrites every `host:port` naming a service (or this one, as
    /// 0.0.0.0, 127.0.0.1 or localhost) to 127.0.0.1 and its local port.
    fn translate(&self, text: &str, this: &str, names: &BTreeSet<String>) -> String {
        let mut out = String::new();
        let mut token = String::new();
        let flush = |token: &mut String, out: &mut String| {
            out.push_str(&self.translate_token(token, this, names));
            token.clear();
        };
        for ch in text.chars() {
            if ch.is_ascii_alphanumeric() || "._:-".contains(ch) {
                token.push(ch);
            } else {
                flush(&mut token, &mut out);
                out.push(ch);
            }
        }
        flush(&mut token, &mut out);
        // bash's /dev/tcp/HOST/PORT, as the health checks use it.
        for ((svc, port), local) in &self.0 {
            if svc == this {
                out = out.replace(
                    &format!("/dev/tcp/127.0.0.1/{port}"),
                    &format!("/dev/tcp/127.0.0.1/{local}"),
                );
            }
        }
        out
    }

    fn translate_token(&self, token: &str, this: &str, names: &BTreeSet<String>) -> String {
        let Some((host, port)) = token.rsplit_once(':') else {
            return token.to_owned();
        };
        let Ok(port) = port.parse::<u16>() else {
            return token.to_owned();
        };
        if ["0.0.0.0", "127.0.0.1", "localhost"].contains(&host) {
            format!("127.0.0.1:{}", self.local(this, port))
        } else if names.contains(host) {
            format!("127.0.0.1:{}", self.local(host, port))
        } else {
            token.to_owned()
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The port a Parley service listens on, from its `PARLEY_LISTEN`.
fn listen_port(svc: &Value) -> Option<u16> {
    let listen = svc["environment"]["PARLEY_LISTEN"].as_str()?;
    Some(listen.rsplit(':').next()?.parse().unwrap())
}

/// One deployment of the file on this machine.
struct Local {
    names: BTreeSet<String>,
    services: BTreeMap<String, Value>,
    ports: Ports,
    dir: tempfile::TempDir,
    exported: BTreeMap<&'static str, &'static str>,
    isolation: Vec<(String, String)>,
    children: Vec<Child>,
}

impl Local {
    fn new(profile: &str) -> Self {
        let c = compose();
        let services: BTreeMap<String, Value> = services(&c)
            .into_iter()
            .filter(|(_, s)| in_profile(s, profile))
            .collect();
        let mut ports = BTreeMap::new();
        for (name, svc) in &services {
            if let Some(p) = listen_port(svc) {
                ports.insert((name.clone(), p), free_port());
            }
        }
        let id = format!("compose{}", std::process::id());
        Self {
            names: services.keys().cloned().collect(),
            services,
            ports: Ports(ports),
            dir: tempfile::tempdir().unwrap(),
            exported: [("PARLEY_JWT_SECRET", SECRET)].into_iter().collect(),
            isolation: vec![
                ("PARLEY_KAFKA_TOPIC".into(), id.clone()),
                ("PARLEY_SCYLLA_KEYSPACE".into(), id),
            ],
            children: Vec::new(),
        }
    }

    /// A volume's mount point in the container, as a directory here.
    fn volume_dir(&self, svc: &Value, target: &str) -> Option<PathBuf> {
        strings(&svc["volumes"]).iter().find_map(|v| {
            let (source, rest) = v.split_once(':')?;
            let mounted = rest.split(':').next()?;
            (mounted == target).then(|| {
                let dir = self.dir.path().join(source.trim_start_matches("./"));
                std::fs::create_dir_all(&dir).unwrap();
                dir
            })
        })
    }

    /// The service's command as a `parley` process, its environment
    /// translated; `parley` refuses what it does not know.
    fn command(&self, name: &str) -> Command {
        let svc = &self.services[name];
        let known = known_env();
        let mut cmd = Command::new(parley());
        cmd.args(strings(&svc["command"]))
            .env_clear()
            .env("RUST_LOG", "warn")
            .current_dir(self.dir.path())
            .kill_on_drop(true);
        for (k, v) in svc["environment"].as_mapping().into_iter().flatten() {
            let k = k.as_str().unwrap();
            assert!(known.contains(k), "{name}: parley does not read {k}");
            let v = match v {
                Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
            };
            let mut v = self
                .ports
                .translate(&interpolate(&v, &self.exported), name, &self.names);
            if let Some(dir) = self.volume_dir(svc, &v) {
                v = dir.display().to_string();
            }
            cmd.env(k, v);
        }
        cmd.envs(self.isolation.iter().map(|(k, v)| (k, v)));
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        cmd.stdout(Stdio::null()).stderr(log);
        cmd
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    async fn run_once(&self, name: &str) {
        let status = tokio::time::timeout(Duration::from_secs(180), self.command(name).status())
            .await
            .unwrap_or_else(|_| panic!("{name} did not finish in 180 s"))
            .unwrap();
        assert!(status.success(), "{name} failed:\n{}", self.log(name));
    }

    fn start(&mut self, name: &str) {
        let child = self.command(name).spawn().unwrap();
        self.children.push(child);
    }

    /// Runs the service's health check as the file writes it (translated)
    /// until it passes.
    async fn healthy(&mut self, name: &str) {
        let test = strings(&self.services[name]["healthcheck"]["test"]);
        assert!(
            test.iter().any(|t| t.contains("/readyz")),
            "{name}'s health check does not ask /readyz: {test:?}"
        );
        let test: Vec<String> = test
            .iter()
            .map(|t| self.ports.translate(t, name, &self.names))
            .collect();
        let mut cmd = match test[0].as_str() {
            "CMD" => {
                let mut c = std::process::Command::new(&test[1]);
                c.args(&test[2..]);
                c
            }
            "CMD-SHELL" => {
                let mut c = std::process::Command::new("sh");
                c.args(["-c", &test[1]]);
                c
            }
            other => panic!("{name}: health check kind {other}"),
        };
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            if cmd.status().unwrap().success() {
                return;
            }
            for c in &mut self.children {
                assert!(
                    c.try_wait().unwrap().is_none(),
                    "a service exited:\n{}",
                    self.log(name)
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} never passed its health check:\n{}",
                self.log(name)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn depends_on(&self, name: &str) -> BTreeMap<String, String> {
        self.services[name]["depends_on"]
            .as_mapping()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                (
                    k.as_str().unwrap().to_owned(),
                    v["condition"]
                        .as_str()
                        .unwrap_or("service_started")
                        .to_owned(),
                )
            })
            .collect()
    }
}

fn nginx() -> PathBuf {
    if let Ok(p) = std::env::var("PARLEY_NGINX") {
        return p.into();
    }
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).is_file() {
            return p.into();
        }
    }
    panic!("nginx not found: install it (Debian: apt-get install nginx) or set PARLEY_NGINX");
}

/// The proxy's nginx.conf with upstreams at the local ports and every
/// path nginx writes in the test's directory; returns the listen port.
fn nginx_conf(local: &Local, proxy: &Value) -> (PathBuf, u16) {
    let mount = strings(&proxy["volumes"])
        .into_iter()
        .find(|v| v.contains("nginx.conf"))
        .expect("the proxy mounts an nginx.conf");
    let file = mount.split(':').next().unwrap();
    let text = std::fs::read_to_string(root().join("infra/compose").join(file)).unwrap();
    let port = free_port();
    let tmp = local.dir.path().join("nginx");
    std::fs::create_dir_all(&tmp).unwrap();

    let listen = strings(&proxy["ports"])
        .first()
        .and_then(|p| p.rsplit(':').next().map(str::to_owned))
        .expect("the proxy publishes a port");
    let text = local
        .ports
        .translate(&text, "proxy", &local.names)
        .replace(
            &format!("listen {listen};"),
            &format!("listen 127.0.0.1:{port};"),
        )
        .replace("/tmp/", &format!("{}/", tmp.display()));
    assert!(
        text.contains(&format!("listen 127.0.0.1:{port};")),
        "{text}"
    );
    let conf = tmp.join("nginx.conf");
    std::fs::write(&conf, text).unwrap();
    (conf, port)
}

async fn post(http: &reqwest::Client, url: &str, token: Option<&str>, body: Json) -> (u16, Json) {
    let mut req = http.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Json::Null))
}

async fn get(http: &reqwest::Client, url: &str, token: Option<&str>) -> (u16, Json) {
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Json::Null))
}

async fn register(http: &reqwest::Client, base: &str, name: &str) -> (String, String) {
    let (status, v) = post(
        http,
        &format!("{base}/v1/auth/register"),
        None,
        json!({"username": name, "password": "correct horse battery"}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    (
        v["user"]["id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn the_cluster_profile_runs_and_its_proxy_routes_each_request_to_its_role() {
    let mut local = Local::new("cluster");
    let parley_services: Vec<String> = local
        .services
        .iter()
        .filter(|(_, s)| is_parley(s))
        .map(|(n, _)| n.clone())
        .collect();
    // The shape DESIGN asks for.
    let commands: Vec<Vec<String>> = parley_services
        .iter()
        .map(|n| strings(&local.services[n]["command"]))
        .collect();
    let count = |c: &[&str]| commands.iter().filter(|x| *x == c).count();
    assert_eq!(count(&["migrate"]), 1);
    for role in ["command-api", "query-api", "projector"] {
        assert_eq!(count(&["serve", role]), 1, "{role}");
    }
    assert_eq!(count(&["serve", "ws-push"]), 2, "two ws-push");
    for infra in INFRA {
        assert!(local.services.contains_key(*infra), "no {infra} service");
        assert!(local.services[*infra]["healthcheck"].is_mapping());
    }

    // migrate waits for healthy servers; every role for migrate.
    let migrate = parley_services
        .iter()
        .find(|n| strings(&local.services[*n]["command"]) == ["migrate"])
        .unwrap()
        .clone();
    let deps = local.depends_on(&migrate);
    for infra in INFRA {
        assert_eq!(deps[*infra], "service_healthy", "{migrate} -> {infra}");
    }
    local.run_once(&migrate).await;
    let roles: Vec<String> = parley_services
        .iter()
        .filter(|n| **n != migrate)
        .cloned()
        .collect();
    for r in &roles {
        assert_eq!(
            local.depends_on(r).get(&migrate).map(String::as_str),
            Some("service_completed_successfully"),
            "{r} must wait for {migrate}"
        );
        local.start(r);
    }
    for r in &roles {
        local.healthy(r).await;
    }

    // The proxy, from the same file.
    let proxy_name = local
        .services
        .iter()
        .find(|(_, s)| s["image"].as_str().is_some_and(|i| i.starts_with("nginx")))
        .map(|(n, _)| n.clone())
        .expect("an nginx proxy service");
    let proxy = local.services[&proxy_name].clone();
    for (dep, condition) in local.depends_on(&proxy_name) {
        assert_eq!(condition, "service_healthy", "proxy -> {dep}");
    }
    let (conf, port) = nginx_conf(&local, &proxy);
    let nginx_log = std::fs::File::create(local.dir.path().join("nginx.log")).unwrap();
    let mut nginx = Command::new(nginx())
        .args(["-e", "stderr", "-c"])
        .arg(&conf)
        // One process, so stopping it leaves no worker behind.
        .args(["-g", "daemon off; master_process off;"])
        .stderr(nginx_log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .is_err()
    {
        assert!(
            nginx.try_wait().unwrap().is_none(),
            "nginx exited: {}",
            std::fs::read_to_string(local.dir.path().join("nginx.log")).unwrap_or_default()
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "nginx never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Commands go to command-api, reads to query-api, /v1/ws to ws-push:
    // each role serves only its own routes, so a misrouted request is a 404.
    let (alice, a_token) = register(&http, &base, "alice").await;
    let (bob, b_token) = register(&http, &base, "bob").await;
    let (status, me) = get(&http, &format!("{base}/v1/me"), Some(&b_token)).await;
    assert_eq!(
        (status, me["user"]["id"].as_str()),
        (200, Some(bob.as_str()))
    );
    let (status, _) = get(&http, &format!("{base}/v1/users?query=al"), Some(&b_token)).await;
    assert_eq!(status, 200);
    let mut sockets = Vec::new();
    for _ in 0..2 {
        let mut req = format!("ws://127.0.0.1:{port}/v1/ws")
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {b_token}").parse().unwrap(),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let ready = next_json(&mut ws).await;
        assert_eq!(ready["type"], "ready", "{ready}");
        let synced = next_json(&mut ws).await;
        assert_eq!(synced["type"], "synced", "{synced}");
        sockets.push(ws);
    }
    let (status, sent) = post(
        &http,
        &format!("{base}/v1/messages"),
        Some(&a_token),
        json!({"to": bob, "body": "through the proxy"}),
    )
    .await;
    assert_eq!(status, 202, "{sent}");
    let id = sent["message"]["id"].clone();
    // Both of Bob's sockets hear it, whichever ws-push holds each.
    for ws in &mut sockets {
        let pushed = next_json(ws).await;
        assert_eq!(pushed["message"]["id"], id, "{pushed}");
    }
    let history = format!("{base}/v1/conversations/{alice}/messages");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, page) = get(&http, &history, Some(&b_token)).await;
        assert_eq!(status, 200, "{page}");
        if page["messages"][0]["id"] == id {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "history never showed the send"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = post(
        &http,
        &format!("{base}/v1/conversations/{alice}/read"),
        Some(&b_token),
        json!({"up_to": id}),
    )
    .await;
    assert_eq!(status, 202, "mark read reaches command-api");
    let (status, inbox) = get(&http, &format!("{base}/v1/conversations"), Some(&b_token)).await;
    assert_eq!(status, 200, "{inbox}");
    // Operational routes stay inside.
    for path in ["/readyz", "/metrics"] {
        let (status, _) = get(&http, &format!("{base}{path}"), None).await;
        assert_eq!(status, 404, "{path} is exposed by the proxy");
    }
    let _ = nginx.start_kill();
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Socket) -> Json {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("no frame within 15 s")
            .expect("socket closed")
            .unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

#[tokio::test]
async fn the_embedded_profile_runs_one_process_on_its_volume() {
    let mut local = Local::new("embedded");
    let names: Vec<String> = local.services.keys().cloned().collect();
    assert_eq!(names.len(), 1, "one service: {names:?}");
    let name = &names[0];
    let svc = local.services[name].clone();
    assert_eq!(strings(&svc["command"]), ["dev"]);
    let data = svc["environment"]["PARLEY_DATA_DIR"]
        .as_str()
        .unwrap()
        .to_owned();
    let volume = local
        .volume_dir(&svc, &data)
        .expect("PARLEY_DATA_DIR is a mounted volume");
    local.start(name);
    local.healthy(name).await;
    let port = local.ports.local(name, listen_port(&svc).unwrap());
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let (_, token) = register(&http, &base, "carol").await;
    let (status, _) = get(&http, &format!("{base}/v1/me"), Some(&token)).await;
    assert_eq!(status, 200);
    assert!(
        volume.join("parley.db").is_file(),
        "the data is not in the volume"
    );
}

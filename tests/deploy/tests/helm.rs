//! The Helm chart as `helm template` renders it, checked against the
//! binary: a Deployment per role the binary has, probes on the port it
//! listens on, the migrate Job as a hook, the ws-push PDB, Services and
//! Ingress that reach real pods, and only environment variables the
//! binary knows. Needs helm (`PARLEY_HELM`, else `helm` on the PATH).

// Tests panic on purpose when a manifest is wrong.
#![allow(clippy::unwrap_used)]

use std::{collections::BTreeSet, process::Command};

use parley_deploy_tests::{known_env, roles, root, yaml_documents};
use serde_yaml::Value;

const JWT: &str = "0123456789abcdef0123456789abcdef-test";

fn render(args: &[&str]) -> Vec<Value> {
    let helm = std::env::var("PARLEY_HELM").unwrap_or_else(|_| "helm".into());
    let chart = root().join("infra/helm/parley");
    let out = Command::new(&helm)
        .args(["template", "parley"])
        .arg(&chart)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {helm} (set PARLEY_HELM; scripts/deploy-tools builds it): {e}")
        });
    assert!(
        out.status.success(),
        "helm template {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_documents(&String::from_utf8_lossy(&out.stdout))
}

fn default_render() -> Vec<Value> {
    render(&["--set", &format!("jwt.secret={JWT}")])
}

/// Production values, plus every optional setting, so each branch of the
/// templates renders.
fn production_render() -> Vec<Value> {
    let chart = root().join("infra/helm/parley");
    let prod = chart.join("values-production.yaml");
    render(&[
        "-f",
        prod.to_str().unwrap(),
        "--set",
        "jwt.existingSecret=parley-jwt",
        "--set",
        "kafka.tls.caSecret=kafka-ca",
        "--set",
        "scylla.tls.caSecret=scylla-ca",
        "--set",
        "scylla.tls.clientCertSecret=scylla-client",
        "--set",
        "kafka.config.session\\.timeout\\.ms=45000",
        "--set",
        "extraEnv.PARLEY_SHUTDOWN_GRACE=20",
    ])
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn containers(workload: &Value) -> &Vec<Value> {
    workload["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .unwrap()
}

fn env_value<'a>(container: &'a Value, var: &str) -> Option<&'a Value> {
    container["env"]
        .as_sequence()?
        .iter()
        .find(|e| e["name"] == var)
        .map(|e| &e["value"])
}

/// True when every label of `selector` is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_mapping().unwrap();
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn pod_labels(d: &Value) -> &Value {
    &d["spec"]["template"]["metadata"]["labels"]
}

#[test]
fn a_deployment_per_role_with_probes_on_the_port_parley_listens_on() {
    for docs in [default_render(), production_render()] {
        let deployments = of_kind(&docs, "Deployment");
        let served: BTreeSet<String> = deployments
            .iter()
            .map(|d| {
                let args = &containers(d)[0]["args"];
                assert_eq!(args[0], "serve", "{}", name(d));
                s(&args[1]).to_owned()
            })
            .collect();
        assert_eq!(served, roles(), "one Deployment per role of the binary");
        for d in &deployments {
            assert!(
                d["spec"]["selector"]["matchLabels"]
                    .as_mapping()
                    .is_some_and(|m| !m.is_empty())
                    && selects(&d["spec"]["selector"]["matchLabels"], pod_labels(d)),
                "{}: the selector does not select its own pods",
                name(d)
            );
            assert_eq!(
                d["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
                true
            );
            let c = &containers(d)[0];
            let listen = s(env_value(c, "PARLEY_LISTEN").expect("PARLEY_LISTEN"));
            let port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
            let http = c["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "http")
                .expect("a port named http");
            assert_eq!(http["containerPort"].as_u64(), Some(port), "{}", name(d));
            for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
                let get = &c[probe]["httpGet"];
                assert_eq!(get["path"], path, "{} {probe}", name(d));
                assert_eq!(get["port"], "http", "{} {probe}", name(d));
            }
            assert!(c["resources"]["requests"].is_mapping(), "{}", name(d));
            assert!(c["resources"]["limits"].is_mapping(), "{}", name(d));
        }
    }
}

#[test]
fn migrate_runs_as_a_pre_install_and_pre_upgrade_hook() {
    for docs in [default_render(), production_render()] {
        let jobs = of_kind(&docs, "Job");
        assert_eq!(jobs.len(), 1);
        let job = jobs[0];
        let hook = s(&job["metadata"]["annotations"]["helm.sh/hook"]);
        assert!(
            hook.contains("pre-install") && hook.contains("pre-upgrade"),
            "{hook}"
        );
        assert_eq!(containers(job)[0]["args"][0], "migrate");
        // The passwords it needs exist before it: the chart's Secret, when
        // there is one, is an earlier hook.
        for secret in of_kind(&docs, "Secret") {
            let weight: i64 = s(&secret["metadata"]["annotations"]["helm.sh/hook-weight"])
                .parse()
                .unwrap();
            let job_weight: i64 = s(&job["metadata"]["annotations"]["helm.sh/hook-weight"])
                .parse()
                .unwrap();
            assert!(weight < job_weight);
        }
    }
}

#[test]
fn ws_push_has_a_disruption_budget_below_its_replicas() {
    for docs in [default_render(), production_render()] {
        let pdbs = of_kind(&docs, "PodDisruptionBudget");
        assert_eq!(pdbs.len(), 1);
        let selector = &pdbs[0]["spec"]["selector"]["matchLabels"];
        let deployments = of_kind(&docs, "Deployment");
        let selected: Vec<_> = deployments
            .iter()
            .filter(|d| selects(selector, pod_labels(d)))
            .collect();
        assert_eq!(
            selected.len(),
            1,
            "the PDB selects exactly the ws-push pods"
        );
        assert_eq!(containers(selected[0])[0]["args"][1], "ws-push");
        let min = pdbs[0]["spec"]["minAvailable"].as_u64().unwrap();
        let replicas = selected[0]["spec"]["replicas"].as_u64().unwrap();
        assert!(
            min >= 1 && min < replicas,
            "minAvailable {min} of {replicas}"
        );
    }
}

#[test]
fn services_and_ingress_reach_the_right_pods() {
    let docs = production_render();
    let deployments = of_kind(&docs, "Deployment");
    let services = of_kind(&docs, "Service");
    let role_of_service = |svc_name: &str| -> String {
        let svc = services
            .iter()
            .find(|s| name(s) == svc_name)
            .unwrap_or_else(|| panic!("no Service {svc_name}"));
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
        let d = deployments
            .iter()
            .find(|d| selects(&svc["spec"]["selector"], pod_labels(d)))
            .unwrap_or_else(|| panic!("Service {svc_name} selects no Deployment"));
        s(&containers(d)[0]["args"][1]).to_owned()
    };
    let ingress = of_kind(&docs, "Ingress");
    assert_eq!(ingress.len(), 1);
    let mut routes = BTreeSet::new();
    for rule in ingress[0]["spec"]["rules"].as_sequence().unwrap() {
        for p in rule["http"]["paths"].as_sequence().unwrap() {
            let backend = &p["backend"]["service"];
            let svc = services
                .iter()
                .find(|x| name(x) == s(&backend["name"]))
                .unwrap();
            assert_eq!(backend["port"]["number"], svc["spec"]["ports"][0]["port"]);
            routes.insert((
                s(&p["path"]).to_owned(),
                role_of_service(s(&backend["name"])),
            ));
        }
    }
    let want: BTreeSet<(String, String)> = [
        ("/v1/ws", "ws-push"),
        ("/v1/conversations/[^/]+/read", "command-api"),
        ("/v1/auth", "command-api"),
        ("/v1/messages", "command-api"),
        ("/v1/me", "query-api"),
        ("/v1/users", "query-api"),
        ("/v1/conversations", "query-api"),
        ("/openapi.json", "query-api"),
    ]
    .into_iter()
    .map(|(p, r)| (p.to_owned(), r.to_owned()))
    .collect();
    assert_eq!(routes, want);
    assert_eq!(of_kind(&docs, "ServiceMonitor").len(), 1);
}

#[test]
fn only_variables_the_binary_knows_and_secrets_that_exist() {
    let known = known_env();
    for docs in [default_render(), production_render()] {
        let secrets = of_kind(&docs, "Secret");
        for w in of_kind(&docs, "Deployment")
            .into_iter()
            .chain(of_kind(&docs, "Job"))
        {
            let spec = &w["spec"]["template"]["spec"];
            let volumes: BTreeSet<&str> = spec["volumes"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|v| s(&v["name"]))
                .collect();
            for c in containers(w) {
                let mounts: Vec<&str> = c["volumeMounts"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|m| {
                        assert!(volumes.contains(s(&m["name"])), "{}: {m:?}", name(w));
                        s(&m["mountPath"])
                    })
                    .collect();
                for e in c["env"].as_sequence().unwrap() {
                    let var = s(&e["name"]);
                    assert!(
                        known.contains(var),
                        "{}: parley does not read {var}",
                        name(w)
                    );
                    if var.ends_with("_FILE") {
                        let path = s(&e["value"]);
                        assert!(
                            mounts.iter().any(|m| path.starts_with(m)),
                            "{}: {var}={path} is on no mounted volume",
                            name(w)
                        );
                    }
                    let secret_ref = &e["valueFrom"]["secretKeyRef"];
                    if let Some(secret) = secret_ref["name"].as_str() {
                        let key = s(&secret_ref["key"]);
                        // A Secret of the chart must hold the key; one named
                        // in the values is the operator's.
                        if let Some(ours) = secrets.iter().find(|x| name(x) == secret) {
                            assert!(
                                ours["stringData"].get(key).is_some(),
                                "{}: Secret {secret} has no {key}",
                                name(w)
                            );
                        } else {
                            assert!(
                                ["parley-jwt", "parley-kafka", "parley-scylla"].contains(&secret),
                                "{}: {var} refers to a Secret nobody makes: {secret}",
                                name(w)
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn production_values_replicate() {
    let docs = production_render();
    for d in of_kind(&docs, "Deployment") {
        let c = &containers(d)[0];
        assert_eq!(env_value(c, "PARLEY_KAFKA_REPLICATION").unwrap(), "3");
        assert_eq!(env_value(c, "PARLEY_SCYLLA_REPLICATION").unwrap(), "3");
        assert_eq!(
            env_value(c, "PARLEY_KAFKA_SECURITY_PROTOCOL").unwrap(),
            "sasl_ssl"
        );
        assert_eq!(env_value(c, "PARLEY_SCYLLA_TLS").unwrap(), "true");
        assert!(
            d["spec"]["replicas"].as_u64().unwrap() >= 2,
            "{} has one pod",
            name(d)
        );
    }
}

#[test]
fn a_short_jwt_secret_or_a_missing_password_is_refused_at_render_time() {
    let helm = std::env::var("PARLEY_HELM").unwrap_or_else(|_| "helm".into());
    let chart = root().join("infra/helm/parley");
    for args in [
        vec!["--set", "jwt.secret=short"],
        vec![
            "--set",
            "jwt.secret=0123456789abcdef0123456789abcdef",
            "--set",
            "kafka.securityProtocol=sasl_ssl",
            "--set",
            "kafka.sasl.username=parley",
        ],
    ] {
        let out = Command::new(&helm)
            .args(["template", "parley"])
            .arg(&chart)
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} rendered");
    }
}

//! What the deployment checks share: the `parley` binary they check the
//! files against, the settings it knows (read from its own `--help`, so a
//! flag added to the binary is known here at once), and YAML loading.

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use serde::Deserialize as _;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `parley` binary of this build (`cargo build --bin parley` makes it;
/// scripts/test-deploy does).
pub fn parley() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> -> target/<profile>/parley
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("parley"))
        .unwrap_or_default();
    assert!(
        bin.is_file(),
        "no parley binary at {}: run `cargo build --bin parley` first",
        bin.display()
    );
    bin
}

/// `parley <args> --help`, with an empty environment so the text does
/// not depend on the caller's.
pub fn help(args: &[&str]) -> String {
    let out = Command::new(parley())
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap_or_else(|e| panic!("cannot run parley {args:?} --help: {e}"));
    assert!(out.status.success(), "parley {args:?} --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every environment variable the binary reads for the commands a
/// deployment runs (`dev`, `serve`, `migrate`, `replay`).
pub fn known_env() -> BTreeSet<String> {
    let mut known = BTreeSet::new();
    for cmd in ["dev", "serve", "migrate", "replay"] {
        for rest in help(&[cmd]).split("[env: ").skip(1) {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            known.insert(name);
        }
    }
    assert!(
        known.contains("PARLEY_KAFKA_BROKERS") && known.contains("PARLEY_JWT_SECRET"),
        "the help output changed shape: {known:?}"
    );
    known
}

/// The roles `parley serve` accepts.
pub fn roles() -> BTreeSet<String> {
    let text = help(&["serve"]);
    let start = text
        .find("[possible values: ")
        .unwrap_or_else(|| panic!("no role list in parley serve --help:\n{text}"));
    let rest = &text[start + "[possible values: ".len()..];
    let end = rest.find(']').unwrap_or(rest.len());
    rest[..end].split(", ").map(str::to_owned).collect()
}

/// A YAML file (or stream of documents) with its merge keys applied.
pub fn yaml_documents(text: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            let mut v = serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| panic!("YAML: {e}"));
            // A merged mapping can bring merge keys of its own: apply them
            // until none is left.
            for _ in 0..8 {
                v.apply_merge()
                    .unwrap_or_else(|e| panic!("YAML merge keys: {e}"));
            }
            v
        })
        .filter(|v| !v.is_null())
        .collect()
}

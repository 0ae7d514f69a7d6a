//! The deployment artefacts and the command they rely on: `portcullis
//! healthcheck` against running gateways, and the files in deploy/ checked
//! as far as they can be without their platform (see deploy/README.md).

// `portcullis healthcheck`: healthy, stopped, admin listener, TLS listener.
mod healthcheck;
// deploy/systemd: `systemd-analyze verify` and `security`, the settings kept.
mod systemd;
// deploy/Dockerfile and .dockerignore, read as text: stages, user, health
// check, labels; the HEALTHCHECK command run against a gateway.
mod dockerfile;
// deploy/compose: the file's settings, and its Traefik labels turned into
// file-provider configuration for real Traefik in front of two gateways
// sharing Redis, with the compose file's entry-point flags.
mod compose;
// deploy/kubernetes: `kubectl kustomize`, the manifests against each other
// and the ConfigMap's config, that config in a real gateway probed as the
// kubelet does, and the Traefik and ingress-nginx examples.
mod kubernetes;
// LICENSE against Cargo.toml; the README's admin examples against the
// example config's admin port.
mod repository;

use std::path::Path;
use std::process::Command;

use crate::support::{repo_root, require_binary, INSTALL_HINT};

/// Every YAML document in `path` (relative to the repository root), as JSON.
fn yaml_file(path: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(repo_root().join(path))
        .unwrap_or_else(|e| panic!("read {path}: {e}"));
    yaml_docs(&text, path)
}

/// Every YAML document in `text` as JSON, through Python's PyYAML (safe
/// loader: plain data only). `what` names the text in failures.
fn yaml_docs(text: &str, what: &str) -> Vec<serde_json::Value> {
    const TO_JSON: &str = "import json, sys, yaml\n\
        json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)\n";
    let python = require_binary("python3");
    let dir = crate::support::proc::scratch_dir("yaml");
    let input = dir.join("in.yaml");
    std::fs::write(&input, text).unwrap();
    let out = Command::new(python)
        .args(["-c", TO_JSON])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .expect("run python3");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("No module named 'yaml'"),
        "python3 has no PyYAML; {INSTALL_HINT}"
    );
    assert!(out.status.success(), "{what} is not valid YAML: {err}");
    serde_json::from_slice(&out.stdout).expect("python3 printed JSON")
}

/// The text of a file in the repository.
fn repo_file(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// True when `p` (relative to the repository root) exists.
fn exists(p: &str) -> bool {
    Path::new(&repo_root().join(p)).exists()
}

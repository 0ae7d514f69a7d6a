//! deploy/systemd/portcullis.service: `systemd-analyze verify` accepts it
//! without a single warning (with ExecStart pointing at the built binary),
//! `systemd-analyze security` rates it at most 2.0 and deploy/README.md
//! states the rating it gets, and the unit keeps the settings the product
//! relies on (reload is SIGHUP, no capabilities, read-only file system).

use std::process::Command;

use crate::support::proc::scratch_dir;
use crate::support::{repo_root, require_binary};

const UNIT: &str = "deploy/systemd/portcullis.service";
const INSTALLED_BINARY: &str = "/usr/local/bin/portcullis";

fn unit_text() -> String {
    std::fs::read_to_string(repo_root().join(UNIT)).expect("read the unit")
}

/// The unit with ExecStart naming the binary under test, in a scratch directory.
fn unit_for_test() -> std::path::PathBuf {
    let text = unit_text();
    assert!(
        text.contains(INSTALLED_BINARY),
        "{UNIT} no longer runs {INSTALLED_BINARY}"
    );
    let dir = scratch_dir("systemd");
    let path = dir.join("portcullis.service");
    std::fs::write(
        &path,
        text.replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_portcullis")),
    )
    .unwrap();
    path
}

fn settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn deploy_systemd_unit_verifies_without_warnings() {
    let analyze = require_binary("systemd-analyze");
    let unit = unit_for_test();
    let out = Command::new(&analyze)
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze verify");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{said}"
    );
    assert_eq!(said, "", "systemd-analyze verify printed warnings");
}

#[test]
fn deploy_systemd_unit_security_rating_is_documented() {
    let analyze = require_binary("systemd-analyze");
    let unit = unit_for_test();
    let out = Command::new(&analyze)
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze security");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exposure above 2.0:\n{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rating = said
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for portcullis.service: "))
        .map(|(_, r)| r.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| panic!("no overall rating in:\n{said}"));
    let readme = std::fs::read_to_string(repo_root().join("deploy/README.md")).unwrap();
    assert!(
        readme.contains(&format!("exposure level {rating}")),
        "deploy/README.md does not state the rating `exposure level {rating}`"
    );
}

#[test]
fn deploy_systemd_unit_keeps_reload_identity_and_read_only_settings() {
    let s = settings(&unit_text());
    let has = |k: &str, v: &str| s.iter().any(|(a, b)| a == k && b == v);
    for (k, v) in [
        ("Type", "exec"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("ProtectSystem", "strict"),
        ("ReadOnlyPaths", "/etc/portcullis"),
    ] {
        assert!(has(k, v), "{UNIT}: expected {k}={v}");
    }
    let creds: Vec<&str> = s
        .iter()
        .filter(|(k, _)| k == "LoadCredential")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        creds,
        [
            "oidc_client_secret:/etc/portcullis/credentials/oidc_client_secret",
            "portcullis_session:/etc/portcullis/credentials/portcullis_session"
        ]
    );
}

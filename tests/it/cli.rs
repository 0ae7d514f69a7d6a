//! The binary: commands and exit codes.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
}

#[test]
fn gen_secret_prints_a_long_random_secret() {
    let a = bin().arg("gen-secret").output().unwrap();
    let b = bin().arg("gen-secret").output().unwrap();
    assert!(a.status.success());
    let a = String::from_utf8(a.stdout).unwrap();
    assert!(a.trim().len() >= 43);
    assert_ne!(a, String::from_utf8(b.stdout).unwrap());
}

#[test]
fn a_bad_config_exits_non_zero_naming_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"nope\"\n[oidc]\nissuer = \"https://idp.example.com/\"\nclient_id = \"x\"\n[session]\nsecret = \"short\"\ncookie_secur = true\n",
    )
    .unwrap();
    let out = bin()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cookie_secur"), "{err}");
    assert!(err.contains("cookie_secure"), "typo suggestion: {err}");
    assert!(!err.contains("panicked"), "{err}");

    std::fs::write(
        &path,
        "[server]\nlisten = \"nope\"\n[oidc]\nissuer = \"https://idp.example.com/\"\nclient_id = \"x\"\n[session]\nsecret = \"short\"\n[[rule]]\npolicy = \"sometimes\"\n",
    )
    .unwrap();
    let out = bin()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    for needle in ["server.listen", "session.secret", "rule[0].policy"] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
    assert!(!err.contains("short\""), "secret echoed: {err}");
}

#[test]
fn an_unreadable_config_names_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    // A directory: unreadable as a file, even for root.
    for sub in ["serve", "sessions"] {
        let mut cmd = bin();
        cmd.arg(sub);
        if sub == "sessions" {
            cmd.arg("list");
        }
        let out = cmd.arg("--config").arg(dir.path()).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{sub}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.starts_with(&format!(
                "portcullis: cannot read config file {}: ",
                dir.path().display()
            )) && err.contains("directory"),
            "{sub}: {err}"
        );
    }
}

#[test]
fn serve_without_a_config_explains_itself() {
    let out = bin()
        .arg("serve")
        .env_remove("PORTCULLIS_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr).unwrap().contains("--config"));
}

#[test]
fn example_configs_validate() {
    // Every shipped example loads with the secrets from the environment.
    for path in [
        "config/portcullis.example.toml",
        "config/traefik/portcullis.toml",
        "config/caddy/portcullis.toml",
        "config/nginx/portcullis.toml",
    ] {
        let env: std::collections::HashMap<String, String> = [
            ("PORTCULLIS_OIDC_CLIENT_SECRET", "s"),
            (
                "PORTCULLIS_SESSION_SECRET",
                "0123456789abcdef0123456789abcdef",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let text = std::fs::read_to_string(path).unwrap();
        // *_file keys point at /run/secrets in the examples: drop them for the check.
        let text: String = text
            .lines()
            .filter(|l| {
                !l.trim_start().starts_with("client_secret_file")
                    && !l.trim_start().starts_with("secret_file")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        if let Err(e) =
            portcullis::config::Config::from_toml(&text, std::path::Path::new("config"), &env)
        {
            panic!("{path}: {e}");
        }
    }
}

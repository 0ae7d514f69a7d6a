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
fn a_missing_tls_certificate_names_the_file_and_the_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("missing-cert.pem");
    let key = dir.path().join("missing-key.pem");
    let path = dir.path().join("tls.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = {:?}\ntls_key = {:?}\n[oidc]\nissuer = \"https://idp.example.com/\"\nclient_id = \"x\"\n[session]\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    )
    .unwrap();
    let out = bin()
        .args(["serve", "--config"])
        .arg(&path)
        .env(
            "PORTCULLIS_SESSION_SECRET",
            "0123456789abcdef0123456789abcdef-x",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    let os = std::fs::read(&cert).unwrap_err();
    let line = err
        .lines()
        .find(|l| l.starts_with("portcullis: "))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert_eq!(
        line,
        format!("portcullis: tls: {}: {os}", cert.display()),
        "{err}"
    );
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

/// `portcullis migrate oauth2-proxy` as a command: `--config` right after it
/// names oauth2-proxy's file, `PORTCULLIS_CONFIG` is never read as one, and
/// an output that does not validate here exits 1 naming the key.
#[test]
fn migrate_oauth2_proxy_reads_only_its_own_config_and_validates_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let o2p = dir.path().join("oauth2-proxy.cfg");
    std::fs::write(
        &o2p,
        "provider = \"oidc\"\noidc_issuer_url = \"https://idp.example.com\"\nclient_id = \"app\"\nemail_domains = [\"*\"]\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut cmd = bin();
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("PORTCULLIS_") || k.starts_with("OAUTH2_PROXY_") {
                cmd.env_remove(k.as_ref());
            }
        }
        cmd.args(["migrate", "oauth2-proxy"])
            .args(args)
            .env("PORTCULLIS_CONFIG", &o2p)
            .output()
            .unwrap()
    };
    let o2p_text = o2p.to_str().unwrap();
    let out = run(&["--config", o2p_text]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("issuer = \"https://idp.example.com\""),
        "{stdout}"
    );
    assert!(stdout.contains("config file"), "{stdout}");

    // PORTCULLIS_CONFIG names portcullis's file: not read here.
    let out = run(&[
        "--provider=oidc",
        "--oidc-issuer-url=https://other.example.com",
        "--client-id=x",
        "--email-domain=*",
    ]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    assert!(!stdout.contains("config file"), "{stdout}");
    assert!(stdout.contains("https://other.example.com"), "{stdout}");

    // A file that does not exist here: printed anyway, exit 1 naming the key.
    let out = run(&[
        "--config",
        o2p_text,
        "--client-secret-file=/nonexistent/oidc-secret",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("oidc.client_secret_file"), "{stderr}");
    assert!(String::from_utf8(out.stdout).unwrap().contains("[oidc]"));
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Not an oauth2-proxy option: exit 1 with a suggestion.
    let out = run(&["--cookie-domian=.example.com"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("--cookie-domain"), "{stderr}");
}

//! `portcullis healthcheck` against the real binary: a healthy gateway
//! answers 0, a stopped one 1 with one line naming the cause, the admin
//! listener is probed when the config has one (even on `0.0.0.0`, with an
//! admin token), and a TLS main listener is probed over TLS. The probe runs
//! without the gateway's secrets in its environment, as a container
//! `HEALTHCHECK` does.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::gateway::{direct_config, Gateway, Launch, LISTEN_PLACEHOLDER};
use crate::support::proc::{scratch_dir, Proc};
use crate::support::upstreams::TestCa;
use crate::support::{free_port, wait_for};

/// An issuer nobody answers: health does not depend on the IdP.
const NO_IDP: &str = "http://127.0.0.1:9/";

/// `portcullis healthcheck ARGS` with no `PORTCULLIS_*` variable set.
fn healthcheck(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.arg("healthcheck").args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PORTCULLIS_") {
            cmd.env_remove(&k);
        }
    }
    cmd.output().expect("run portcullis healthcheck")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Exit status 1 and exactly one line on stderr, which is returned.
fn expect_failure(out: &Output, what: &str) -> String {
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: expected exit 1; stdout {:?} stderr {err:?}",
        text(&out.stdout)
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{what}: not one line: {err:?}"
    );
    err
}

fn expect_ok(out: &Output, url: &str, what: &str) {
    assert!(
        out.status.success(),
        "{what}: expected exit 0; stdout {:?} stderr {:?}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout),
        format!("ok: {url} answered 200\n"),
        "{what}"
    );
}

fn config_arg(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn deploy_healthcheck_healthy_then_stopped_gateway() {
    let gw = Gateway::launch(Launch {
        name: "portcullis-healthcheck",
        config: &direct_config(NO_IDP, "", ""),
        wait_ready: false,
        ..Launch::default()
    });
    let url = gw.url("/healthz");
    let config = config_arg(&gw.config);
    expect_ok(
        &healthcheck(&["--config", &config]),
        &url,
        "from the config file",
    );
    expect_ok(&healthcheck(&["--url", &url]), &url, "--url");
    // The global --config may also come before the subcommand, or from the environment.
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--config", &config, "healthcheck"])
        .output()
        .unwrap();
    expect_ok(&out, &url, "--config before the subcommand");
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("healthcheck")
        .env("PORTCULLIS_CONFIG", &config)
        .output()
        .unwrap();
    expect_ok(&out, &url, "PORTCULLIS_CONFIG");

    gw.proc.kill();
    for args in [
        vec!["--config", config.as_str()],
        vec!["--url", url.as_str()],
    ] {
        let err = expect_failure(&healthcheck(&args), "stopped gateway");
        assert!(
            err.starts_with(&format!(
                "portcullis: healthcheck failed: {url}: cannot connect"
            )),
            "{err:?}"
        );
        assert!(err.contains("refused"), "{err:?}");
    }
}

#[test]
fn deploy_healthcheck_probes_the_admin_listener() {
    let admin = free_port();
    let dir = scratch_dir("healthcheck-admin");
    let token = dir.join("admin_token");
    std::fs::write(&token, "healthcheck-admin-token-0123456789\n").unwrap();
    let config = direct_config(NO_IDP, "", "").replace(
        &format!("listen = \"{LISTEN_PLACEHOLDER}\"\n"),
        &format!(
            "listen = \"{LISTEN_PLACEHOLDER}\"\nadmin_listen = \"0.0.0.0:{admin}\"\nadmin_token_file = {:?}\n",
            token.display().to_string()
        ),
    );
    let gw = Gateway::launch(Launch {
        name: "portcullis-healthcheck-admin",
        config: &config,
        wait_ready: false,
        admin_port: Some(admin),
        ..Launch::default()
    });
    let admin_url = format!("http://127.0.0.1:{admin}/healthz");
    expect_ok(
        &healthcheck(&["--config", &config_arg(&gw.config)]),
        &admin_url,
        "admin_listen on 0.0.0.0",
    );
    // localhost is a name the admin listener accepts; any other is refused.
    let url = format!("http://localhost:{admin}/healthz");
    expect_ok(&healthcheck(&["--url", &url]), &url, "--url localhost");
    // The main listener does not serve health when there is an admin listener.
    let main = gw.url("/healthz");
    let err = expect_failure(&healthcheck(&["--url", &main]), "main listener");
    assert!(err.contains(&format!("{main}: answered ")), "{err:?}");
    assert!(err.contains(", not 200"), "{err:?}");

    gw.proc.kill();
    let err = expect_failure(
        &healthcheck(&["--config", &config_arg(&gw.config)]),
        "stopped",
    );
    assert!(
        err.contains(&format!("{admin_url}: cannot connect")),
        "{err:?}"
    );
}

#[test]
fn deploy_healthcheck_speaks_tls_to_a_tls_listener() {
    let ca = TestCa::new();
    let dir = scratch_dir("healthcheck-tls");
    let [_, cert, key] = ca.write_to(&dir).map(|p| p.display().to_string());
    let port = free_port();
    let config = direct_config(NO_IDP, "", "")
        .replace(LISTEN_PLACEHOLDER, &format!("0.0.0.0:{port}"))
        .replace(
            "[oidc]\n",
            &format!("tls_cert = {cert:?}\ntls_key = {key:?}\n\n[oidc]\n"),
        );
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.arg("serve")
        .arg("--config")
        .arg(&path)
        .env(
            "PORTCULLIS_SESSION_SECRET",
            crate::support::gateway::SESSION_SECRET,
        )
        .env("PORTCULLIS_OIDC_CLIENT_SECRET", "x")
        .current_dir(&dir);
    let proc = Proc::spawn("portcullis-healthcheck-tls", cmd, &dir);
    let url = format!("https://127.0.0.1:{port}/healthz");
    let config = config_arg(&path);
    // The probe itself is the readiness check: it succeeds once the listener is up.
    let out = wait_for(
        "portcullis over TLS",
        || proc.check_alive(),
        || Some(healthcheck(&["--config", &config])).filter(|o| o.status.success()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", proc.logs()));
    expect_ok(&out, &url, "TLS listener from the config");
    // Plain HTTP to a TLS listener is no HTTP answer.
    let plain = format!("http://127.0.0.1:{port}/healthz");
    let err = expect_failure(&healthcheck(&["--url", &plain]), "plain http to TLS");
    assert!(err.contains(&plain), "{err:?}");
    // TLS to a plain listener: the handshake fails, and says so.
    let gw = Gateway::launch(Launch {
        name: "portcullis-healthcheck-plain",
        config: &direct_config(NO_IDP, "", ""),
        wait_ready: false,
        ..Launch::default()
    });
    let tls_to_plain = format!("https://127.0.0.1:{}/healthz", gw.port);
    let err = expect_failure(&healthcheck(&["--url", &tls_to_plain]), "TLS to plain");
    assert!(err.contains("TLS handshake failed"), "{err:?}");
}

#[test]
fn deploy_healthcheck_needs_somewhere_to_probe() {
    let err = expect_failure(&healthcheck(&[]), "no config, no url");
    assert!(
        err.contains("--url") && err.contains("PORTCULLIS_CONFIG"),
        "{err:?}"
    );
    let err = expect_failure(
        &healthcheck(&["--config", "/nonexistent/portcullis.toml"]),
        "missing file",
    );
    assert!(err.contains("/nonexistent/portcullis.toml"), "{err:?}");
}

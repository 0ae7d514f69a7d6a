//! `portcullis migrate oauth2-proxy` end to end: an oauth2-proxy
//! configuration in all three forms (tests/fixtures/oauth2-proxy/e2e.cfg,
//! `OAUTH2_PROXY_*` variables and flags) converted by the built binary, the
//! output started as a real gateway in front of the echo app with the real
//! test IdP behind the login: the group and domain restriction, the public
//! route and oauth2-proxy's header names carry over.

use std::process::Command;

use crate::support::browser::Browser;
use crate::support::echo::Echo;
use crate::support::gateway::{Gateway, Launch};
use crate::support::idp::{Idp, CLIENT_SECRET};
use crate::support::proc::LogsOnFailure;
use crate::support::{free_port, repo_root};

/// Runs `portcullis migrate oauth2-proxy` with `args` and the oauth2-proxy
/// variables `env`; returns the printed config.
fn migrate(args: &[String], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(["migrate", "oauth2-proxy"]).args(args);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("PORTCULLIS_") || k.starts_with("OAUTH2_PROXY_") {
            cmd.env_remove(k.as_ref());
        }
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run portcullis migrate");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "migrate failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn a_converted_oauth2_proxy_configuration_signs_users_in() {
    let (port, admin) = (free_port(), free_port());
    let app = format!("http://app.example.com:{port}");
    let idp = Idp::start(&[format!("{app}/oauth2/callback")]);
    let echo = Echo::start();
    let fixture = repo_root().join("tests/fixtures/oauth2-proxy/e2e.cfg");
    let toml = migrate(
        &[
            "--config".to_owned(),
            fixture.display().to_string(),
            format!("--oidc-issuer-url={}", idp.issuer),
            "--upstream".to_owned(),
            format!("http://127.0.0.1:{}/", echo.port),
            format!("--redirect-url={app}/oauth2/callback"),
            format!("--whitelist-domain=app.example.com:{port}"),
            format!("--metrics-address=127.0.0.1:{admin}"),
        ],
        &[
            ("OAUTH2_PROXY_CLIENT_SECRET", CLIENT_SECRET),
            ("OAUTH2_PROXY_COOKIE_EXPIRE", "2h"),
        ],
    );
    assert!(
        !toml.contains(CLIENT_SECRET),
        "a secret from the environment was printed:\n{toml}"
    );
    assert!(toml.contains("lifetime = \"2h\""), "{toml}");
    // The client secret as the output's comment says: PORTCULLIS_OIDC_CLIENT_SECRET
    // (the launcher's default); the session secret is the generated one.
    let gw = Gateway::launch(Launch {
        name: "portcullis-migrated",
        config: &toml,
        port: Some(port),
        session_secret: "",
        admin_port: Some(admin),
        ..Launch::default()
    });
    let _logs = LogsOnFailure(vec![&idp.proc, &gw.proc]);

    // alice: example.com address and in "admins": through, with
    // oauth2-proxy's upstream header names and her sub as the user.
    let alice = Browser::new();
    let page = alice.open_as(&format!("{app}/landing?x=1"), "alice").await;
    assert_eq!(
        page.status, 200,
        "login through the converted config:\n{page}"
    );
    let seen = page.expect_app();
    assert_eq!(seen.target, "/landing?x=1");
    assert_eq!(seen.one("x-forwarded-user").as_deref(), Some("alice"));
    assert_eq!(
        seen.one("x-forwarded-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        seen.one("x-forwarded-groups").as_deref(),
        Some("admins,staff")
    );
    assert_eq!(
        seen.one("host").as_deref(),
        Some(format!("app.example.com:{port}").as_str()),
        "pass_host_header (oauth2-proxy's default) became preserve_host"
    );
    let spoofed = alice
        .get_with(&format!("{app}/page"), &[("X-Forwarded-User", "mallory")])
        .await
        .expect_app();
    assert_eq!(spoofed.all("x-forwarded-user"), ["alice"]);

    // bob: example.com but not in "admins" (allowed_groups): refused.
    let bob = Browser::new();
    let page = bob.open_as(&format!("{app}/landing"), "bob").await;
    assert_eq!(page.status, 403, "{page}");
    assert!(page.seen().is_none(), "the app answered for bob");

    // skip_auth_routes GET=^/health/: public, without identity.
    let page = Browser::api().get(&format!("{app}/health/live")).await;
    assert_eq!(page.status, 200, "{page}");
    assert_eq!(
        page.expect_app().one("x-forwarded-user").as_deref(),
        Some("")
    );
    // Anything else without a session: 401 for API clients, and no bearer
    // tokens (skip_jwt_bearer_tokens was off).
    let page = Browser::api().get(&format!("{app}/page")).await;
    assert_eq!(page.status, 401, "{page}");
    assert!(page.seen().is_none());
}

//! Secrets the way containers hand them over: a gateway whose every secret
//! (client secret, session secrets for rotation, the Redis URL with its
//! password, the admin token) is a file, with no `PORTCULLIS_*` variable
//! set. It logs in at the real IdP, keeps sessions in a password-protected
//! Redis, verifies a cookie signed with the older secret of the list and
//! signs with the first, and opens the admin API only with the token. The
//! same config with a secret also in the environment refuses to start,
//! naming both places.

use std::process::Command;
use std::time::Duration;

use crate::support::browser::Browser;
use crate::support::free_port;
use crate::support::gateway::{app_config, Gateway, Launch, LISTEN_PLACEHOLDER, SESSION_SECRET};
use crate::support::http::raw_request;
use crate::support::idp::{Idp, CLIENT_SECRET};
use crate::support::proc::{scratch_dir, LogsOnFailure, Proc};
use crate::support::redis::Redis;

const REDIS_PASSWORD: &str = "redis-password-from-a-file-4711";
const ADMIN_TOKEN: &str = "admin-token-from-a-file-0123456789";
/// Signs on the gateway with files; `SESSION_SECRET` follows it in the list.
const NEW_SECRET: &str = "the-new-session-secret-from-a-file-0123456789";

/// A direct config on Redis with an admin listener; `server`, `oidc` and
/// `session` lines added to their sections.
fn config(issuer: &str, admin: u16, server: &str, oidc: &str, session: &str) -> String {
    app_config(issuer)
        .replace(
            "trusted_proxies = [\"127.0.0.1/32\"]\n",
            &format!(
            "trusted_proxies = [\"127.0.0.1/32\"]\nadmin_listen = \"127.0.0.1:{admin}\"\n{server}\n"
        ),
        )
        .replace("[oidc]\n", &format!("[oidc]\n{oidc}\n"))
        .replace(
            "[session]\ncookie_secure = false\n",
            &format!("[session]\ncookie_secure = false\nstore = \"redis\"\n{session}\n"),
        )
}

/// The forward-auth check of `/` on app.example.com with `cookie`: its status.
fn check(gw: &Gateway, cookie: &str) -> u16 {
    let headers = [("Accept", "application/json"), ("Cookie", cookie)];
    gw.check_app("/", &headers).status
}

#[tokio::test]
async fn every_secret_from_a_file() {
    let redis = Redis::start_with(&["--requirepass", REDIS_PASSWORD]);
    let redis_url = format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}/0", redis.port);
    let (port, admin) = (free_port(), free_port());
    let (old_port, old_admin) = (free_port(), free_port());
    let idp = Idp::start(&[
        format!("http://app.example.com:{port}/oauth2/callback"),
        format!("http://app.example.com:{old_port}/oauth2/callback"),
    ]);
    let dir = scratch_dir("secret-files");
    for (name, contents) in [
        ("oidc_client_secret", format!("{CLIENT_SECRET}\n")),
        (
            "session_secrets",
            format!("{NEW_SECRET}\n{SESSION_SECRET}\n"),
        ),
        ("redis_url", format!("{redis_url}\n")),
        ("admin_token", format!("{ADMIN_TOKEN}\n")),
    ] {
        std::fs::write(dir.join(name), contents).unwrap();
    }
    let file = |name: &str| format!("{:?}", dir.join(name));
    let files_config = config(
        &idp.issuer,
        admin,
        &format!("admin_token_file = {}", file("admin_token")),
        &format!("client_secret_file = {}", file("oidc_client_secret")),
        &format!(
            "secrets_file = {}\nredis_url_file = {}",
            file("session_secrets"),
            file("redis_url")
        ),
    );
    // No PORTCULLIS_* variable: the launcher passes none and clears the rest.
    let gw = Gateway::launch(Launch {
        name: "portcullis-secret-files",
        config: &files_config,
        port: Some(port),
        admin_port: Some(admin),
        client_secret: "",
        session_secret: "",
        ..Launch::default()
    });
    // Before the rotation: the old secret only, from the environment.
    let old = Gateway::launch(Launch {
        name: "portcullis-old-secret",
        config: &config(
            &idp.issuer,
            old_admin,
            "",
            "",
            &format!("redis_url = {redis_url:?}"),
        ),
        port: Some(old_port),
        admin_port: Some(old_admin),
        ..Launch::default()
    });
    let _logs = LogsOnFailure(vec![&idp.proc, &gw.proc, &old.proc]);

    // The client secret from its file completes a login; the session lives
    // in the Redis the URL's file names, behind its password.
    let b = Browser::new();
    let cookie = gw.login(&b, "alice").await;
    assert_eq!(check(&gw, &cookie), 200);
    // The first secret of the file signs: the old gateway cannot read it.
    assert_eq!(check(&old, &cookie), 401, "signed with the old secret");
    // A cookie signed with the old secret verifies with the list.
    let before = Browser::new();
    let old_cookie = old.login(&before, "alice").await;
    assert_eq!(check(&old, &old_cookie), 200);
    assert_eq!(check(&gw, &old_cookie), 200, "old secret listed second");

    // The admin token from its file.
    let host = format!("127.0.0.1:{admin}");
    let sessions = |auth: &[(&str, &str)]| {
        raw_request(admin, "GET", &host, "/admin/sessions?user=alice", auth)
            .expect("the admin listener answers")
    };
    assert_eq!(sessions(&[]).status, 401);
    let r = sessions(&[("Authorization", &format!("Bearer {ADMIN_TOKEN}"))]);
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["sessions"].as_array().map(Vec::len), Some(2), "{v}");

    // No secret in the log.
    let log = gw.log();
    for secret in [
        CLIENT_SECRET,
        NEW_SECRET,
        SESSION_SECRET,
        REDIS_PASSWORD,
        ADMIN_TOKEN,
    ] {
        assert!(!log.contains(secret), "a secret in the log:\n{log}");
    }

    // The same config with the session secret also in the environment:
    // refused at start-up, naming both places.
    let refused = dir.join("twice.toml");
    std::fs::write(
        &refused,
        files_config.replace(LISTEN_PLACEHOLDER, &format!("127.0.0.1:{}", free_port())),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.arg("serve")
        .arg("--config")
        .arg(&refused)
        .env("PORTCULLIS_SESSION_SECRET", SESSION_SECRET)
        .env("NO_COLOR", "1");
    let proc = Proc::spawn("portcullis-twice", cmd, &dir);
    let _more_logs = LogsOnFailure(vec![&proc]);
    let Some(status) = proc.wait_exit(Duration::from_secs(20)) else {
        proc.kill();
        panic!("a secret given twice did not stop start-up");
    };
    assert!(!status.success(), "exited {status}");
    let out = proc.stderr();
    assert!(
        out.contains("session.secret: is given twice, in session.secrets_file and in the environment variable PORTCULLIS_SESSION_SECRET; give it in one place only"),
        "{out}"
    );
    assert!(
        !out.contains(SESSION_SECRET) && !out.contains(NEW_SECRET),
        "{out}"
    );
}

//! The admin API's token with the real binary and the real IdP:
//!
//! - an `admin_listen` on a wildcard address without `admin_token_file`:
//!   `serve` refuses to start and `check` fails, both naming the keys;
//! - with a token file: a real session is revoked only with
//!   `Authorization: Bearer <token>` (no token, a wrong one and one
//!   differing in its last byte get 401 with a challenge, and the session
//!   keeps working), a request addressed to a DNS name without the token
//!   gets 421, health stays open, and the log shows the refusals but never
//!   the token.

use std::process::Command;
use std::time::Duration;

use crate::support::browser::Browser;
use crate::support::free_port;
use crate::support::gateway::{
    app_config, direct_config, Gateway, Launch, APP_RULES, LISTEN_PLACEHOLDER,
};
use crate::support::http::{raw_get, raw_request, RawResponse};
use crate::support::idp::{Idp, CLIENT_SECRET};
use crate::support::proc::{scratch_dir, LogsOnFailure, Proc};

const TOKEN: &str = "e2e-admin-token-0123456789-abcdefghij";

/// `admin_listen = "0.0.0.0:PORT"` (not loopback) added to a direct config.
fn with_public_admin(config: &str, admin: u16, token_line: &str) -> String {
    config.replace(
        "trusted_proxies = [\"127.0.0.1/32\"]\n",
        &format!(
            "trusted_proxies = [\"127.0.0.1/32\"]\nadmin_listen = \"0.0.0.0:{admin}\"\n{token_line}"
        ),
    )
}

#[test]
fn public_admin_listener_without_a_token_refuses_to_start() {
    let dir = scratch_dir("admin-no-token");
    let config = dir.join("portcullis.toml");
    let text = with_public_admin(
        &direct_config("https://idp.example.com/", "", APP_RULES),
        free_port(),
        "",
    )
    .replace(LISTEN_PLACEHOLDER, &format!("127.0.0.1:{}", free_port()));
    assert!(text.contains("admin_listen = \"0.0.0.0:"), "{text}");
    std::fs::write(&config, text).unwrap();
    for sub in ["serve", "check"] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.arg(sub)
            .arg("--config")
            .arg(&config)
            .env("PORTCULLIS_OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .env(
                "PORTCULLIS_SESSION_SECRET",
                crate::support::gateway::SESSION_SECRET,
            )
            .env("NO_COLOR", "1");
        let proc = Proc::spawn(&format!("portcullis-{sub}"), cmd, &dir);
        let status = proc.wait_exit(Duration::from_secs(20));
        let _logs = LogsOnFailure(vec![&proc]);
        let Some(status) = status else {
            proc.kill();
            panic!("`portcullis {sub}` did not refuse the config");
        };
        assert!(!status.success(), "`portcullis {sub}` exited {status}");
        let out = format!("{}{}", proc.stdout(), proc.stderr());
        assert!(
            out.contains("server.admin_listen: 0.0.0.0:")
                && out.contains("is not a loopback address")
                && out.contains("set server.admin_token_file"),
            "`portcullis {sub}`:\n{out}"
        );
    }
}

/// `METHOD /admin/sessions{query}` on `port`, addressed to `host`, with `headers`.
fn admin(
    port: u16,
    method: &str,
    host: &str,
    query: &str,
    headers: &[(&str, &str)],
) -> RawResponse {
    raw_request(
        port,
        method,
        host,
        &format!("/admin/sessions{query}"),
        headers,
    )
    .expect("the admin listener answers")
}

/// The forward-auth check of `/` on app.example.com with `cookie`: its status.
fn check(gw: &Gateway, cookie: &str) -> u16 {
    let headers = [("Accept", "application/json"), ("Cookie", cookie)];
    gw.check_app("/", &headers).status
}

#[tokio::test]
async fn admin_revocation_needs_the_token() {
    let (port, admin_port) = (free_port(), free_port());
    let idp = Idp::start(&[format!("http://app.example.com:{port}/oauth2/callback")]);
    let dir = scratch_dir("admin-token");
    let token_file = dir.join("admin_token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let config = with_public_admin(
        &app_config(&idp.issuer),
        admin_port,
        &format!("admin_token_file = {token_file:?}\n"),
    );
    let gw = Gateway::launch(Launch {
        name: "portcullis-admin-token",
        config: &config,
        port: Some(port),
        admin_port: Some(admin_port),
        ..Launch::default()
    });
    let _logs = LogsOnFailure(vec![&idp.proc, &gw.proc]);

    // A real session.
    let cookie = gw.login(&Browser::new(), "alice").await;
    assert_eq!(check(&gw, &cookie), 200);

    let host = format!("127.0.0.1:{admin_port}");
    let right = format!("Bearer {TOKEN}");
    let last_byte = format!("Bearer {}X", &TOKEN[..TOKEN.len() - 1]);
    // Refused without the token, with a wrong one, with one off by its last byte.
    for auth in [
        None,
        Some("Bearer not-the-admin-token-at-all"),
        Some(last_byte.as_str()),
    ] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
        let r = admin(admin_port, "DELETE", &host, "?user=alice", &headers);
        assert_eq!(r.status, 401, "{auth:?}: {}", r.text());
        assert!(
            r.header("www-authenticate")
                .is_some_and(|c| c.starts_with("Bearer realm=\"portcullis-admin\"")),
            "{:?}",
            r.headers
        );
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON error");
        assert_eq!(v["error"], "unauthorized", "{v}");
        assert_eq!(check(&gw, &cookie), 200, "the session survived {auth:?}");
    }
    // A page that re-pointed its own name at the listener: 421.
    let r = admin(
        admin_port,
        "GET",
        &format!("rebound.example:{admin_port}"),
        "",
        &[],
    );
    assert_eq!(r.status, 421, "{}", r.text());
    // Health stays open (orchestrators probe it without credentials).
    for path in ["/healthz", "/readyz"] {
        assert_eq!(raw_get(admin_port, &host, path, &[]).status, 200, "{path}");
    }
    // With the token: listed and revoked, and the session is over.
    let r = admin(
        admin_port,
        "GET",
        &host,
        "?user=alice",
        &[("Authorization", &right)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["sessions"].as_array().map(Vec::len), Some(1), "{v}");
    let r = admin(
        admin_port,
        "DELETE",
        &host,
        "?user=alice",
        &[("Authorization", &right)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["revoked"], 1, "{v}");
    assert_ne!(check(&gw, &cookie), 200, "the revoked session still works");

    // The refusals are in the log; the token and the wrong ones are not.
    let log = gw.log();
    assert!(
        log.contains("admin request refused: no bearer token"),
        "{log}"
    );
    assert!(
        log.contains("admin request refused: addressed to a name"),
        "{log}"
    );
    assert!(!log.contains(&TOKEN[..20]), "{log}");
    assert!(!log.contains("not-the-admin-token"), "{log}");
}

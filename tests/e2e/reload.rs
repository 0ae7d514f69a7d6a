//! SIGHUP tells the truth: a reload applies the keys read per request (here
//! `server.debug_endpoint`) and keeps the start-up keys (here
//! `session.cookie_name` and `oidc.client_id`) at their running values,
//! naming them in the reload's log line.

use crate::support::browser::Browser;
use crate::support::free_port;
use crate::support::gateway::{app_config, Gateway, Launch, LISTEN_PLACEHOLDER};
use crate::support::http::raw_get;
use crate::support::idp::Idp;
use crate::support::proc::LogsOnFailure;

/// `GET path` on the gateway for app.example.com with `cookie`: status and body.
fn get(gw: &Gateway, path: &str, cookie: &str) -> (u16, String) {
    let r = raw_get(
        gw.port,
        &format!("app.example.com:{}", gw.port),
        path,
        &[("Accept", "application/json"), ("Cookie", cookie)],
    );
    (r.status, r.text())
}

/// The forward-auth check of `/` on app.example.com with `cookie`.
fn check(gw: &Gateway, cookie: &str) -> u16 {
    let headers = [("Accept", "application/json"), ("Cookie", cookie)];
    gw.check_app("/", &headers).status
}

#[tokio::test]
async fn sighup_applies_per_request_keys_and_names_the_restart_only_ones() {
    let port = free_port();
    let idp = Idp::start(&[format!("http://app.example.com:{port}/oauth2/callback")]);
    let before = app_config(&idp.issuer);
    let gw = Gateway::launch(Launch {
        name: "portcullis-sighup",
        config: &before,
        port: Some(port),
        ..Launch::default()
    });
    let _logs = LogsOnFailure(vec![&idp.proc, &gw.proc]);

    let cookie = gw.login(&Browser::new(), "alice").await;
    assert_eq!(check(&gw, &cookie), 200);
    assert_eq!(get(&gw, "/oauth2/debug", &cookie).0, 404, "debug is off");

    // A reloadable key and two start-up keys change.
    let after = before
        .replace(
            "trusted_proxies = [\"127.0.0.1/32\"]\n",
            "trusted_proxies = [\"127.0.0.1/32\"]\ndebug_endpoint = true\n",
        )
        .replace(
            "client_id = \"portcullis\"",
            "client_id = \"renamed-client\"",
        )
        .replace(
            "[session]\ncookie_secure = false\n",
            "[session]\ncookie_secure = false\ncookie_name = \"_renamed\"\n",
        );
    assert!(
        after.contains("debug_endpoint")
            && after.contains("_renamed")
            && after.contains("renamed-client")
    );
    std::fs::write(
        &gw.config,
        after.replace(LISTEN_PLACEHOLDER, &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    gw.hup();
    let log = gw.wait_log("configuration reloaded", 1);
    let line = log
        .lines()
        .find(|l| l.contains("configuration reloaded"))
        .expect("the reload line");
    assert!(
        line.contains(r#"restart_required="oidc.client_id, session.cookie_name""#),
        "{line}"
    );
    assert!(line.contains("WARN"), "{line}");

    // The reloadable key took effect: the debug page shows alice's session.
    let (status, body) = get(&gw, "/oauth2/debug", &cookie);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("alice"), "{body}");
    // The start-up key kept its running value: the cookie under the old
    // name is still the session cookie.
    assert_eq!(check(&gw, &cookie), 200);
    assert_ne!(
        check(&gw, &cookie.replace("_portcullis=", "_renamed=")),
        200
    );
}

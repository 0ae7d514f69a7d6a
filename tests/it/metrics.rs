//! `/metrics`: decision counters by outcome and rule, where the endpoint
//! answers (never on a proxied host), and the admin token in front of it.
//!
//! Every test process shares one set of metrics, so these tests count only
//! on rules whose names no other test uses (`m-*`); the `none` and
//! `default` series, which other tests touch too, are checked to move by
//! at least what these requests add.

use std::net::SocketAddr;

use crate::support::{Harness, Opts};

const RULES: &str = r#"
[access]
default = "deny"
allowed_redirect_domains = ["app.test"]

[[rule]]
name = "m-login"
host = "app.test"
upstream = "http://{app}"

[[rule]]
name = "m-proxied"
host = "proxied.test"
policy = "public"
upstream = "http://{app}"

[[rule]]
name = "m-public"
host = "m.test"
path = "/pub"
policy = "public"

[[rule]]
name = "m-admin"
host = "m.test"
path = "/admin"
groups = ["admins"]

[[rule]]
name = "m-closed"
host = "m.test"
path = "/closed"
policy = "deny"

[[rule]]
name = "m-app"
host = "m.test"
"#;

/// `GET http://addr/metrics` with `Host: host` and an optional bearer token.
async fn scrape(h: &Harness, addr: SocketAddr, host: &str, token: Option<&str>) -> (u16, String) {
    let mut req = h
        .client()
        .get(format!("http://{addr}/metrics"))
        .header("Host", host);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// The value of the sample `series` (name and labels exactly as rendered).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?.strip_prefix(' ')?;
        rest.parse().ok()
    })
}

fn decisions(text: &str, outcome: &str, rule: &str) -> f64 {
    let series = format!("portcullis_decisions_total{{outcome=\"{outcome}\",rule=\"{rule}\"}}");
    value(text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test]
async fn decisions_are_counted_per_outcome_and_rule() {
    let h = Harness::start_with(Opts {
        extra: RULES.into(),
        ..Opts::default()
    })
    .await;
    let bob = h.session_cookie("bob").await;
    let (_, before) = scrape(&h, h.gw.addr, "127.0.0.1", None).await;
    let send = |uri: &str, host: &str, cookie: Option<&str>, bearer: Option<&str>| {
        let mut req = h
            .check("GET", host, uri)
            .header("Accept", "application/json");
        if let Some(c) = cookie {
            req = req.header("Cookie", format!("_portcullis={c}"));
        }
        if let Some(b) = bearer {
            req = req.header("Authorization", format!("Bearer {b}"));
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send("/pub", "m.test", None, None).await, 200);
    assert_eq!(send("/pub/x", "m.test", None, None).await, 200);
    assert_eq!(send("/x", "m.test", None, None).await, 401);
    assert_eq!(send("/x", "m.test", Some(&bob), None).await, 200);
    assert_eq!(send("/admin", "m.test", Some(&bob), None).await, 403);
    assert_eq!(send("/closed", "m.test", Some(&bob), None).await, 403);
    assert_eq!(send("/x", "m.test", None, Some("not.a.jwt")).await, 401);
    assert_eq!(send("/a/../../x", "m.test", None, None).await, 400);
    assert_eq!(send("/x", "nowhere.test", Some(&bob), None).await, 403);
    let (status, after) = scrape(&h, h.gw.addr, "127.0.0.1", None).await;
    assert_eq!(status, 200);
    for (outcome, rule, n) in [
        ("allow", "m-public", 2.0),
        ("allow", "m-app", 1.0),
        ("unauthenticated", "m-app", 1.0),
        ("invalid_token", "m-app", 1.0),
        ("deny", "m-admin", 1.0),
        ("deny", "m-closed", 1.0),
        ("deny", "m-app", 0.0),
        ("error", "m-app", 0.0),
        ("unauthenticated", "m-public", 0.0),
    ] {
        assert_eq!(decisions(&after, outcome, rule), n, "{outcome} {rule}");
    }
    for (outcome, rule) in [("bad_request", "none"), ("deny", "default")] {
        let moved = decisions(&after, outcome, rule) - decisions(&before, outcome, rule);
        assert!(moved >= 1.0, "{outcome} {rule} moved by {moved}");
    }
    // One histogram sample per check; the login made a session lookup.
    let checks = value(&after, "portcullis_check_duration_seconds_count").unwrap();
    assert!(checks >= 9.0, "{checks}");
    assert!(after.contains("portcullis_session_lookups_total{source=\"local_cache\"}"));
    assert!(after.contains("portcullis_build_info{version=\""));
    assert!(!after.contains("bob"), "no label names a user");
}

#[tokio::test]
async fn metrics_are_not_served_on_proxied_hosts() {
    let h = Harness::start_with(Opts {
        extra: RULES.into(),
        ..Opts::default()
    })
    .await;
    // proxied.test is proxied: its /metrics is the app's page.
    let (status, body) = scrape(&h, h.gw.addr, "proxied.test", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("portcullis demo app"), "{body}");
    assert!(!body.contains("portcullis_decisions_total"), "{body}");
    let (status, body) = scrape(&h, h.gw.addr, "127.0.0.1", None).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("# TYPE portcullis_decisions counter"),
        "{body}"
    );
}

#[tokio::test]
async fn metrics_on_the_admin_listener_need_the_token() {
    const TOKEN: &str = "it-metrics-admin-token-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin_token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let h = Harness::start_with(Opts {
        extra: RULES.into(),
        server: format!("admin_listen = \"127.0.0.1:{port}\"\nadmin_token_file = {path:?}\n"),
        ..Opts::default()
    })
    .await;
    let admin = h.gw.admin_addr.expect("an admin listener");
    let (status, _) = scrape(&h, admin, "127.0.0.1", None).await;
    assert_eq!(status, 401);
    let (status, _) = scrape(&h, admin, "127.0.0.1", Some("wrong")).await;
    assert_eq!(status, 401);
    let (status, body) = scrape(&h, admin, "127.0.0.1", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert!(body.contains("portcullis_build_info"), "{body}");
    // With an admin listener, the public one does not serve them.
    let (_, body) = scrape(&h, h.gw.addr, "127.0.0.1", None).await;
    assert!(!body.contains("portcullis_build_info"), "{body}");
}

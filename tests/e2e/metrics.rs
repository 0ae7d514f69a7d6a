//! `/metrics`, request ids and the access log of a real gateway process:
//! scraped before and after a real login at the real IdP, a failed login, a
//! denial, a forward-auth check and a proxied request, the counters that
//! should move move; the whole exposition parses with Prometheus's own
//! OpenMetrics parser. In JSON log mode every line is JSON, the request ids
//! the clients got back are on the lines about their requests, and the log
//! holds none of the client secret, the session cookie, the authorization
//! code or the state.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::browser::Browser;
use crate::support::echo::Echo;
use crate::support::free_port;
use crate::support::gateway::{direct_config, Gateway, Launch};
use crate::support::idp::{Idp, CLIENT_SECRET};
use crate::support::proc::LogsOnFailure;

fn rules(echo: u16) -> String {
    format!(
        r#"[[rule]]
name = "closed"
host = "app.example.com"
path = "/closed"
policy = "deny"

[[rule]]
name = "app"
host = "app.example.com"
path = "/"
policy = "authenticated"
upstream = "http://127.0.0.1:{echo}"

[[rule]]
name = "fa-closed"
host = "fa.example.com"
path = "/closed"
policy = "deny"

[[rule]]
name = "fa-app"
host = "fa.example.com"
path = "/"
policy = "authenticated"
"#
    )
}

/// Every sample of the exposition, `name{labels}` → value, as parsed by
/// `prometheus_client.openmetrics.parser` (which raises on any syntax error).
fn parse(text: &str) -> BTreeMap<String, f64> {
    const PARSER: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/install-test-deps.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused /metrics (or prometheus_client is missing; \
         scripts/install-test-deps.sh installs it):\n{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the parser printed JSON")
}

async fn scrape(admin: u16) -> BTreeMap<String, f64> {
    let res = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(res.status(), 200);
    let ctype = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    parse(&res.text().await.unwrap())
}

/// How much a sample grew between two scrapes (a sample absent before counts from 0).
fn moved(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, key: &str) -> f64 {
    let a = after
        .get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {:#?}", after.keys()));
    a - before.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_request_ids_and_the_json_log_of_a_real_login() {
    let port = free_port();
    let admin = free_port();
    let idp = Idp::start(&[format!("http://app.example.com:{port}/oauth2/callback")]);
    let echo = Echo::start();
    let config = direct_config(
        &idp.issuer,
        r#"allowed_redirect_domains = ["app.example.com"]"#,
        &rules(echo.port),
    )
    .replace(
        "trusted_proxies = [\"127.0.0.1/32\"]\n",
        &format!(
            "trusted_proxies = [\"127.0.0.1/32\"]\nadmin_listen = \"127.0.0.1:{admin}\"\nlog_format = \"json\"\naccess_log = true\n"
        ),
    );
    let gw = Gateway::launch(Launch {
        name: "portcullis-metrics",
        config: &config,
        port: Some(port),
        admin_port: Some(admin),
        ..Launch::default()
    });
    let _logs = LogsOnFailure(vec![&gw.proc, &idp.proc]);
    let base = format!("http://app.example.com:{port}");
    let before = scrape(admin).await;

    // A login at the real IdP, then the app through the proxy.
    let b = Browser::new();
    let page = b.open_as(&format!("{base}/hello?x=1"), "alice").await;
    let seen = page.expect_app();
    let callback = page
        .hops
        .iter()
        .find(|h| h.contains("/oauth2/callback?"))
        .unwrap_or_else(|| panic!("no callback in {:#?}", page.hops))
        .clone();
    let callback_url = url::Url::parse(callback.rsplit(' ').next().unwrap()).unwrap();
    let param = |name: &str| {
        callback_url
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no {name} in {callback_url}"))
    };
    let (code, state) = (param("code"), param("state"));
    let cookie = b.cookie(&base, "_portcullis").expect("a session cookie");

    // The id the client got back is the one the upstream saw.
    let id_back = page
        .header("x-request-id")
        .expect("an X-Request-Id")
        .to_owned();
    assert_eq!(seen.one("x-request-id").as_deref(), Some(id_back.as_str()));

    // A failed login (the state cookie is gone: a replayed callback).
    let replay = Browser::new()
        .get(&format!("{base}/oauth2/callback?code={code}&state={state}"))
        .await;
    assert!(
        replay.status >= 400,
        "a replayed callback: {}",
        replay.status
    );

    // A denial, by rule.
    let denied = b.get(&format!("{base}/closed?token=query-secret")).await;
    assert_eq!(denied.status, 403);
    let denied_id = denied.header("x-request-id").unwrap().to_owned();

    // Forward-auth checks with the session, from a trusted proxy that names its ids.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let check = |uri: &str, id: &str| {
        client
            .get(format!("http://127.0.0.1:{port}/oauth2/auth"))
            .header("X-Forwarded-Proto", "http")
            .header("X-Forwarded-Host", "fa.example.com")
            .header("X-Forwarded-Uri", uri)
            .header("X-Forwarded-Method", "GET")
            .header("X-Request-Id", id)
            .header("Cookie", format!("_portcullis={cookie}"))
            .send()
    };
    let allowed = check("/dash?code=not-logged", "front-proxy-77")
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["x-request-id"], "front-proxy-77");
    let refused = check("/closed", "front-proxy-78").await.unwrap();
    assert_eq!(refused.status(), 403);

    let after = scrape(admin).await;
    let m = |k: &str| moved(&before, &after, k);
    assert_eq!(
        m(r#"portcullis_logins_total{reason="none",result="success"}"#),
        1.0
    );
    assert_eq!(
        m(r#"portcullis_logins_total{reason="state",result="failure"}"#),
        1.0
    );
    assert_eq!(
        m(r#"portcullis_decisions_total{outcome="deny",rule="closed"}"#),
        1.0
    );
    assert_eq!(
        m(r#"portcullis_decisions_total{outcome="allow",rule="fa-app"}"#),
        1.0
    );
    assert!(m(r#"portcullis_decisions_total{outcome="allow",rule="app"}"#) >= 1.0);
    assert!(m(r#"portcullis_decisions_total{outcome="unauthenticated",rule="app"}"#) >= 1.0);
    assert!(m(r#"portcullis_upstream_requests_total{rule="app",status_class="2xx"}"#) >= 1.0);
    assert!(m(r#"portcullis_upstream_duration_seconds_count{rule="app"}"#) >= 1.0);
    assert_eq!(
        m(r#"portcullis_decisions_total{outcome="deny",rule="fa-closed"}"#),
        1.0
    );
    assert_eq!(m("portcullis_check_duration_seconds_count{}"), 2.0);
    assert!(m(r#"portcullis_session_lookups_total{source="local_cache"}"#) >= 2.0);
    assert!(after.contains_key("portcullis_open_connections{}"));
    let build = after
        .keys()
        .find(|k| k.starts_with("portcullis_build_info{"))
        .expect("build info");
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{build}"
    );

    // The log: JSON lines only, ids on the lines of their requests, no secrets.
    let log = gw.log();
    let mut access = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
        if v["target"] == "portcullis::access" {
            access.push(v);
        }
    }
    for secret in [
        CLIENT_SECRET,
        cookie.as_str(),
        code.as_str(),
        state.as_str(),
        "query-secret",
        "not-logged",
    ] {
        assert!(!log.contains(secret), "the log contains {secret:?}:\n{log}");
    }
    let line_of = |id: &str| {
        access
            .iter()
            .find(|v| v["fields"]["request.id"] == id || v["request.id"] == id)
            .unwrap_or_else(|| panic!("no access line for {id}:\n{log}"))
            .clone()
    };
    let proxied = line_of(&id_back);
    let fields = |v: &serde_json::Value| {
        if v["fields"].is_object() {
            v["fields"].clone()
        } else {
            v.clone()
        }
    };
    let p = fields(&proxied);
    assert_eq!(p["path"], "/hello", "{p}");
    assert_eq!(p["status"], 200, "{p}");
    assert_eq!(p["rule"], "app", "{p}");
    assert_eq!(p["user"], "alice", "{p}");
    let d = fields(&line_of(&denied_id));
    assert_eq!(d["path"], "/closed", "{d}");
    assert_eq!(d["status"], 403, "{d}");
    let c = fields(&line_of("front-proxy-77"));
    assert_eq!(c["host"], "fa.example.com", "{c}");
    assert_eq!(c["path"], "/dash", "{c}");
    assert_eq!(c["rule"], "fa-app", "{c}");
    // The denials' own log lines (not just the access lines) name their ids:
    // the proxied one and the forward-auth one (which runs without a span
    // until it has something to say).
    for id in [denied_id.as_str(), "front-proxy-78"] {
        assert!(
            log.lines()
                .any(|l| l.contains("request denied by rule") && l.contains(id)),
            "the denial's log line does not carry its request id {id}:\n{log}"
        );
    }
}

//! `basic_auth` rules in process: forward-auth answers for good, wrong and
//! missing Basic credentials, group rules for htpasswd users, the failure
//! limit, the verified-credential cache, and Basic headers on rules without
//! `basic_auth`. Proxy mode too. The end-to-end suite repeats this behind
//! real front proxies with a file made by `htpasswd -B`.

use base64::Engine;
use reqwest::StatusCode;

use crate::support::{Harness, Opts};

/// `alice:secret1`, bcrypt as `htpasswd -B` writes it (bob is added at start).
const HTPASSWD: &str = "alice:$2y$05$0b376LHGYrR0ADqlQxkUyeWqu2/bHi09ZEiC04JCaOGrCfzGKi1Gu\n";

const RULES: &str = r#"
[access]
default = "deny"
allowed_redirect_domains = ["app.test"]
htpasswd_file = "{dir}/htpasswd"
htpasswd_groups_file = "{dir}/htgroups"

[[rule]]
name = "dav"
path = "/dav"
basic_auth = true
groups = ["dav"]

[[rule]]
name = "ops"
path = "/ops"
basic_auth = true
groups = ["ops"]

[[rule]]
name = "proxied"
host = "dav.test"
basic_auth = true
upstream = "http://{app}"

[[rule]]
name = "plain"
path = "/plain"
"#;

struct Basic {
    h: Harness,
    _dir: tempfile::TempDir,
}

async fn start() -> Basic {
    let dir = tempfile::tempdir().unwrap();
    let bob = bcrypt::hash("secret2", 4).unwrap();
    std::fs::write(
        dir.path().join("htpasswd"),
        format!("{HTPASSWD}bob:{bob}\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("htgroups"), "dav: alice bob\nops: bob\n").unwrap();
    let extra = RULES.replace("{dir}", &dir.path().display().to_string());
    let h = Harness::start_with(Opts {
        extra,
        ..Opts::default()
    })
    .await;
    Basic { h, _dir: dir }
}

fn basic(user: &str, password: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b64}")
}

async fn check(h: &Harness, uri: &str, auth: Option<&str>, xff: &str) -> reqwest::Response {
    let mut req = h
        .check("GET", "app.test", uri)
        .header("X-Forwarded-For", xff)
        .header("Accept", "application/json");
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    req.send().await.unwrap()
}

fn challenges(res: &reqwest::Response) -> Vec<String> {
    res.headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn good_credentials_pass_with_the_users_groups() {
    let b = start().await;
    let res = check(
        &b.h,
        "/dav/file",
        Some(&basic("alice", "secret1")),
        "203.0.113.1",
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-auth-user"], "alice");
    assert_eq!(res.headers()["x-auth-groups"], "dav");
    assert_eq!(res.headers()["x-auth-email"], "");
    // The groups file decides the group rule: alice is not in ops, bob is.
    let res = check(
        &b.h,
        "/ops",
        Some(&basic("alice", "secret1")),
        "203.0.113.1",
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = check(&b.h, "/ops", Some(&basic("bob", "secret2")), "203.0.113.1").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-auth-groups"], "dav,ops");
}

#[tokio::test]
async fn wrong_and_unknown_credentials_get_the_basic_challenge() {
    let b = start().await;
    for auth in [
        basic("alice", "wrong"),
        basic("mallory", "secret1"),
        "Basic !!!".to_owned(),
    ] {
        let res = check(&b.h, "/dav", Some(&auth), "203.0.113.2").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{auth}");
        assert_eq!(
            challenges(&res),
            vec![portcullis::auth::basic::CHALLENGE],
            "{auth}"
        );
        assert_eq!(res.headers()["x-auth-user"], "");
    }
    // A browser that sent wrong credentials gets the challenge too, not a login redirect.
    let res =
        b.h.check("GET", "app.test", "/dav")
            .header("Accept", "text/html")
            .header("Authorization", basic("alice", "wrong"))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().get("location").is_none());
}

#[tokio::test]
async fn without_credentials_api_clients_are_challenged_and_browsers_sent_to_login() {
    let b = start().await;
    let res = check(&b.h, "/dav", None, "203.0.113.3").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenges(&res),
        vec!["Bearer", portcullis::auth::basic::CHALLENGE]
    );
    let res =
        b.h.check("GET", "app.test", "/dav")
            .header("Accept", "text/html")
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn basic_credentials_on_other_rules_change_nothing() {
    let b = start().await;
    let res = check(
        &b.h,
        "/plain",
        Some(&basic("alice", "secret1")),
        "203.0.113.4",
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&res), vec!["Bearer"]);
    assert_eq!(b.h.gw.gateway.basic.hash_checks(), 0);
}

#[tokio::test]
async fn failures_are_limited_then_refused_without_a_hash_check() {
    let b = start().await;
    for _ in 0..5 {
        let res = check(&b.h, "/dav", Some(&basic("alice", "guess")), "203.0.113.5").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let checks = b.h.gw.gateway.basic.hash_checks();
    assert_eq!(checks, 5);
    // Even the right password waits now, from any address.
    let res = check(
        &b.h,
        "/dav",
        Some(&basic("alice", "secret1")),
        "198.51.100.9",
    )
    .await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // nginx's auth_request passes only 401 and 403 on.
    let res =
        b.h.client()
            .get(format!("{}/oauth2/auth", b.h.base))
            .header("X-Original-URL", "https://app.test/dav")
            .header("X-Original-Method", "GET")
            .header("Authorization", basic("alice", "secret1"))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(b.h.gw.gateway.basic.hash_checks(), checks);
    // The guessing address is limited for every user; bob elsewhere is not.
    let res = check(&b.h, "/dav", Some(&basic("bob", "secret2")), "203.0.113.5").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let res = check(&b.h, "/dav", Some(&basic("bob", "secret2")), "198.51.100.9").await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn verified_credentials_are_hashed_once() {
    let b = start().await;
    for _ in 0..10 {
        let res = check(
            &b.h,
            "/dav",
            Some(&basic("alice", "secret1")),
            "203.0.113.6",
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(b.h.gw.gateway.basic.hash_checks(), 1);
}

#[tokio::test]
async fn proxy_mode_lets_basic_users_through() {
    let b = start().await;
    let url = format!("http://127.0.0.1:{}/x", b.h.gw.addr.port());
    let client = b.h.client();
    let res = client
        .get(&url)
        .header("Host", "dav.test")
        .header("Accept", "application/json")
        .header("Authorization", basic("bob", "secret2"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let echoed: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        echoed["headers"]["x-auth-user"],
        serde_json::json!(["bob"]),
        "{echoed}"
    );
    let res = client
        .get(&url)
        .header("Host", "dav.test")
        .header("Authorization", basic("bob", "nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenges(&res), vec![portcullis::auth::basic::CHALLENGE]);
}

//! The README's promises that no other end-to-end test reached, each checked
//! against the real binary, the real IdP and, where sessions are shared, a
//! real `redis-server`:
//!
//! - the attributes of the real `Set-Cookie` headers of a login and a sign-out;
//! - session-secret rotation (`secrets = [new, old]`: the old one still
//!   verifies, the new one signs);
//! - SIGTERM with a slow proxied request in flight: new connections are
//!   refused, the request completes, the process exits 0;
//! - TLS on portcullis's own listener, HTTP/2 by ALPN and HTTP/1.1;
//! - `portcullis sessions revoke --sid/--all` and `DELETE
//!   /admin/sessions?sid=/?all=true`;
//! - `session.local_cache = false`: a session ended behind an instance's
//!   back is refused by it on the very next request;
//! - the invalidation subscription down: a cached session is trusted at most
//!   30 s, then read from Redis again;
//! - `portcullis demo`: the login it prints, against its built-in issuer,
//!   reaching the demo app.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use url::Url;

use crate::support::balancer::Balancer;
use crate::support::browser::{Browser, Nav};
use crate::support::echo::{Echo, Seen};
use crate::support::gateway::{
    app_config, direct_config, Gateway, Launch, APP_RULES, SESSION_SECRET,
};
use crate::support::http::{raw_get, raw_request, RawResponse};
use crate::support::idp::{Idp, CLIENT_ID, CLIENT_SECRET};
use crate::support::proc::{scratch_dir, LogsOnFailure};
use crate::support::redis::Redis;
use crate::support::upstreams::TestCa;
use crate::support::{free_port, wait_for};

/// Balancers (one per test that moves a login between instances), created
/// before the IdP, which must know every callback URL.
const ROTATION: usize = 0;
const REVOKE: usize = 1;
const NO_CACHE: usize = 2;
const UNSUBSCRIBED: usize = 3;
const BALANCERS: usize = 4;

/// The new secret of the rotation test (the old one is [`SESSION_SECRET`]).
const NEW_SECRET: &str = "rotated-session-secret-0123456789-abcdefghijklmnop";

struct Shared {
    idp: Idp,
    lbs: Vec<Balancer>,
    /// Listen ports of the two cookie-attribute gateways.
    cookie_ports: [u16; 2],
    /// Listen port of the TLS gateway.
    tls_port: u16,
}

fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        let lbs: Vec<Balancer> = (0..BALANCERS).map(|_| Balancer::start()).collect();
        let cookie_ports = [free_port(), free_port()];
        let tls_port = free_port();
        let uris: Vec<String> = lbs
            .iter()
            .map(|lb| lb.port)
            .chain(cookie_ports)
            .map(|port| format!("http://app.example.com:{port}/oauth2/callback"))
            .chain([format!("https://localhost:{tls_port}/oauth2/callback")])
            .collect();
        // A back-channel logout URI with "session required" makes the IdP
        // put its `sid` into ID tokens, which `revoke --sid` names.
        let clients = serde_json::json!([{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": uris,
            "backchannel_logout_uri": format!(
                "http://127.0.0.1:{}/oauth2/backchannel_logout",
                lbs[REVOKE].port
            ),
            "backchannel_logout_session_required": true,
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }]);
        Shared {
            idp: Idp::start_with(&uris, serde_json::json!({ "clients": clients })),
            lbs,
            cookie_ports,
            tls_port,
        }
    })
}

// === helpers ===

/// A gateway config on `redis_url` with an admin listener; `session_extra`
/// is appended to `[session]`.
fn redis_config(redis_url: &str, admin_port: u16, session_extra: &str) -> String {
    app_config(&shared().idp.issuer)
    .replace(
        "[session]\ncookie_secure = false\n",
        &format!(
            "[session]\ncookie_secure = false\nstore = \"redis\"\nredis_url = \"{redis_url}\"\n{session_extra}\n"
        ),
    )
    .replace(
        "trusted_proxies = [\"127.0.0.1/32\"]\n",
        &format!("trusted_proxies = [\"127.0.0.1/32\"]\nadmin_listen = \"127.0.0.1:{admin_port}\"\n"),
    )
}

/// A gateway on Redis, ready; its admin port.
fn redis_gateway(name: &str, redis_url: &str, session_extra: &str) -> (Gateway, u16) {
    let admin = free_port();
    let gw = Gateway::launch(Launch {
        name,
        config: &redis_config(redis_url, admin, session_extra),
        admin_port: Some(admin),
        ..Launch::default()
    });
    (gw, admin)
}

/// A Redis-backed gateway whose session secrets are `secrets = [...]` in
/// its config (and not in the environment: a secret given twice is refused).
fn rotation_gateway(name: &str, redis_url: &str, secrets: &[&str]) -> Gateway {
    let admin = free_port();
    Gateway::launch(Launch {
        name,
        config: &redis_config(redis_url, admin, &format!("secrets = {secrets:?}")),
        admin_port: Some(admin),
        session_secret: "",
        ..Launch::default()
    })
}

/// `http://app.example.com:<balancer>`.
fn base(lb: &Balancer) -> String {
    format!("http://app.example.com:{}", lb.port)
}

/// Logs in as `user` through `lb`, starting on `start` and finishing on `finish`.
async fn login(lb: &Balancer, b: &Browser, user: &str, start: u16, finish: u16) {
    lb.route_to(start);
    let page = b
        .navigate(
            &format!("{}/oauth2/start?rd=%2F", base(lb)),
            Nav {
                login: Some(user),
                stop_before: Some(&|u: &Url| u.path() == "/oauth2/callback"),
            },
        )
        .await;
    let callback = page
        .next
        .clone()
        .unwrap_or_else(|| panic!("no callback reached:\n{page}"));
    lb.route_to(finish);
    let page = b.get(&callback).await;
    assert_eq!(page.status, 302, "callback on {finish} failed:\n{page}");
}

/// A forward-auth check of `/` on instance `port` (through `lb`): its status.
async fn check(lb: &Balancer, b: &Browser, port: u16) -> u16 {
    lb.route_to(port);
    b.get_with(
        &format!("{}/oauth2/auth", base(lb)),
        &[
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "app.example.com"),
            ("X-Forwarded-Uri", "/"),
        ],
    )
    .await
    .status
}

/// Polls checks on `port` until one is not 200 (it must then be the
/// login redirect); how long that took. Fails after `limit`.
async fn until_denied(lb: &Balancer, b: &Browser, port: u16, limit: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let status = check(lb, b, port).await;
        if status != 200 {
            assert_eq!(status, 302, "a revoked session is sent to the login");
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < limit,
            "the session still works on {port} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `METHOD /admin/sessions{query}` on the admin listener: status and JSON.
fn admin(port: u16, method: &str, query: &str) -> (u16, serde_json::Value) {
    let r = raw_request(
        port,
        method,
        &format!("127.0.0.1:{port}"),
        &format!("/admin/sessions{query}"),
        &[],
    )
    .expect("the admin listener answers");
    let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
    (r.status, v)
}

/// `portcullis --config <gw's config> sessions ARGS`, with the secrets in
/// the environment as the gateways have them.
fn sessions_cli(gw: &Gateway, args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("--config")
        .arg(&gw.config)
        .arg("sessions")
        .args(args)
        .env("PORTCULLIS_OIDC_CLIENT_SECRET", CLIENT_SECRET)
        .env("PORTCULLIS_SESSION_SECRET", SESSION_SECRET)
        .env("NO_COLOR", "1")
        .output()
        .expect("run portcullis sessions");
    assert!(
        out.status.success(),
        "portcullis sessions {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The IdP `sid`s of `user`'s sessions, from `sessions list --json`.
fn idp_sids(gw: &Gateway, user: &str) -> Vec<String> {
    let out = sessions_cli(gw, &["list", "--user", user, "--json"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("one JSON object a line");
            v["idp_sid"]
                .as_str()
                .unwrap_or_else(|| panic!("a session without an IdP sid: {l}"))
                .to_owned()
        })
        .collect()
}

/// The `Set-Cookie` values of `r` for cookie `name`.
fn set_cookies<'a>(r: &'a RawResponse, name: &str) -> Vec<&'a str> {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .filter(|v| v.split_once('=').is_some_and(|(n, _)| n.trim() == name))
        .collect()
}

/// A `Set-Cookie` value split into `name=value` and its attributes, names
/// lower-cased (`("max-age", "600")`, `("httponly", "")`).
fn attributes(set_cookie: &str) -> (String, Vec<(String, String)>) {
    let mut parts = set_cookie.split(';').map(str::trim);
    let pair = parts.next().unwrap_or_default().to_owned();
    let attrs = parts
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_owned()),
            None => (p.to_ascii_lowercase(), String::new()),
        })
        .collect();
    (pair, attrs)
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

// === cookie attributes ===

/// One real login on the gateway at `port`, done by hand so every
/// `Set-Cookie` is seen as sent: `/oauth2/start`, the IdP's form, the
/// callback. The responses of the start and of the callback.
async fn login_by_hand(port: u16, user: &str) -> (RawResponse, RawResponse) {
    let host = format!("app.example.com:{port}");
    let start = raw_get(port, &host, "/oauth2/start?rd=%2F", &[]);
    assert_eq!(start.status, 302, "{}", start.text());
    let authorize = start
        .header("location")
        .expect("a login redirect")
        .to_owned();
    let flow: Vec<String> = start
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.split(';').next().unwrap().to_owned())
        .collect();
    assert_eq!(flow.len(), 1, "one flow cookie: {:?}", start.headers);
    let b = Browser::new();
    let page = b
        .navigate(
            &authorize,
            Nav {
                login: Some(user),
                stop_before: Some(&|u: &Url| u.path() == "/oauth2/callback"),
            },
        )
        .await;
    let callback = Url::parse(
        page.next
            .as_deref()
            .expect("the IdP sends the browser back"),
    )
    .expect("a callback URL");
    let target = format!("{}?{}", callback.path(), callback.query().unwrap_or(""));
    let done = raw_get(port, &host, &target, &[("Cookie", &flow[0])]);
    assert_eq!(done.status, 302, "{:?} {}", done.headers, done.text());
    (start, done)
}

#[tokio::test]
async fn cookie_attributes_on_the_real_set_cookie_headers() {
    let s = shared();
    let rules = format!(
        "{APP_RULES}\n[[rule]]\nhost = \"other.example.com\"\npolicy = \"authenticated\"\n"
    );
    let plain = direct_config(
        &s.idp.issuer,
        r#"allowed_redirect_domains = ["app.example.com"]"#,
        &rules,
    );
    // Secure, for the whole domain, two hours.
    let secure = plain.replace(
        "[session]\ncookie_secure = false\n",
        "[session]\ncookie_secure = true\ncookie_domain = \".example.com\"\nlifetime = \"2h\"\n",
    );
    let a = Gateway::launch(Launch {
        name: "portcullis-secure-cookies",
        config: &secure,
        port: Some(s.cookie_ports[0]),
        ..Launch::default()
    });
    let b = Gateway::launch(Launch {
        name: "portcullis-plain-cookies",
        config: &plain,
        port: Some(s.cookie_ports[1]),
        ..Launch::default()
    });
    let _logs = LogsOnFailure(vec![&s.idp.proc, &a.proc, &b.proc]);

    // The login flow cookie: HttpOnly, Secure, SameSite=Lax, this host only,
    // the endpoints' path, ten minutes at most.
    let (start, done) = login_by_hand(a.port, "alice").await;
    let flow = start
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .unwrap();
    let (flow_pair, fa) = attributes(flow);
    assert!(attr(&fa, "httponly").is_some(), "{flow}");
    assert!(attr(&fa, "secure").is_some(), "{flow}");
    assert_eq!(attr(&fa, "samesite"), Some("Lax"), "{flow}");
    assert_eq!(
        attr(&fa, "domain"),
        None,
        "the flow cookie is host-only: {flow}"
    );
    assert_eq!(attr(&fa, "path"), Some("/oauth2"), "{flow}");
    let flow_age: u64 = attr(&fa, "max-age")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Max-Age: {flow}"));
    assert!((1..=600).contains(&flow_age), "{flow}");

    // The session cookie: the same, for the configured domain, living as
    // long as the session; the used flow cookie is cleared.
    let session = set_cookies(&done, "_portcullis");
    assert_eq!(session.len(), 1, "{:?}", done.headers);
    let (pair, sa) = attributes(session[0]);
    assert!(attr(&sa, "httponly").is_some(), "{}", session[0]);
    assert!(attr(&sa, "secure").is_some(), "{}", session[0]);
    assert_eq!(attr(&sa, "samesite"), Some("Lax"), "{}", session[0]);
    assert_eq!(attr(&sa, "path"), Some("/"), "{}", session[0]);
    assert_eq!(attr(&sa, "domain"), Some("example.com"), "{}", session[0]);
    assert_eq!(attr(&sa, "max-age"), Some("7200"), "{}", session[0]);
    let flow_name = flow_pair.split('=').next().unwrap();
    let cleared = set_cookies(&done, flow_name);
    assert_eq!(
        cleared.len(),
        1,
        "the flow cookie is cleared: {:?}",
        done.headers
    );
    let (cleared_pair, ca) = attributes(cleared[0]);
    assert_eq!(cleared_pair, format!("{flow_name}="), "{}", cleared[0]);
    assert_eq!(attr(&ca, "max-age"), Some("0"), "{}", cleared[0]);
    assert_eq!(attr(&ca, "path"), Some("/oauth2"), "{}", cleared[0]);

    // The cookie works for every host under the domain.
    for host in ["app.example.com", "other.example.com"] {
        let r = raw_get(
            a.port,
            host,
            "/oauth2/auth",
            &[
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", host),
                ("X-Forwarded-Uri", "/"),
                ("Cookie", &pair),
            ],
        );
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        assert_eq!(r.header("x-auth-user"), Some("alice"));
    }

    // Sign-out clears exactly that cookie: same name, Domain and Path.
    let out = raw_get(
        a.port,
        &format!("app.example.com:{}", a.port),
        "/oauth2/sign_out",
        &[("Cookie", &pair)],
    );
    assert_eq!(out.status, 302, "{}", out.text());
    let clear = set_cookies(&out, "_portcullis");
    assert_eq!(clear.len(), 1, "{:?}", out.headers);
    let (clear_pair, xa) = attributes(clear[0]);
    assert_eq!(clear_pair, "_portcullis=", "{}", clear[0]);
    assert_eq!(attr(&xa, "max-age"), Some("0"), "{}", clear[0]);
    assert_eq!(attr(&xa, "domain"), Some("example.com"), "{}", clear[0]);
    assert_eq!(attr(&xa, "path"), Some("/"), "{}", clear[0]);
    assert!(attr(&xa, "httponly").is_some() && attr(&xa, "secure").is_some());

    // Without cookie_domain and with cookie_secure = false: host-only, not
    // Secure, the default lifetime of 12 h.
    let (_, done) = login_by_hand(b.port, "bob").await;
    let session = set_cookies(&done, "_portcullis");
    assert_eq!(session.len(), 1, "{:?}", done.headers);
    let (_, pa) = attributes(session[0]);
    assert!(attr(&pa, "httponly").is_some(), "{}", session[0]);
    assert_eq!(attr(&pa, "secure"), None, "{}", session[0]);
    assert_eq!(attr(&pa, "samesite"), Some("Lax"), "{}", session[0]);
    assert_eq!(attr(&pa, "domain"), None, "{}", session[0]);
    assert_eq!(attr(&pa, "path"), Some("/"), "{}", session[0]);
    assert_eq!(attr(&pa, "max-age"), Some("43200"), "{}", session[0]);
}

// === secret rotation ===

#[tokio::test]
async fn secret_rotation_old_secret_verifies_new_secret_signs() {
    let s = shared();
    let lb = &s.lbs[ROTATION];
    let redis = Redis::start();
    // Before the rotation: the old secret only (from the environment).
    let (old, _) = redis_gateway("portcullis-old-secret", &redis.url(), "");
    // During: the new secret first, the old one still listed.
    let rotating = rotation_gateway(
        "portcullis-rotating",
        &redis.url(),
        &[NEW_SECRET, SESSION_SECRET],
    );
    // After: the new secret only.
    let new = rotation_gateway("portcullis-new-secret", &redis.url(), &[NEW_SECRET]);
    let _logs = LogsOnFailure(vec![&s.idp.proc, &old.proc, &rotating.proc, &new.proc]);

    // A cookie issued before the rotation keeps working during it, and
    // only while the old secret is listed.
    let before = Browser::new();
    login(lb, &before, "alice", old.port, old.port).await;
    assert_eq!(check(lb, &before, old.port).await, 200);
    assert_eq!(
        check(lb, &before, rotating.port).await,
        200,
        "old secret listed"
    );
    assert_eq!(
        check(lb, &before, new.port).await,
        302,
        "old secret dropped"
    );

    // A login started before the rotation (flow cookie sealed with the old
    // secret) finishes after it, and its session cookie is signed with the
    // new secret: the old-secret instance refuses it, the new one takes it.
    let during = Browser::new();
    login(lb, &during, "bob", old.port, rotating.port).await;
    assert_eq!(check(lb, &during, rotating.port).await, 200);
    assert_eq!(
        check(lb, &during, new.port).await,
        200,
        "signed with the new secret"
    );
    assert_eq!(
        check(lb, &during, old.port).await,
        302,
        "not signed with the old secret"
    );
    assert_ne!(
        before.cookie(&base(lb), "_portcullis"),
        during.cookie(&base(lb), "_portcullis")
    );
}

// === revocation by IdP session and of everything ===

#[tokio::test]
async fn revoke_by_sid_and_all_from_the_cli_and_the_admin_api() {
    let s = shared();
    let lb = &s.lbs[REVOKE];
    let redis = Redis::start();
    let (a, a_admin) = redis_gateway("portcullis-a", &redis.url(), "");
    let (b, b_admin) = redis_gateway("portcullis-b", &redis.url(), "");
    let _logs = LogsOnFailure(vec![&s.idp.proc, &a.proc, &b.proc]);
    let (pa, pb) = (a.port, b.port);
    // A revocation is honoured by both instances within a second of the
    // command's return (the README's promise), measured with a margin for
    // a busy machine.
    let limit = Duration::from_secs(3);

    // Two IdP sessions of alice (two browsers), one of bob; all cached on both.
    let alice1 = Browser::new();
    login(lb, &alice1, "alice", pa, pa).await;
    let sid1 = idp_sids(&a, "alice");
    assert_eq!(sid1.len(), 1, "{sid1:?}");
    let sid1 = sid1[0].clone();
    let alice2 = Browser::new();
    login(lb, &alice2, "alice", pb, pb).await;
    let sid2: Vec<String> = idp_sids(&b, "alice")
        .into_iter()
        .filter(|s| *s != sid1)
        .collect();
    assert_eq!(sid2.len(), 1, "two IdP sessions: {sid2:?}");
    let sid2 = sid2[0].clone();
    let bob = Browser::new();
    login(lb, &bob, "bob", pa, pb).await;
    for br in [&alice1, &alice2, &bob] {
        assert_eq!(check(lb, br, pa).await, 200);
        assert_eq!(check(lb, br, pb).await, 200);
    }

    // `revoke --sid` ends that IdP session's portcullis session only.
    let out = sessions_cli(&a, &["revoke", "--sid", &sid1]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("revoked 1 session"),
        "{out:?}"
    );
    until_denied(lb, &alice1, pa, limit).await;
    until_denied(lb, &alice1, pb, limit).await;
    for br in [&alice2, &bob] {
        assert_eq!(check(lb, br, pa).await, 200, "another session is untouched");
        assert_eq!(check(lb, br, pb).await, 200, "another session is untouched");
    }

    // `DELETE ?sid=` on B's admin listener: the other alice session.
    assert_eq!(
        admin(b_admin, "DELETE", "?sid=no-such-sid"),
        (200, serde_json::json!({"revoked": 0}))
    );
    let (status, v) = admin(
        b_admin,
        "DELETE",
        &format!("?sid={}", crate::support::encode(&sid2)),
    );
    assert_eq!((status, v["revoked"].as_u64()), (200, Some(1)), "{v}");
    until_denied(lb, &alice2, pa, limit).await;
    until_denied(lb, &alice2, pb, limit).await;
    assert_eq!(check(lb, &bob, pa).await, 200, "bob is untouched");
    assert_eq!(check(lb, &bob, pb).await, 200, "bob is untouched");

    // `DELETE ?all=true` on A: every session, every user.
    let carol = Browser::new();
    login(lb, &carol, "carol", pb, pa).await;
    assert_eq!(check(lb, &carol, pb).await, 200);
    let (status, v) = admin(a_admin, "DELETE", "?all=true");
    assert_eq!((status, v["revoked"].as_u64()), (200, Some(2)), "{v}");
    for br in [&bob, &carol] {
        until_denied(lb, br, pa, limit).await;
        until_denied(lb, br, pb, limit).await;
    }
    let (_, v) = admin(b_admin, "GET", "");
    assert_eq!(v["sessions"].as_array().map(Vec::len), Some(0), "{v}");

    // `revoke --all` from the CLI.
    let again = [Browser::new(), Browser::new()];
    login(lb, &again[0], "alice", pa, pb).await;
    login(lb, &again[1], "bob", pb, pa).await;
    for br in &again {
        assert_eq!(check(lb, br, pa).await, 200);
        assert_eq!(check(lb, br, pb).await, 200);
    }
    let out = sessions_cli(&b, &["revoke", "--all"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("revoked 2 session"),
        "{out:?}"
    );
    for br in &again {
        until_denied(lb, br, pa, limit).await;
        until_denied(lb, br, pb, limit).await;
    }
    assert!(redis.cli(&["KEYS", "portcullis:s:*"]).trim().is_empty());
}

// === local_cache = false ===

#[tokio::test]
async fn without_the_local_cache_every_check_asks_redis() {
    let s = shared();
    let lb = &s.lbs[NO_CACHE];
    let redis = Redis::start();
    let (a, a_admin) = redis_gateway("portcullis-a", &redis.url(), "local_cache = false");
    let (b, _) = redis_gateway("portcullis-b", &redis.url(), "local_cache = false");
    let _logs = LogsOnFailure(vec![&s.idp.proc, &a.proc, &b.proc]);
    let (pa, pb) = (a.port, b.port);

    // A session ended in Redis with no invalidation message at all (as if
    // every message were lost) is refused by both instances on the very
    // next request: neither answers from memory.
    let alice = Browser::new();
    login(lb, &alice, "alice", pa, pb).await;
    for _ in 0..3 {
        assert_eq!(check(lb, &alice, pa).await, 200);
        assert_eq!(check(lb, &alice, pb).await, 200);
    }
    let keys = redis.cli(&["KEYS", "portcullis:s:*"]);
    let keys: Vec<&str> = keys
        .lines()
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(redis.cli(&["DEL", keys[0]]).trim(), "1");
    assert_eq!(check(lb, &alice, pa).await, 302);
    assert_eq!(check(lb, &alice, pb).await, 302);

    // A revocation on A takes effect on B at once.
    let bob = Browser::new();
    login(lb, &bob, "bob", pb, pa).await;
    assert_eq!(check(lb, &bob, pb).await, 200);
    let (status, v) = admin(a_admin, "DELETE", "?user=bob");
    assert_eq!((status, v["revoked"].as_u64()), (200, Some(1)), "{v}");
    assert_eq!(check(lb, &bob, pb).await, 302);
}

// === the invalidation subscription down ===

#[tokio::test]
async fn with_the_subscription_down_a_cached_session_is_trusted_at_most_30_s() {
    let s = shared();
    let lb = &s.lbs[UNSUBSCRIBED];
    let redis = Redis::start();
    // B's Redis user may run commands but has no channel permissions (the
    // Redis 7 default for new ACL users): its invalidation subscription can
    // never be established, while reads and writes work.
    let acl = redis.cli(&[
        "ACL",
        "SETUSER",
        "nochannels",
        "on",
        ">nochannels-pw",
        "~*",
        "resetchannels",
        "+@all",
    ]);
    assert_eq!(acl.trim(), "OK", "{acl}");
    let b_url = format!(
        "redis://nochannels:nochannels-pw@127.0.0.1:{}/0",
        redis.port
    );
    let (a, a_admin) = redis_gateway("portcullis-a", &redis.url(), "");
    let (b, _) = redis_gateway("portcullis-b", &b_url, "");
    let _logs = LogsOnFailure(vec![&s.idp.proc, &a.proc, &b.proc]);
    let (pa, pb) = (a.port, b.port);

    let alice = Browser::new();
    login(lb, &alice, "alice", pa, pa).await;
    assert_eq!(check(lb, &alice, pa).await, 200);
    // B reads the session from Redis now and caches it.
    let read = Instant::now();
    assert_eq!(check(lb, &alice, pb).await, 200);

    let (status, v) = admin(a_admin, "DELETE", "?user=alice");
    assert_eq!((status, v["revoked"].as_u64()), (200, Some(1)), "{v}");
    // A (subscribed) refuses at once; B never hears of it and answers from
    // its cache, which proves the subscription is really down...
    until_denied(lb, &alice, pa, Duration::from_secs(3)).await;
    if read.elapsed() < Duration::from_secs(20) {
        assert_eq!(
            check(lb, &alice, pb).await,
            200,
            "B should not have heard of the revocation"
        );
    }
    // ...until 30 s after it last read the session, when it reads it again.
    until_denied(lb, &alice, pb, Duration::from_secs(45)).await;
    let took = read.elapsed();
    assert!(
        took <= Duration::from_secs(30) + Duration::from_secs(10),
        "B trusted its cached copy for {took:?}"
    );
}

// === SIGTERM drain ===

/// An upstream that takes one request, reports it on `got`, and answers
/// (`body_len` bytes) only when `release` fires.
fn held_upstream(body_len: usize) -> (u16, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the held upstream");
    let port = listener.local_addr().unwrap().port();
    let (got_tx, got) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = got_tx.send(());
        if release_rx.recv().is_err() {
            return;
        }
        let _ = conn.write_all(
            format!("HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        let _ = conn.write_all(&vec![b'x'; body_len]);
    });
    (port, got, release)
}

#[test]
fn sigterm_finishes_a_slow_request_in_flight_and_refuses_new_connections() {
    let s = shared();
    const BODY: usize = 256 * 1024;
    let (up, got, release) = held_upstream(BODY);
    let rules = format!(
        "[[rule]]\nhost = \"app.example.com\"\npath = \"/slow\"\npolicy = \"public\"\nupstream = \"http://127.0.0.1:{up}\"\n"
    );
    let config = direct_config(
        &s.idp.issuer,
        r#"allowed_redirect_domains = ["app.example.com"]"#,
        &rules,
    )
    .replace(
        "trusted_proxies = [\"127.0.0.1/32\"]\n",
        "trusted_proxies = [\"127.0.0.1/32\"]\nshutdown_grace = \"60s\"\n",
    );
    let gw = Gateway::launch(Launch {
        name: "portcullis-drain",
        config: &config,
        ..Launch::default()
    });
    let _logs = LogsOnFailure(vec![&s.idp.proc]);
    let port = gw.port;

    // A request whose answer the upstream holds back.
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let result = (|| -> std::io::Result<Vec<u8>> {
            let mut c = TcpStream::connect(("127.0.0.1", port))?;
            c.set_read_timeout(Some(Duration::from_secs(120)))?;
            c.write_all(
                b"GET /slow HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
            )?;
            let mut out = Vec::new();
            c.read_to_end(&mut out)?;
            Ok(out)
        })();
        let _ = done_tx.send(result);
    });
    got.recv_timeout(Duration::from_secs(30))
        .expect("the request reached the upstream");

    let status = std::process::Command::new("kill")
        .args(["-TERM", &gw.proc.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    // New connections are refused while the request is still in flight.
    wait_for(
        "the listener closing after SIGTERM",
        || gw.proc.check_alive(),
        || match TcpStream::connect(("127.0.0.1", port)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    gw.proc
        .check_alive()
        .expect("the gateway drains instead of exiting");
    assert!(
        matches!(done.try_recv(), Err(mpsc::TryRecvError::Empty)),
        "the request in flight was answered before the upstream answered it"
    );

    // The upstream answers: the client gets all of it, then the process ends.
    release.send(()).unwrap();
    let answer = done
        .recv_timeout(Duration::from_secs(60))
        .expect("the client thread reports")
        .expect("the request in flight completes");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(300)]
    );
    let body_start = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head")
        + 4;
    assert_eq!(answer.len() - body_start, BODY, "the whole body arrived");
    let exit = gw
        .proc
        .wait_exit(Duration::from_secs(30))
        .expect("the gateway exits once drained");
    assert!(
        exit.success(),
        "exit status after SIGTERM: {exit}\n{}",
        gw.log()
    );
}

// === TLS on portcullis's own listener ===

#[tokio::test]
async fn tls_on_the_own_listener_negotiates_http2_by_alpn_and_serves_http1() {
    let s = shared();
    let ca = TestCa::new();
    let dir = scratch_dir("own-tls");
    let [_, cert, key] = ca.write_to(&dir).map(|p| p.display().to_string());
    let echo = Echo::start();
    let admin = free_port();
    let rules = format!(
        "[[rule]]\nhost = \"localhost\"\npath = \"/public\"\npolicy = \"public\"\nupstream = \"http://127.0.0.1:{0}\"\n\n\
         [[rule]]\nhost = \"localhost\"\npolicy = \"authenticated\"\nupstream = \"http://127.0.0.1:{0}\"\n",
        echo.port
    );
    let config = direct_config(
        &s.idp.issuer,
        r#"allowed_redirect_domains = ["localhost"]"#,
        &rules,
    )
    .replace(
        "trusted_proxies = [\"127.0.0.1/32\"]\n",
        &format!(
            "trusted_proxies = [\"127.0.0.1/32\"]\nadmin_listen = \"127.0.0.1:{admin}\"\ntls_cert = {cert:?}\ntls_key = {key:?}\n"
        ),
    );
    let gw = Gateway::launch(Launch {
        name: "portcullis-tls",
        config: &config,
        port: Some(s.tls_port),
        admin_port: Some(admin),
        ..Launch::default()
    });
    let _logs = LogsOnFailure(vec![&s.idp.proc, &gw.proc]);
    let client = |http1_only: bool| {
        let mut b = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).expect("the test CA"),
            )
            .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], gw.port)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(20));
        if http1_only {
            b = b.http1_only();
        }
        b.build().expect("build the TLS client")
    };
    let base = format!("https://localhost:{}", gw.port);

    for (http1_only, version) in [
        (false, reqwest::Version::HTTP_2),
        (true, reqwest::Version::HTTP_11),
    ] {
        let c = client(http1_only);
        // A proxied request: the app sees the scheme the client used.
        let r = c
            .get(format!("{base}/public/x"))
            .send()
            .await
            .expect("HTTPS request");
        assert_eq!(r.version(), version, "ALPN outcome");
        assert_eq!(r.status(), 200);
        let seen = Seen::parse(&r.text().await.unwrap()).expect("the app's answer");
        assert_eq!(seen.target, "/public/x");
        assert_eq!(seen.one("x-forwarded-proto").as_deref(), Some("https"));
        // The gateway's own endpoints: a login starts at the IdP.
        let r = c
            .get(format!("{base}/oauth2/start?rd=%2F"))
            .send()
            .await
            .expect("HTTPS request");
        assert_eq!(r.version(), version);
        assert_eq!(r.status(), 302);
        let to = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(to.starts_with(&s.idp.issuer), "{to}");
        assert!(
            to.contains(&crate::support::encode(&format!("{base}/oauth2/callback"))),
            "the redirect URI names this listener: {to}"
        );
    }
    // A whole login over HTTP/2: the redirect URI names this listener
    // (`:authority`, there is no Host header), the callback signs in, and
    // the app sees the user.
    let c = client(false);
    let r = c
        .get(format!("{base}/oauth2/start?rd=%2Fprivate"))
        .send()
        .await
        .expect("HTTPS request");
    assert_eq!(
        (r.version(), r.status().as_u16()),
        (reqwest::Version::HTTP_2, 302)
    );
    let authorize = r.headers()["location"].to_str().unwrap().to_owned();
    let flow = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = Browser::new()
        .navigate(
            &authorize,
            Nav {
                login: Some("alice"),
                stop_before: Some(&|u: &Url| u.path() == "/oauth2/callback"),
            },
        )
        .await;
    let callback = page
        .next
        .clone()
        .unwrap_or_else(|| panic!("the IdP did not send the browser back:\n{page}"));
    assert!(
        callback.starts_with(&format!("{base}/oauth2/callback?")),
        "{callback}"
    );
    let r = c
        .get(&callback)
        .header("Cookie", &flow)
        .send()
        .await
        .expect("HTTPS request");
    assert_eq!(r.status(), 302, "{:?}", r.headers());
    assert_eq!(r.headers()["location"], "/private");
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("_portcullis="))
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let r = c
        .get(format!("{base}/private"))
        .header("Cookie", &session)
        .send()
        .await
        .expect("HTTPS request");
    assert_eq!(
        (r.version(), r.status().as_u16()),
        (reqwest::Version::HTTP_2, 200)
    );
    let seen = Seen::parse(&r.text().await.unwrap()).expect("the app's answer");
    assert_eq!(seen.one("x-auth-user").as_deref(), Some("alice"));

    // Plain HTTP is not served on the TLS listener.
    let plain = raw_request(gw.port, "GET", "localhost", "/public/x", &[]);
    assert!(
        plain.as_ref().map(|r| r.status).ok() != Some(200),
        "plain HTTP answered on the TLS listener: {plain:?}"
    );
}

// === portcullis demo ===

#[cfg(feature = "dev-issuer")]
/// Follows redirects from `url` (at most 20 hops): the final status, URL and body.
async fn follow(c: &reqwest::Client, url: &str, accept: &str) -> (u16, Url, String) {
    let mut url = Url::parse(url).unwrap();
    for _ in 0..20 {
        let r = c
            .get(url.clone())
            .header("Accept", accept)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = r.status().as_u16();
        if (300..400).contains(&status) {
            let loc = r.headers()["location"].to_str().unwrap().to_owned();
            url = url.join(&loc).unwrap();
            continue;
        }
        return (status, url, r.text().await.unwrap_or_default());
    }
    panic!("more than 20 redirects from {url}");
}

#[cfg(feature = "dev-issuer")]
/// The login `portcullis demo` prints, as a browser does it: open the URL,
/// sign in at the development issuer's form; the demo app's page.
async fn demo_login(url: &str, user: &str) -> (reqwest::Client, String) {
    let c = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let (status, form, body) = follow(&c, url, "text/html").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("name=\"password\""),
        "the issuer's login form at {form}: {body}"
    );
    // The form carries the authorization request in hidden fields, the
    // same parameters as the URL it was shown at.
    let r = c
        .post(
            format!(
                "{}://{}{}",
                form.scheme(),
                form.host_str().unwrap(),
                form.port().map(|p| format!(":{p}")).unwrap_or_default()
            ) + form.path(),
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "text/html")
        .body(format!(
            "{}&username={user}&password=demo",
            form.query().unwrap_or("")
        ))
        .send()
        .await
        .expect("submit the login form");
    assert_eq!(r.status(), 302, "the issuer accepts {user}");
    let next = form
        .join(r.headers()["location"].to_str().unwrap())
        .unwrap();
    let (status, at, body) = follow(&c, next.as_str(), "text/html").await;
    assert_eq!(status, 200, "{at}: {body}");
    assert_eq!(at.as_str(), url, "back where the login started");
    (c, body)
}

#[cfg(feature = "dev-issuer")]
#[tokio::test]
async fn the_demo_login_it_prints_reaches_the_demo_app() {
    let dir = scratch_dir("demo");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(["demo", "--listen", "127.0.0.1:0"])
        .current_dir(&dir);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PORTCULLIS_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("RUST_LOG", "info").env("NO_COLOR", "1");
    let demo = crate::support::proc::Proc::spawn("portcullis-demo", cmd, &dir);
    let _logs = LogsOnFailure(vec![&demo]);
    // The development issuer generates its RSA key at start, which takes
    // seconds in a debug build on a busy machine: a generous bound.
    let deadline = Instant::now() + Duration::from_secs(180);
    let url = loop {
        let found = demo.stdout().lines().find_map(|l| {
            l.trim()
                .strip_prefix("Open ")
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_owned)
        });
        if let Some(url) = found {
            break url;
        }
        demo.check_alive().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            Instant::now() < deadline,
            "portcullis demo printed no URL within 180 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    // alice: the demo app shows her identity, and /admin is hers.
    let (alice, page) = demo_login(&url, "alice").await;
    assert!(page.contains("alice"), "{page}");
    let (status, _, body) = follow(&alice, &url, "application/json").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("the demo app's JSON");
    assert_eq!(
        v["headers"]["x-auth-user"],
        serde_json::json!(["alice"]),
        "{v}"
    );
    let groups = v["headers"]["x-auth-groups"][0].as_str().unwrap_or("");
    assert!(groups.split(',').any(|g| g == "admins"), "{v}");
    let (status, _, body) = follow(&alice, &format!("{url}admin"), "application/json").await;
    assert_eq!(status, 200, "{body}");

    // bob: signed in, but /admin is refused with a page naming the group.
    let (bob, page) = demo_login(&url, "bob").await;
    assert!(page.contains("bob"), "{page}");
    let (status, _, body) = follow(&bob, &format!("{url}admin"), "text/html").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("admins"), "{body}");

    // Without a session, an API client gets 401.
    let stranger = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let (status, _, _) = follow(&stranger, &format!("{url}admin"), "application/json").await;
    assert_eq!(status, 401, "no session, API client");
}

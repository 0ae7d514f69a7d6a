//! Broken session cookies count as no session: tampered, truncated,
//! oversized, foreign, and a genuine cookie from a gateway with a different
//! secret. Each is presented to the forward-auth check (browser and API
//! client) and to `/oauth2/userinfo`; the answer must be the
//! unauthenticated one (302 / 401) with empty identity headers, never 200
//! and never 500.
//!
//! Two more gateways share one real Redis with different session secrets,
//! so a session id signed by the wrong key names a session the store holds:
//! only the MAC check can refuse it.

use std::sync::OnceLock;

use crate::support::browser::Browser;
use crate::support::free_port;
use crate::support::gateway::{app_config, Gateway, Launch, SESSION_SECRET};
use crate::support::http::{raw_get, RawResponse};
use crate::support::idp::Idp;
use crate::support::proc::LogsOnFailure;
use crate::support::redis::Redis;

/// The secret of the second gateway.
const OTHER_SECRET: &str = "another-session-secret-for-gateway-b-0123456789";

struct Stack {
    idp: Idp,
    /// Signs with the usual secret.
    a: Gateway,
    /// Same config, different session secret.
    b: Gateway,
    /// The store of `c` and `d`.
    redis: Redis,
    /// Sessions in `redis`, signs with the usual secret.
    c: Gateway,
    /// Sessions in `redis`, signs with [`OTHER_SECRET`].
    d: Gateway,
}

fn stack() -> &'static Stack {
    static S: OnceLock<Stack> = OnceLock::new();
    S.get_or_init(|| {
        let ports = [free_port(), free_port(), free_port(), free_port()];
        let [pa, pb, pc, pd] = ports;
        let idp = Idp::start(&ports.map(|p| format!("http://app.example.com:{p}/oauth2/callback")));
        let config = app_config(&idp.issuer);
        let a = Gateway::launch(Launch {
            name: "portcullis-a",
            config: &config,
            port: Some(pa),
            ..Launch::default()
        });
        let b = Gateway::launch(Launch {
            name: "portcullis-b",
            config: &config,
            port: Some(pb),
            session_secret: OTHER_SECRET,
            ..Launch::default()
        });
        let redis = Redis::start();
        let shared = config.replace(
            "[session]\ncookie_secure = false\n",
            &format!(
                "[session]\ncookie_secure = false\nstore = \"redis\"\nredis_url = \"{}\"\n",
                redis.url()
            ),
        );
        assert_ne!(shared, config, "the Redis store is configured");
        let c = Gateway::launch(Launch {
            name: "portcullis-c",
            config: &shared,
            port: Some(pc),
            ..Launch::default()
        });
        let d = Gateway::launch(Launch {
            name: "portcullis-d",
            config: &shared,
            port: Some(pd),
            session_secret: OTHER_SECRET,
            ..Launch::default()
        });
        Stack {
            idp,
            a,
            b,
            redis,
            c,
            d,
        }
    })
}

impl Stack {
    fn logs(&self) -> LogsOnFailure<'_> {
        LogsOnFailure(vec![
            &self.idp.proc,
            &self.a.proc,
            &self.b.proc,
            &self.c.proc,
            &self.d.proc,
        ])
    }
}

/// Logs alice in on `gw` and returns the session cookie's value.
async fn session_value(gw: &Gateway) -> String {
    let b = Browser::new();
    let base = format!("http://app.example.com:{}", gw.port);
    let page = b
        .open_as(&format!("{base}/oauth2/start?rd=%2Fsome%2Fpage"), "alice")
        .await;
    assert!(
        page.hops.iter().any(|h| h.contains("/oauth2/callback")),
        "no callback in the login:\n{page}"
    );
    b.cookie(&base, "_portcullis")
        .unwrap_or_else(|| panic!("no session cookie after login:\n{page}"))
}

/// The forward-auth check as Traefik would send it, from 127.0.0.1 (trusted).
fn check(gw: &Gateway, cookie: &str, browser: bool) -> RawResponse {
    let accept = if browser {
        "text/html,application/xhtml+xml"
    } else {
        "application/json"
    };
    raw_get(
        gw.port,
        &format!("127.0.0.1:{}", gw.port),
        "/oauth2/auth",
        &[
            ("Accept", accept),
            ("Cookie", cookie),
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "app.example.com"),
            ("X-Forwarded-Uri", "/some/page?x=1"),
        ],
    )
}

fn userinfo(gw: &Gateway, cookie: &str) -> RawResponse {
    raw_get(
        gw.port,
        &format!("app.example.com:{}", gw.port),
        "/oauth2/userinfo",
        &[("Cookie", cookie)],
    )
}

/// Asserts that `cookie` (a whole `Cookie` header value) is no session on `gw`.
fn assert_no_session(gw: &Gateway, cookie: &str, what: &str) {
    let r = check(gw, cookie, true);
    assert_eq!(
        r.status,
        302,
        "{what}: browser forward-auth check gave {} {:?} {}",
        r.status,
        r.headers,
        r.text()
    );
    assert!(
        r.header("location")
            .unwrap_or("")
            .contains("/oauth2/start?rd="),
        "{what}: {:?}",
        r.headers
    );
    assert_eq!(
        r.header("x-auth-user"),
        Some(""),
        "{what}: identity on a 302: {:?}",
        r.headers
    );
    let r = check(gw, cookie, false);
    assert_eq!(
        r.status,
        401,
        "{what}: API forward-auth check gave {} {:?} {}",
        r.status,
        r.headers,
        r.text()
    );
    assert_eq!(
        r.header("x-auth-user"),
        Some(""),
        "{what}: identity on a 401: {:?}",
        r.headers
    );
    let r = userinfo(gw, cookie);
    assert_eq!(
        r.status,
        401,
        "{what}: userinfo gave {} {}",
        r.status,
        r.text()
    );
    assert!(
        !r.text().contains("alice"),
        "{what}: userinfo leaked the identity: {}",
        r.text()
    );
}

#[tokio::test]
async fn valid_cookie_is_a_session() {
    // The control for every test below: the unmodified cookie works.
    let s = stack();
    let _logs = s.logs();
    let v = session_value(&s.a).await;
    let r = check(&s.a, &format!("_portcullis={v}"), true);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-auth-user"), Some("alice"));
    assert_eq!(r.header("x-auth-groups"), Some("admins,staff"));
    let r = userinfo(&s.a, &format!("_portcullis={v}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let info: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(info["user"], "alice");
}

#[tokio::test]
async fn tampered_cookie_is_no_session() {
    let s = stack();
    let _logs = s.logs();
    let v = session_value(&s.a).await;
    for i in [0, v.len() / 2, v.len() - 1] {
        let mut bytes = v.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_no_session(
            &s.a,
            &format!("_portcullis={tampered}"),
            &format!("cookie with char {i} flipped"),
        );
    }
}

#[tokio::test]
async fn truncated_cookie_is_no_session() {
    let s = stack();
    let _logs = s.logs();
    let v = session_value(&s.a).await;
    for keep in [v.len() - 1, v.len() - 4, v.len() / 2, 1, 0] {
        assert_no_session(
            &s.a,
            &format!("_portcullis={}", &v[..keep]),
            &format!("cookie cut to {keep} of {} chars", v.len()),
        );
    }
}

#[tokio::test]
async fn oversized_cookie_is_no_session() {
    let s = stack();
    let _logs = s.logs();
    let v = session_value(&s.a).await;
    let padded = format!("{v}{}", "A".repeat(8192 - v.len()));
    assert_no_session(
        &s.a,
        &format!("_portcullis={padded}"),
        "valid cookie padded to 8 KiB",
    );
    assert_no_session(
        &s.a,
        &format!("_portcullis={}", "A".repeat(8192)),
        "8 KiB of 'A'",
    );
    assert_no_session(
        &s.a,
        &format!("_portcullis={}", "%FF".repeat(2730)),
        "8 KiB of %FF",
    );
}

#[tokio::test]
async fn foreign_cookie_is_no_session() {
    let s = stack();
    let _logs = s.logs();
    for value in [
        "garbage",
        "",
        "\"quoted\"",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.eyJ1c2VyIjoiYWxpY2UifQ.",
        "%00%0d%0a",
        "====",
    ] {
        assert_no_session(
            &s.a,
            &format!("_portcullis={value}"),
            &format!("_portcullis={value}"),
        );
    }
}

#[tokio::test]
async fn cookie_signed_with_other_secret_is_no_session() {
    let s = stack();
    let _logs = s.logs();
    let from_b = session_value(&s.b).await;
    // It is a real session on B...
    assert_eq!(userinfo(&s.b, &format!("_portcullis={from_b}")).status, 200);
    // ...and nothing on A.
    assert_no_session(
        &s.a,
        &format!("_portcullis={from_b}"),
        "cookie from a gateway with another secret",
    );
}

/// Base64 alphabets of the two halves of a session cookie value:
/// `base64(HMAC-SHA256)` (standard, padded: 43 characters and `=`) then
/// `base64url(session id)` (43 characters).
const STANDARD: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `value` with character `i` replaced by the next one of `alphabet`: same
/// length, still canonical base64 (`i` is not a group's last, partly
/// unused character), so only the MAC can tell.
fn with_char_changed(value: &str, i: usize, alphabet: &[u8]) -> String {
    let mut bytes = value.as_bytes().to_vec();
    let at = alphabet.iter().position(|&c| c == bytes[i]).unwrap();
    bytes[i] = alphabet[(at + 1) % alphabet.len()];
    String::from_utf8(bytes).unwrap()
}

/// The session cookie value for the base64url session id `id` as a gateway
/// with session secret `secret` would sign it: computed here with the
/// `cookie` crate's signed jar (HMAC-SHA256 under the key derived from the
/// secret), not by the gateway.
fn signed(secret: &str, id: &str) -> String {
    let key = cookie::Key::derive_from(secret.as_bytes());
    let mut jar = cookie::CookieJar::new();
    jar.signed_mut(&key)
        .add(cookie::Cookie::new("_portcullis", id.to_owned()));
    jar.get("_portcullis").unwrap().value().to_owned()
}

/// The signed session id of a cookie value (after the 44-character MAC).
fn id_of(value: &str) -> &str {
    assert_eq!(value.len(), 87, "a session cookie value: {value}");
    &value[44..]
}

#[tokio::test]
async fn cookie_with_one_character_of_its_mac_changed_is_no_session() {
    // Same length, valid base64, padding in place, and the id of a session
    // the gateway holds: only the MAC check refuses these.
    let s = stack();
    let _logs = s.logs();
    let v = session_value(&s.a).await;
    assert_eq!(check(&s.a, &format!("_portcullis={v}"), false).status, 200);
    for i in [0, 1, 20, 41] {
        let tampered = with_char_changed(&v, i, STANDARD);
        assert_no_session(
            &s.a,
            &format!("_portcullis={tampered}"),
            &format!("MAC character {i} changed"),
        );
    }
    // One character of the signed id changed: a well-formed cookie whose
    // MAC no longer covers its id.
    let tampered = with_char_changed(&v, 60, URL_SAFE);
    assert_no_session(
        &s.a,
        &format!("_portcullis={tampered}"),
        "id character 60 changed",
    );
}

#[tokio::test]
async fn stored_session_signed_with_another_secret_is_no_session() {
    let s = stack();
    let _logs = s.logs();
    // A session made on C, the gateway under test.
    let from_c = session_value(&s.c).await;
    let id = id_of(&from_c);
    assert!(
        s.redis
            .cli(&["KEYS", "portcullis:s:*"])
            .contains("portcullis:s:"),
        "sessions live in Redis"
    );
    // Control: the test signs the way the gateway does, so its id signed
    // with C's secret is C's session...
    let resigned = signed(SESSION_SECRET, id);
    let r = check(&s.c, &format!("_portcullis={resigned}"), false);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-auth-user"), Some("alice"));
    // ...and signed with any other secret it is nothing.
    for secret in [
        OTHER_SECRET,
        "a-secret-no-gateway-here-has-0123456789abcdef",
    ] {
        assert_no_session(
            &s.c,
            &format!("_portcullis={}", signed(secret, id)),
            "C's session id signed with another secret",
        );
    }
    // A session made on D (same store, another secret) is a session on D,
    // in the store C reads, and nothing on C unless signed with C's secret.
    let from_d = session_value(&s.d).await;
    assert_eq!(userinfo(&s.d, &format!("_portcullis={from_d}")).status, 200);
    assert_no_session(
        &s.c,
        &format!("_portcullis={from_d}"),
        "cookie from a gateway with another secret on the same store",
    );
    let r = check(
        &s.c,
        &format!("_portcullis={}", signed(SESSION_SECRET, id_of(&from_d))),
        false,
    );
    assert_eq!(r.status, 200, "D's session is in the store C reads: {r:?}");
}

//! Broken session cookies count as no session: tampered, truncated,
//! oversized, foreign, and a genuine cookie from a gateway with a different
//! secret. Each is presented to the forward-auth check (browser and API
//! client) and to `/oauth2/userinfo`; the answer must be the
//! unauthenticated one (302 / 401) with empty identity headers, never 200
//! and never 500.

use std::sync::OnceLock;

use crate::support::browser::Browser;
use crate::support::free_port;
use crate::support::gateway::{direct_config, Gateway, Launch, APP_RULES};
use crate::support::http::{raw_get, RawResponse};
use crate::support::idp::Idp;
use crate::support::proc::LogsOnFailure;

/// The secret of the second gateway.
const OTHER_SECRET: &str = "another-session-secret-for-gateway-b-0123456789";

struct Stack {
    idp: Idp,
    /// Signs with the usual secret.
    a: Gateway,
    /// Same config, different session secret.
    b: Gateway,
}

fn stack() -> &'static Stack {
    static S: OnceLock<Stack> = OnceLock::new();
    S.get_or_init(|| {
        let (pa, pb) = (free_port(), free_port());
        let idp = Idp::start(&[
            format!("http://app.example.com:{pa}/oauth2/callback"),
            format!("http://app.example.com:{pb}/oauth2/callback"),
        ]);
        let config = direct_config(
            &idp.issuer,
            r#"allowed_redirect_domains = ["app.example.com"]"#,
            APP_RULES,
        );
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
        Stack { idp, a, b }
    })
}

impl Stack {
    fn logs(&self) -> LogsOnFailure<'_> {
        LogsOnFailure(vec![&self.idp.proc, &self.a.proc, &self.b.proc])
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

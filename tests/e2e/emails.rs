//! Unverified e-mail addresses through a real login: a user whose IdP
//! account carries `email_verified: false` (anyone can type any address at a
//! self-service IdP) gets no address — `X-Auth-Email` is empty, an
//! `email_domains` rule refuses them, and the login logs the fix — unless
//! `oidc.allow_unverified_email = true`. A verified user on the same rules
//! passes, so the refusal is about verification and nothing else.

use std::sync::OnceLock;

use serde_json::json;

use crate::support::browser::Browser;
use crate::support::free_port;
use crate::support::gateway::{direct_config, Gateway, Launch};
use crate::support::http::{raw_get, RawResponse};
use crate::support::idp::{password, Idp};
use crate::support::proc::LogsOnFailure;

/// `/corp` only for addresses at example.com; `/` for anyone signed in.
const RULES: &str = r#"[[rule]]
host = "app.example.com"
path = "/corp"
email_domains = ["example.com"]

[[rule]]
host = "app.example.com"
path = "/boss"
emails = ["ceo@example.com"]

[[rule]]
host = "app.example.com"
path = "/"
policy = "authenticated"
"#;

const WARNING: &str = "did not mark this email as verified";

struct Stack {
    idp: Idp,
    /// Default settings: unverified addresses are dropped.
    strict: Gateway,
    /// `oidc.allow_unverified_email = true`.
    lenient: Gateway,
}

fn stack() -> &'static Stack {
    static S: OnceLock<Stack> = OnceLock::new();
    S.get_or_init(|| {
        let (ps, pl) = (free_port(), free_port());
        let idp = Idp::start_with(
            &[
                format!("http://app.example.com:{ps}/oauth2/callback"),
                format!("http://app.example.com:{pl}/oauth2/callback"),
            ],
            json!({"users": {
                "alice": {"password": password("alice"), "email": "alice@example.com", "groups": ["staff"]},
                "mallory": {"password": password("mallory"), "email": "ceo@example.com", "email_verified": false, "groups": ["staff"]},
            }}),
        );
        let config = direct_config(
            &idp.issuer,
            r#"allowed_redirect_domains = ["app.example.com"]"#,
            RULES,
        );
        let strict = Gateway::launch(Launch {
            name: "portcullis-strict",
            config: &config,
            port: Some(ps),
            ..Launch::default()
        });
        let lenient_config = config.replace(
            "http_timeout = \"5s\"",
            "http_timeout = \"5s\"\nallow_unverified_email = true",
        );
        assert!(lenient_config.contains("allow_unverified_email"));
        let lenient = Gateway::launch(Launch {
            name: "portcullis-lenient",
            config: &lenient_config,
            port: Some(pl),
            ..Launch::default()
        });
        Stack {
            idp,
            strict,
            lenient,
        }
    })
}

impl Stack {
    fn logs(&self) -> LogsOnFailure<'_> {
        LogsOnFailure(vec![&self.idp.proc, &self.strict.proc, &self.lenient.proc])
    }
}

/// Logs `user` in on `gw`; the session cookie as a `Cookie` header value.
async fn login(gw: &Gateway, user: &str) -> String {
    let b = Browser::new();
    let base = format!("http://app.example.com:{}", gw.port);
    let page = b
        .open_as(&format!("{base}/oauth2/start?rd=%2F"), user)
        .await;
    assert!(
        page.hops.iter().any(|h| h.contains("/oauth2/callback")),
        "no callback in the login:\n{page}"
    );
    let value = b
        .cookie(&base, "_portcullis")
        .unwrap_or_else(|| panic!("no session cookie after login:\n{page}"));
    format!("_portcullis={value}")
}

/// The forward-auth check for `path` on app.example.com, as an API client.
fn check(gw: &Gateway, cookie: &str, path: &str) -> RawResponse {
    gw.check_app(path, &[("Accept", "application/json"), ("Cookie", cookie)])
}

fn email_header(r: &RawResponse) -> String {
    r.header("x-auth-email")
        .unwrap_or_else(|| panic!("no X-Auth-Email header: {} {:?}", r.status, r.headers))
        .to_owned()
}

fn userinfo_email(gw: &Gateway, cookie: &str) -> String {
    let r = raw_get(
        gw.port,
        &format!("app.example.com:{}", gw.port),
        "/oauth2/userinfo",
        &[("Cookie", cookie)],
    );
    assert_eq!(r.status, 200, "userinfo: {}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("userinfo JSON");
    v["email"].as_str().expect("email field").to_owned()
}

fn warnings(gw: &Gateway) -> usize {
    gw.log().lines().filter(|l| l.contains(WARNING)).count()
}

#[tokio::test]
async fn unverified_email_is_no_email() {
    let s = stack();
    let _logs = s.logs();
    let before = warnings(&s.strict);
    let cookie = login(&s.strict, "mallory").await;
    assert_eq!(
        warnings(&s.strict),
        before + 1,
        "one warning per login naming the fix:\n{}",
        s.strict.log()
    );
    let line = s
        .strict
        .log()
        .lines()
        .rfind(|l| l.contains(WARNING))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("oidc.allow_unverified_email") && line.contains("mallory"),
        "{line}"
    );

    // Signed in, but without an address.
    let r = check(&s.strict, &cookie, "/anything");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-auth-user"), Some("mallory"));
    assert_eq!(
        email_header(&r),
        "",
        "an unverified address reached the app"
    );
    assert_eq!(userinfo_email(&s.strict, &cookie), "");

    // Neither the domain rule nor the address rule takes the typed-in address.
    for path in ["/corp", "/corp/x", "/boss"] {
        let r = check(&s.strict, &cookie, path);
        assert_eq!(r.status, 403, "{path}: {} {}", r.status, r.text());
    }
    // Later requests of the same session log nothing more.
    assert_eq!(warnings(&s.strict), before + 1);
}

#[tokio::test]
async fn verified_email_passes_the_same_rules() {
    let s = stack();
    let _logs = s.logs();
    let cookie = login(&s.strict, "alice").await;
    let r = check(&s.strict, &cookie, "/corp/x");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(email_header(&r), "alice@example.com");
    assert_eq!(userinfo_email(&s.strict, &cookie), "alice@example.com");
    assert_eq!(check(&s.strict, &cookie, "/boss").status, 403);
}

#[tokio::test]
async fn allow_unverified_email_opts_out() {
    let s = stack();
    let _logs = s.logs();
    assert!(
        s.lenient
            .log()
            .contains("oidc.allow_unverified_email = true"),
        "no start-up warning:\n{}",
        s.lenient.log()
    );
    let cookie = login(&s.lenient, "mallory").await;
    for path in ["/corp/x", "/boss"] {
        let r = check(&s.lenient, &cookie, path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(email_header(&r), "ceo@example.com");
    }
    assert_eq!(warnings(&s.lenient), 0, "{}", s.lenient.log());
}

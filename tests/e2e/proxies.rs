//! Forward auth behind each real front proxy, configured from the examples
//! in config/ (`traefik/`, `caddy/`, `nginx/`, each with its
//! `portcullis.toml`): the login round trip back to the original URL, the
//! identity headers the app receives, spoofed identity headers, group
//! rules, public and unlisted paths, API clients, bearer tokens, and path
//! tricks.
//!
//! Each proxy gets one stack per test binary (IdP, portcullis, proxy, echo
//! app), shared by the tests of its module; every test uses its own browser.

use std::sync::OnceLock;

use crate::support::browser::Browser;
use crate::support::echo::Echo;
use crate::support::gateway::{Gateway, Launch, SESSION_SECRET};
use crate::support::http::{raw_get, RawResponse};
use crate::support::idp::{Idp, CLIENT_SECRET};
use crate::support::proc::{scratch_dir, LogsOnFailure, Proc};
use crate::support::proxy::{self, Edits, Kind, Ports};
use crate::support::{example, free_port, subst};

/// IdP, portcullis (from the proxy's example `portcullis.toml`), the proxy and the app.
pub struct Stack {
    pub kind: Kind,
    pub idp: Idp,
    pub gateway: Gateway,
    pub proxy: Proc,
    pub _echo: Echo,
    /// The proxy's port.
    pub port: u16,
}

impl Stack {
    fn start(kind: Kind) -> Stack {
        proxy::require(kind);
        let echo = Echo::start();
        let port = free_port();
        let gateway_port = free_port();
        let idp = Idp::start(&[format!("http://app.example.com:{port}/oauth2/callback")]);
        let dir = scratch_dir(&format!("{}-secrets", kind.dir()));
        let client_secret = dir.join("oidc_client_secret");
        let session_secret = dir.join("portcullis_session");
        std::fs::write(&client_secret, format!("{CLIENT_SECRET}\n")).unwrap();
        std::fs::write(&session_secret, format!("{SESSION_SECRET}\n")).unwrap();
        let name = format!("{}/portcullis.toml", kind.dir());
        let config = subst(
            &example(&name),
            &name,
            &[
                (
                    "https://idp.example.com/application/o/portcullis/",
                    idp.issuer.as_str(),
                ),
                (
                    "/run/secrets/oidc_client_secret",
                    client_secret.to_str().unwrap(),
                ),
                (
                    "/run/secrets/portcullis_session",
                    session_secret.to_str().unwrap(),
                ),
                // The example's catch-all rule becomes /some, so that other
                // paths match no rule and fall to `default = "deny"`.
                (
                    "path = \"/\"\npolicy = \"authenticated\"",
                    "path = \"/some\"\npolicy = \"authenticated\"",
                ),
            ],
        );
        let gateway = Gateway::launch(Launch {
            name: "portcullis",
            config: &config,
            port: Some(gateway_port),
            // The secrets come from the files the config names.
            client_secret: "",
            session_secret: "",
            ..Launch::default()
        });
        let ports = Ports {
            proxy: port,
            gateway: gateway_port,
            app: echo.port,
        };
        let proxy = proxy::start(kind, &ports, &Edits::default());
        Stack {
            kind,
            idp,
            gateway,
            proxy,
            _echo: echo,
            port,
        }
    }

    /// `http://app.example.com:PORT`.
    pub fn base(&self) -> String {
        format!("http://app.example.com:{}", self.port)
    }

    /// `app.example.com:PORT`, for raw requests.
    pub fn host(&self) -> String {
        format!("app.example.com:{}", self.port)
    }

    /// Prints every component's log if the calling test fails.
    pub fn logs_on_failure(&self) -> LogsOnFailure<'_> {
        LogsOnFailure(vec![&self.idp.proc, &self.gateway.proc, &self.proxy])
    }

    /// A browser logged in as `user` (checked: the app answered), and the
    /// session cookie as a `Cookie` header value.
    pub async fn login(&self, user: &str) -> (Browser, String) {
        let b = Browser::new();
        let url = format!("{}/some/login-{user}", self.base());
        let page = b.open_as(&url, user).await;
        assert_eq!(
            page.status, 200,
            "login as {user} did not end at the app:\n{page}"
        );
        assert_eq!(
            page.url.as_str(),
            url,
            "login as {user} ended elsewhere:\n{page}"
        );
        let value = b
            .cookie(&self.base(), "_portcullis")
            .unwrap_or_else(|| panic!("no session cookie after login:\n{page}"));
        (b, format!("_portcullis={value}"))
    }

    /// A raw request through the proxy with the headers exactly as given.
    pub fn raw(&self, target: &str, headers: &[(&str, &str)]) -> RawResponse {
        raw_get(self.port, &self.host(), target, headers)
    }
}

fn stack(kind: Kind) -> &'static Stack {
    static TRAEFIK: OnceLock<Stack> = OnceLock::new();
    static CADDY: OnceLock<Stack> = OnceLock::new();
    static NGINX: OnceLock<Stack> = OnceLock::new();
    let cell = match kind {
        Kind::Traefik => &TRAEFIK,
        Kind::Caddy => &CADDY,
        Kind::Nginx => &NGINX,
    };
    cell.get_or_init(|| Stack::start(kind))
}

const HTML: (&str, &str) = ("Accept", "text/html,application/xhtml+xml");

/// Client-sent identity headers, in the spellings and forms proxies and
/// back ends treat differently. Values carry "mallory" / "evil" markers.
const SPOOFS: &[&[(&str, &str)]] = &[
    &[("X-Auth-User", "mallory")],
    &[("x-auth-user", "mallory")],
    &[("X-AUTH-USER", "mallory")],
    &[("X_Auth_User", "mallory")],
    &[("x_auth_user", "mallory")],
    &[("X-Auth_User", "mallory")],
    &[("X.Auth.User", "mallory")],
    &[("X-Auth-Email", "mallory@evil.example")],
    &[("X-AUTH-GROUPS", "evil-admins")],
    &[("X_AUTH_GROUPS", "evil-admins")],
    &[("X-Auth-User", "mallory"), ("X-Auth-User", "mallory2")],
    &[
        ("X-Auth-Groups", "evil-admins"),
        ("x-auth-groups", "evil-staff"),
    ],
    &[
        ("X-Auth-User", "mallory"),
        ("x_auth_user", "mallory"),
        ("X-Auth-Email", "mallory@evil.example"),
        ("X-Auth-Groups", "evil-admins"),
        ("X_Auth_Groups", "evil-admins"),
    ],
];
const MARKERS: &[&str] = &["mallory", "evil"];

fn app_seen(r: &RawResponse, what: &str) -> crate::support::echo::Seen {
    assert_eq!(
        r.status,
        200,
        "{what}: expected the app's 200, got {} {:?}\n{}",
        r.status,
        r.headers,
        r.text()
    );
    crate::support::echo::Seen::parse(&r.text())
        .unwrap_or_else(|| panic!("{what}: answer is not from the app: {}", r.text()))
}

async fn login_returns_to_original_url_with_identity_headers(kind: Kind) {
    let s = stack(kind);
    let _logs = s.logs_on_failure();
    let original = format!("{}/some/path?a=1&b=two%20words", s.base());
    let b = Browser::new();
    let page = b.open_as(&original, "alice").await;

    // The first answer sends the browser to the login on the app's host, with rd = the original URL.
    let hop0 = &page.hops[0];
    assert!(
        hop0.starts_with("302 GET "),
        "first hop is not a redirect: {hop0}\n{page}"
    );
    let start = page.hops.get(1).expect("a second hop");
    let start_url = start.split(' ').nth(2).unwrap();
    let start_url = url::Url::parse(start_url).unwrap();
    assert_eq!(
        format!(
            "{}://{}{}",
            start_url.scheme(),
            start_url.host_str().unwrap(),
            start_url.path()
        ),
        "http://app.example.com/oauth2/start",
        "login not started on the app's host: {start_url}\n{page}"
    );
    assert_eq!(start_url.port(), Some(s.port));
    let rd: Vec<String> = start_url
        .query_pairs()
        .filter(|(k, _)| k == "rd")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(
        rd,
        vec![original.clone()],
        "rd is not the original URL\n{page}"
    );

    // After the IdP: exactly the original URL, path and query intact.
    assert_eq!(page.status, 200, "{page}");
    assert_eq!(
        page.url.as_str(),
        original,
        "the login did not return to the original URL\n{page}"
    );
    assert!(
        page.hops.iter().any(|h| h.contains("/interaction/")),
        "no IdP login in the navigation:\n{page}"
    );
    let seen = page.expect_app();
    assert_eq!(seen.target, "/some/path?a=1&b=two%20words");
    assert_eq!(seen.one("x-auth-user").as_deref(), Some("alice"));
    assert_eq!(
        seen.one("x-auth-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(seen.one("x-auth-groups").as_deref(), Some("admins,staff"));
    // The session now exists: a second visit passes without the IdP.
    let again = b.open(&original).await;
    assert_eq!(again.status, 200, "second visit:\n{again}");
    assert_eq!(again.hops.len(), 1, "second visit was redirected:\n{again}");
}

async fn client_identity_headers_never_reach_app(kind: Kind) {
    let s = stack(kind);
    let _logs = s.logs_on_failure();
    let (_b, cookie) = s.login("alice").await;
    for spoof in SPOOFS {
        // Allowed path, signed in: exactly alice's identity, one copy each.
        let mut headers = vec![HTML, ("Cookie", cookie.as_str())];
        headers.extend_from_slice(spoof);
        let seen = app_seen(
            &s.raw("/some/spoof", &headers),
            &format!("allowed path with {spoof:?}"),
        );
        seen.assert_no_spoofed(MARKERS);
        assert_eq!(
            seen.identity(),
            (
                "alice".into(),
                "alice@example.com".into(),
                "admins,staff".into()
            ),
            "with {spoof:?}; all headers: {:#?}",
            seen.headers
        );

        // Public path, signed in and anonymous: empty identity.
        for with_cookie in [true, false] {
            let mut headers = vec![HTML];
            if with_cookie {
                headers.push(("Cookie", cookie.as_str()));
            }
            headers.extend_from_slice(spoof);
            let seen = app_seen(
                &s.raw("/health", &headers),
                &format!("public path with {spoof:?} (session: {with_cookie})"),
            );
            seen.assert_no_spoofed(MARKERS);
            assert_eq!(
                seen.identity(),
                (String::new(), String::new(), String::new()),
                "public path with {spoof:?}: {:#?}",
                seen.headers
            );
        }
    }
}

async fn admin_path_needs_admins_group(kind: Kind) {
    let s = stack(kind);
    let _logs = s.logs_on_failure();
    let (alice, _) = s.login("alice").await;
    let (bob, _) = s.login("bob").await;
    for path in ["/admin", "/admin/settings?x=1"] {
        let url = format!("{}{path}", s.base());
        let page = alice.open(&url).await;
        assert_eq!(page.status, 200, "alice (admins) on {path}:\n{page}");
        let seen = page.expect_app();
        assert_eq!(seen.one("x-auth-user").as_deref(), Some("alice"));
        assert_eq!(seen.target, path);

        let page = bob.open(&url).await;
        assert_eq!(page.status, 403, "bob (staff only) on {path}:\n{page}");
        assert!(
            page.seen().is_none(),
            "bob's request reached the app:\n{page}"
        );
    }
}

async fn user_without_groups_is_denied_admin_but_allowed_elsewhere(kind: Kind) {
    let s = stack(kind);
    let _logs = s.logs_on_failure();
    let (carol, _) = s.login("carol").await;
    let page = carol.open(&format!("{}/admin", s.base())).await;
    assert_eq!(page.status, 403, "carol (no groups) on /admin:\n{page}");
    assert!(
        page.seen().is_none(),
        "carol's /admin request reached the app:\n{page}"
    );

    let page = carol.open(&format!("{}/some/path", s.base())).await;
    assert_eq!(
        page.status, 200,
        "carol on the any-authenticated path:\n{page}"
    );
    let seen = page.expect_app();
    assert_eq!(
        seen.identity(),
        ("carol".into(), "carol@example.com".into(), String::new())
    );
}

async fn public_path_needs_no_login_and_has_empty_identity(kind: Kind) {
    let s = stack(kind);
    let _logs = s.logs_on_failure();
    let b = Browser::new();
    let page = b.open(&format!("{}/health", s.base())).await;
    assert_eq!(page.status, 200, "{page}");
    assert_eq!(page.hops.len(), 1, "a public path redirected:\n{page}");
    let seen = page.expect_app();
    assert_eq!(
        seen.identity(),
        (String::new(), String::new(), String::new()),
        "{:#?}",
        seen.headers
    );
    // Also for API clients.
    let page = Browser::api()
        .get(&format!("{}/health/deep?x=1", s.base()))
        .await;
    assert_eq!(page.status, 200, "{page}");
    page.expect_app();
}

async fn path_without_rule_is_denied(kind: Kind) {
    let s = stack(kind);
    let _logs = s.logs_on_failure();
    let (alice, _) = s.login("alice").await;
    for path in ["/unlisted", "/other/thing?x=1", "/somewhere"] {
        let url = format!("{}{path}", s.base());
        let page = alice.open(&url).await;
        assert_eq!(
            page.status, 403,
            "alice on {path} (no rule, default deny):\n{page}"
        );
        assert!(page.seen().is_none(), "{path} reached the app:\n{page}");
        let page = Browser::new().open(&url).await;
        assert_eq!(
            page.status, 403,
            "anonymous on {path} (no rule, default deny):\n{page}"
        );
        assert!(page.seen().is_none(), "{path} reached the app:\n{page}");
    }
}

async fn api_client_gets_401_with_bearer_challenge(kind: Kind) {
    let s = stack(kind);
    let _logs = s.logs_on_failure();
    let api = Browser::api();
    for path in ["/some/path?a=1", "/admin"] {
        let page = api.get(&format!("{}{path}", s.base())).await;
        assert_eq!(page.status, 401, "API client on {path}:\n{page}");
        let challenge = page.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer"),
            "WWW-Authenticate {challenge:?} on {path}:\n{page}"
        );
        assert!(
            page.location().is_none(),
            "API client was redirected:\n{page}"
        );
        assert!(
            page.header("x-auth-login-url").is_none(),
            "login URL leaked to an API client:\n{page}"
        );
        assert!(page.seen().is_none(), "{page}");
    }
}

/// A bearer JWT signed by the real IdP reaches the app through the proxy
/// with its identity; a bad one gets 401 `invalid_token`, even with a cookie.
async fn bearer_tokens_pass_through_the_proxy(kind: Kind) {
    let s = stack(kind);
    let _logs = s.logs_on_failure();
    let jwt = |claims: serde_json::Value| async move {
        let r: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/__test/jwt", s.idp.issuer))
            .json(&serde_json::json!({ "claims": claims }))
            .send()
            .await
            .expect("idp /__test/jwt")
            .json()
            .await
            .expect("token JSON");
        format!("Bearer {}", r["token"].as_str().expect("token"))
    };
    let good = jwt(
        serde_json::json!({"sub": "svc-1", "preferred_username": "deploy-bot",
        "email": "bot@example.com", "email_verified": true, "groups": ["admins"]}),
    )
    .await;
    let json = ("Accept", "application/json");
    let seen = app_seen(
        &s.raw("/admin/deploy", &[json, ("Authorization", &good)]),
        "bearer on /admin",
    );
    assert_eq!(
        seen.identity(),
        (
            "deploy-bot".into(),
            "bot@example.com".into(),
            "admins".into()
        )
    );
    let expired = jwt(serde_json::json!({"sub": "svc-1", "iat": 1, "exp": 2})).await;
    let (_b, cookie) = s.login("alice").await;
    for headers in [
        vec![json, ("Authorization", expired.as_str())],
        vec![
            HTML,
            ("Cookie", cookie.as_str()),
            ("Authorization", expired.as_str()),
        ],
    ] {
        let r = s.raw("/some/page", &headers);
        assert_eq!(
            r.status,
            401,
            "{} {:?}\n{}",
            kind.dir(),
            r.headers,
            r.text()
        );
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\""),
            "{:?}",
            r.headers
        );
        assert!(
            !r.text().contains("\"echo\""),
            "reached the app: {}",
            r.text()
        );
    }
}

async fn path_tricks_never_reach_app_for_bob(kind: Kind) {
    let s = stack(kind);
    let _logs = s.logs_on_failure();
    let (_b, cookie) = s.login("bob").await;
    let headers = [HTML, ("Cookie", cookie.as_str())];
    // Control: bob's session works on an allowed path.
    app_seen(&s.raw("/some/ok", &headers), "bob on /some/ok");
    let mut report = Vec::new();
    for target in PATH_TRICKS {
        let r = s.raw(target, &headers);
        report.push(format!("{target} -> {}", r.status));
        if let Some(seen) = crate::support::echo::Seen::parse(&r.text()) {
            // It reached the app: only acceptable if the app did not get an /admin request.
            let app_path = normalize_for_app(&seen.target);
            assert!(
                !(app_path == "/admin" || app_path.starts_with("/admin/")),
                "{target}: bob reached the app's {app_path} (raw {}) with identity {:?}",
                seen.target,
                seen.identity()
            );
        } else {
            assert_ne!(
                r.status,
                200,
                "{target}: a 200 that is not from the app: {:?} {}",
                r.headers,
                r.text()
            );
        }
    }
    eprintln!("{:?} path tricks as bob: {report:?}", s.kind);
}

async fn malformed_paths_get_a_client_error(kind: Kind) {
    // SPEC: a malformed original path is answered with 400 by portcullis; the
    // browser must get a 4xx through the proxy too, never a 5xx.
    let s = stack(kind);
    let _logs = s.logs_on_failure();
    let (_b, cookie) = s.login("bob").await;
    let headers = [HTML, ("Cookie", cookie.as_str())];
    let mut bad = Vec::new();
    for target in PATH_TRICKS {
        let r = s.raw(target, &headers);
        if crate::support::echo::Seen::parse(&r.text()).is_none() && !(400..500).contains(&r.status)
        {
            bad.push(format!("{target} -> {}", r.status));
        }
    }
    assert!(
        bad.is_empty(),
        "{:?}: path tricks answered with a non-4xx status: {bad:?}\n{}",
        s.kind,
        s.gateway
            .log()
            .lines()
            .filter(|l| l.contains("rejected"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Paths that name /admin in disguise (encoded dots and slashes, repeated
/// slashes, dot-segments, encoded letters, backslashes).
const PATH_TRICKS: &[&str] = &[
    "/%2e%2e/admin",
    "/%2E%2E/admin",
    "/admin%2f",
    "/admin%2F",
    "/admin%2fsecret",
    "//admin",
    "///admin/x",
    "/./admin",
    "/some/../admin",
    "/some/%2e%2e/admin",
    "/%61dmin",
    "/admin%5c",
    "/health/../admin",
    "/health/%2e%2e/admin",
    "/health%2f..%2fadmin",
];

/// The path an app (or a framework) would route: decoded, dot-segments and
/// repeated slashes removed.
fn normalize_for_app(target: &str) -> String {
    let path = target.split('?').next().unwrap_or("");
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

async fn nginx_401_login_url_leads_to_login_and_back() {
    let s = stack(Kind::Nginx);
    let _logs = s.logs_on_failure();
    let original = format!("{}/some/nginx?x=1&y=a%20b&z=%2Fslash", s.base());
    // What portcullis tells nginx's auth_request: 401 with X-Auth-Login-URL.
    let check = raw_get(
        s.gateway.port,
        &s.host(),
        "/oauth2/auth",
        &[
            HTML,
            ("X-Original-URL", original.as_str()),
            ("X-Original-Method", "GET"),
        ],
    );
    assert_eq!(check.status, 401, "{check:?}");
    let login_url = check
        .header("x-auth-login-url")
        .expect("X-Auth-Login-URL on the 401")
        .to_owned();
    assert!(
        login_url.starts_with(&format!("{}/oauth2/start?rd=", s.base())),
        "{login_url}"
    );

    // nginx turns it into the browser's redirect.
    let b = Browser::new();
    let first = b.get(&original).await;
    assert_eq!(first.status, 302, "{first}");
    assert_eq!(first.location(), Some(login_url.as_str()), "{first}");

    // And the browser gets through the IdP and back.
    let page = b.open_as(&original, "alice").await;
    assert_eq!(page.status, 200, "{page}");
    assert_eq!(page.url.as_str(), original, "{page}");
    let seen = page.expect_app();
    assert_eq!(seen.target, "/some/nginx?x=1&y=a%20b&z=%2Fslash");
    assert_eq!(seen.one("x-auth-user").as_deref(), Some("alice"));
}

macro_rules! proxy_suite {
    ($module:ident, $kind:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn login_returns_to_original_url_with_identity_headers() {
                super::login_returns_to_original_url_with_identity_headers($kind).await;
            }
            #[tokio::test]
            async fn client_identity_headers_never_reach_app() {
                super::client_identity_headers_never_reach_app($kind).await;
            }
            #[tokio::test]
            async fn admin_path_needs_admins_group() {
                super::admin_path_needs_admins_group($kind).await;
            }
            #[tokio::test]
            async fn user_without_groups_is_denied_admin_but_allowed_elsewhere() {
                super::user_without_groups_is_denied_admin_but_allowed_elsewhere($kind).await;
            }
            #[tokio::test]
            async fn public_path_needs_no_login_and_has_empty_identity() {
                super::public_path_needs_no_login_and_has_empty_identity($kind).await;
            }
            #[tokio::test]
            async fn path_without_rule_is_denied() {
                super::path_without_rule_is_denied($kind).await;
            }
            #[tokio::test]
            async fn api_client_gets_401_with_bearer_challenge() {
                super::api_client_gets_401_with_bearer_challenge($kind).await;
            }
            #[tokio::test]
            async fn bearer_tokens_pass_through_the_proxy() {
                super::bearer_tokens_pass_through_the_proxy($kind).await;
            }
            #[tokio::test]
            async fn path_tricks_never_reach_app_for_bob() {
                super::path_tricks_never_reach_app_for_bob($kind).await;
            }
            #[tokio::test]
            async fn malformed_paths_get_a_client_error() {
                super::malformed_paths_get_a_client_error($kind).await;
            }
        }
    };
}

proxy_suite!(traefik, Kind::Traefik);
proxy_suite!(caddy, Kind::Caddy);
proxy_suite!(nginx, Kind::Nginx);

#[tokio::test]
async fn nginx_login_url_header_drives_browser_to_login_and_back() {
    nginx_401_login_url_leads_to_login_and_back().await;
}

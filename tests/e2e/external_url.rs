//! Domain-wide SSO behind Traefik: portcullis's endpoints on
//! `auth.example.com` (`server.external_url`), the app on `app.example.com`,
//! one session cookie for `example.com`, and `rd` allowed anywhere under
//! `.example.com`. Built from config/traefik/ with a router for the auth
//! host added and the three settings switched on.

use std::sync::OnceLock;

use url::Url;

use crate::support::browser::{Browser, Nav};
use crate::support::echo::Echo;
use crate::support::gateway::{Gateway, Launch, SESSION_SECRET};
use crate::support::idp::{Idp, CLIENT_SECRET};
use crate::support::proc::{scratch_dir, LogsOnFailure, Proc};
use crate::support::proxy::{self, Edits, Kind, Ports};
use crate::support::{encode, example, free_port, subst};

struct Stack {
    idp: Idp,
    gateway: Gateway,
    proxy: Proc,
    _echo: Echo,
    port: u16,
}

const AUTH_ROUTER: &str = r#"
    # Test addition: portcullis's own host for domain-wide SSO.
    auth:
      rule: "Host(`auth.example.com`)"
      entryPoints: ["web"]
      service: portcullis
      priority: 30

  services:
"#;

fn stack() -> &'static Stack {
    static S: OnceLock<Stack> = OnceLock::new();
    S.get_or_init(|| {
        proxy::require(Kind::Traefik);
        let echo = Echo::start();
        let port = free_port();
        let gateway_port = free_port();
        let idp = Idp::start(&[format!("http://auth.example.com:{port}/oauth2/callback")]);
        let dir = scratch_dir("traefik-sso-secrets");
        let client_secret = dir.join("oidc_client_secret");
        let session_secret = dir.join("portcullis_session");
        std::fs::write(&client_secret, CLIENT_SECRET).unwrap();
        std::fs::write(&session_secret, SESSION_SECRET).unwrap();
        let external = format!("trusted_proxies = [\"127.0.0.1/32\"]\nexternal_url = \"http://auth.example.com:{port}\"");
        let config = subst(
            &example("traefik/portcullis.toml"),
            "traefik/portcullis.toml",
            &[
                ("https://idp.example.com/application/o/portcullis/", idp.issuer.as_str()),
                ("/run/secrets/oidc_client_secret", client_secret.to_str().unwrap()),
                ("/run/secrets/portcullis_session", session_secret.to_str().unwrap()),
                ("trusted_proxies = [\"127.0.0.1/32\"]", external.as_str()),
                ("cookie_secure = false", "cookie_secure = false\ncookie_domain = \"example.com\""),
                ("allowed_redirect_domains = [\"app.example.com\"]", "allowed_redirect_domains = [\".example.com\"]"),
            ],
        );
        let gateway = Gateway::launch(Launch { name: "portcullis-sso", config: &config, port: Some(gateway_port), client_secret: "", session_secret: "", ..Launch::default() });
        let ports = Ports { proxy: port, gateway: gateway_port, app: echo.port };
        let edits = Edits {
            traefik_dynamic: vec![("\n  services:\n", AUTH_ROUTER)],
            ..Edits::default()
        };
        let proxy = proxy::start(Kind::Traefik, &ports, &edits);
        Stack { idp, gateway, proxy, _echo: echo, port }
    })
}

impl Stack {
    fn logs(&self) -> LogsOnFailure<'_> {
        LogsOnFailure(vec![&self.idp.proc, &self.gateway.proc, &self.proxy])
    }
    fn app(&self) -> String {
        format!("http://app.example.com:{}", self.port)
    }
    fn auth(&self) -> String {
        format!("http://auth.example.com:{}", self.port)
    }
}

#[tokio::test]
async fn login_on_auth_host_returns_to_app_with_domain_cookie() {
    let s = stack();
    let _logs = s.logs();
    let original = format!("{}/some/path?a=1&b=two%20words", s.app());
    let b = Browser::new();
    let page = b.open_as(&original, "alice").await;
    assert_eq!(page.status, 200, "{page}");
    assert_eq!(page.url.as_str(), original, "{page}");
    // The login ran on the auth host.
    let start = page.hops.get(1).map(String::as_str).unwrap_or("");
    assert!(
        start.contains(&format!("GET {}/oauth2/start?rd=", s.auth())),
        "login did not start on the auth host:\n{page}"
    );
    assert!(
        page.hops
            .iter()
            .any(|h| h.contains(&format!("{}/oauth2/callback?", s.auth()))),
        "{page}"
    );
    let seen = page.expect_app();
    assert_eq!(
        seen.identity(),
        (
            "alice".into(),
            "alice@example.com".into(),
            "admins,staff".into()
        )
    );

    // One cookie for the whole domain: sent to every subdomain.
    let on_auth = b
        .cookie(&s.auth(), "_portcullis")
        .expect("session cookie for the auth host");
    assert_eq!(
        b.cookie(&s.app(), "_portcullis").as_deref(),
        Some(on_auth.as_str())
    );
    assert_eq!(
        b.cookie(
            &format!("http://other.example.com:{}", s.port),
            "_portcullis"
        )
        .as_deref(),
        Some(on_auth.as_str())
    );

    // Group rules still apply on the app host.
    let admin = b.open(&format!("{}/admin", s.app())).await;
    assert_eq!(admin.status, 200, "{admin}");
    let bob = Browser::new();
    let page = bob.open_as(&format!("{}/admin", s.app()), "bob").await;
    assert_eq!(page.status, 403, "bob on /admin:\n{page}");
}

#[tokio::test]
async fn rd_limited_to_the_domain_on_auth_host() {
    let s = stack();
    let _logs = s.logs();
    let is_callback = |u: &Url| u.path() == "/oauth2/callback";
    for (rd, expected) in [
        (
            format!("http://other.example.com:{}/x?y=1", s.port),
            format!("http://other.example.com:{}/x?y=1", s.port),
        ),
        ("https://example.com.evil.com/".to_owned(), "/".to_owned()),
        ("https://evil.com/".to_owned(), "/".to_owned()),
    ] {
        let b = Browser::new();
        let start = format!("{}/oauth2/start?rd={}", s.auth(), encode(&rd));
        let page = b
            .navigate(
                &start,
                Nav {
                    login: Some("alice"),
                    stop_before: Some(&is_callback),
                },
            )
            .await;
        let callback = page
            .next
            .clone()
            .unwrap_or_else(|| panic!("no callback reached:\n{page}"));
        let answer = b.get(&callback).await;
        assert_eq!(answer.status, 302, "{answer}");
        let location = answer.location().unwrap_or_default();
        let resolved = Url::parse(&callback)
            .unwrap()
            .join(location)
            .unwrap()
            .to_string();
        let expected_abs = Url::parse(&s.auth())
            .unwrap()
            .join(&expected)
            .unwrap()
            .to_string();
        assert_eq!(resolved, expected_abs, "rd {rd:?}:\n{answer}");
    }
}

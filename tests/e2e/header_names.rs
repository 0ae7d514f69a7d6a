//! `headers.preset = "oauth2-proxy"`, the preferred-username header and
//! `[headers.claims]` behind real nginx and Traefik, configured the way an
//! oauth2-proxy deployment already is: nginx copies
//! `$upstream_http_x_auth_request_*` with `auth_request_set`, Traefik lists
//! the names in `authResponseHeaders`. A real login at the test IdP, whose
//! users carry a `name` and a nested `org.id` claim; client copies of every
//! name never reach the app.
//!
//! One IdP, one portcullis (single-app mode) and one echo app serve both
//! proxies, shared by the tests of this module.

use std::sync::OnceLock;

use serde_json::json;

use crate::support::browser::Browser;
use crate::support::echo::{Echo, Seen};
use crate::support::free_port;
use crate::support::gateway::{direct_config, Gateway, Launch};
use crate::support::http::{raw_get, RawResponse};
use crate::support::idp::{password, Idp};
use crate::support::proc::{LogsOnFailure, Proc};
use crate::support::proxy::{self, Edits, Kind, Ports};

/// The app's location as oauth2-proxy's nginx documentation writes it, with
/// portcullis's 401 login hand-off (the `/oauth2/auth` and `/oauth2/`
/// locations are config/nginx/portcullis.conf's).
const NGINX_SERVER: &str = r#"
server {
    listen 80;
    server_name app.example.com;

    location = /oauth2/auth {
        internal;
        proxy_pass http://127.0.0.1:4180;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
        proxy_set_header X-Original-Method $request_method;
        proxy_set_header X-Forwarded-Method $request_method;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $http_host;
        proxy_set_header X-Forwarded-Uri $request_uri;
        proxy_set_header X-Forwarded-For $remote_addr;
    }

    location /oauth2/ {
        proxy_pass http://127.0.0.1:4180;
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $http_host;
        proxy_set_header X-Forwarded-For $remote_addr;
    }

    location / {
        auth_request /oauth2/auth;
        auth_request_set $user   $upstream_http_x_auth_request_user;
        auth_request_set $email  $upstream_http_x_auth_request_email;
        auth_request_set $groups $upstream_http_x_auth_request_groups;
        auth_request_set $preferred $upstream_http_x_auth_request_preferred_username;
        auth_request_set $token  $upstream_http_x_auth_request_access_token;
        auth_request_set $name   $upstream_http_x_auth_name;
        auth_request_set $tenant $upstream_http_x_auth_tenant;
        auth_request_set $login  $upstream_http_x_auth_login_url;
        proxy_set_header X-Auth-Request-User   $user;
        proxy_set_header X-Auth-Request-Email  $email;
        proxy_set_header X-Auth-Request-Groups $groups;
        proxy_set_header X-Auth-Request-Preferred-Username $preferred;
        proxy_set_header X-Auth-Request-Access-Token $token;
        proxy_set_header X-Auth-Name   $name;
        proxy_set_header X-Auth-Tenant $tenant;
        proxy_set_header Host $http_host;
        proxy_pass http://127.0.0.1:8080;
        error_page 401 = @login;
    }

    location @login {
        if ($login = "") {
            return 401;
        }
        return 302 $login;
    }
}
"#;

/// Traefik's `forwardAuth` with oauth2-proxy's names listed instead of the
/// example's `^X-Auth-` regex.
const TRAEFIK_LIST: &str = "        authResponseHeaders:
          - \"X-Auth-Request-User\"
          - \"X-Auth-Request-Email\"
          - \"X-Auth-Request-Groups\"
          - \"X-Auth-Request-Preferred-Username\"
          - \"X-Auth-Request-Access-Token\"
          - \"X-Auth-Name\"
          - \"X-Auth-Tenant\"";

struct Stack {
    idp: Idp,
    gateway: Gateway,
    nginx: Proc,
    traefik: Proc,
    _echo: Echo,
    nginx_port: u16,
    traefik_port: u16,
}

impl Stack {
    fn start() -> Stack {
        proxy::require(Kind::Nginx);
        proxy::require(Kind::Traefik);
        let echo = Echo::start();
        let (nginx_port, traefik_port, gateway_port) = (free_port(), free_port(), free_port());
        let users = json!({
            "alice": {"password": password("alice"), "email": "alice@example.com",
                      "groups": ["admins", "staff"], "name": "Alice Liddell",
                      "claims": {"org": {"id": "t-42"}}},
            "bob": {"password": password("bob"), "email": "bob@example.com",
                    "groups": ["staff"], "name": "Bob"},
        });
        let idp = Idp::start_with(
            &[nginx_port, traefik_port]
                .map(|p| format!("http://app.example.com:{p}/oauth2/callback")),
            json!({"users": users, "claims": {"org": ["org"]}}),
        );
        let config = direct_config(
            &idp.issuer,
            "",
            r#"[[rule]]
host = "app.example.com"
path = "/health"
policy = "public"

[[rule]]
host = "app.example.com"
path = "/"
policy = "authenticated"

[headers]
preset = "oauth2-proxy"
pass_access_token = true

[headers.claims]
"X-Auth-Name" = "name"
"X-Auth-Tenant" = "org.id"
"#,
        )
        .replace(
            r#"scopes = ["openid", "profile", "email", "groups"]"#,
            r#"scopes = ["openid", "profile", "email", "groups", "org"]"#,
        );
        let gateway = Gateway::launch(Launch {
            config: &config,
            port: Some(gateway_port),
            ..Launch::default()
        });
        let ports = |proxy| Ports {
            proxy,
            gateway: gateway_port,
            app: echo.port,
        };
        let nginx = proxy::start(
            Kind::Nginx,
            &ports(nginx_port),
            &Edits {
                nginx_server: Some(NGINX_SERVER),
                ..Edits::default()
            },
        );
        let traefik = proxy::start(
            Kind::Traefik,
            &ports(traefik_port),
            &Edits {
                traefik_dynamic: vec![(
                    "        authResponseHeadersRegex: \"^X-Auth-\"",
                    TRAEFIK_LIST,
                )],
                ..Edits::default()
            },
        );
        Stack {
            idp,
            gateway,
            nginx,
            traefik,
            _echo: echo,
            nginx_port,
            traefik_port,
        }
    }

    fn port(&self, kind: Kind) -> u16 {
        match kind {
            Kind::Nginx => self.nginx_port,
            _ => self.traefik_port,
        }
    }

    fn base(&self, kind: Kind) -> String {
        format!("http://app.example.com:{}", self.port(kind))
    }

    fn logs_on_failure(&self) -> LogsOnFailure<'_> {
        LogsOnFailure(vec![
            &self.idp.proc,
            &self.gateway.proc,
            &self.nginx,
            &self.traefik,
        ])
    }

    /// Logs `user` in through the proxy; the session cookie as a `Cookie` value.
    async fn login(&self, kind: Kind, user: &str) -> (Seen, String) {
        let b = Browser::new();
        let url = format!("{}/some/login-{user}", self.base(kind));
        let page = b.open_as(&url, user).await;
        assert_eq!(page.status, 200, "login as {user} via {kind:?}:\n{page}");
        let seen = page.expect_app();
        let value = b
            .cookie(&self.base(kind), "_portcullis")
            .unwrap_or_else(|| panic!("no session cookie after login:\n{page}"));
        (seen, format!("_portcullis={value}"))
    }

    fn raw(&self, kind: Kind, target: &str, headers: &[(&str, &str)]) -> RawResponse {
        let host = format!("app.example.com:{}", self.port(kind));
        raw_get(self.port(kind), &host, target, headers)
    }
}

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(Stack::start)
}

/// Client copies of oauth2-proxy's names and of the claim headers.
const SPOOFS: &[(&str, &str)] = &[
    ("X-Auth-Request-User", "mallory"),
    ("x-auth-request-user", "mallory2"),
    ("X-Auth-Request-Email", "mallory@evil.example"),
    ("X-AUTH-REQUEST-GROUPS", "evil-admins"),
    ("X-Auth-Request-Preferred-Username", "mallory"),
    ("X-Auth-Request-Access-Token", "evil-token"),
    ("X-Auth-Name", "mallory"),
    ("X-Auth-Tenant", "evil-tenant"),
    ("X_Auth_Request_User", "mallory"),
    ("X_Auth_Tenant", "evil-tenant"),
];
const MARKERS: &[&str] = &["mallory", "evil"];

fn app_seen(r: &RawResponse, what: &str) -> Seen {
    assert_eq!(
        r.status,
        200,
        "{what}: {} {:?}\n{}",
        r.status,
        r.headers,
        r.text()
    );
    Seen::parse(&r.text()).unwrap_or_else(|| panic!("{what}: not the app: {}", r.text()))
}

/// A header the app received, absent counted as empty.
fn value(seen: &Seen, name: &str) -> String {
    seen.one(name).unwrap_or_default()
}

async fn oauth2_proxy_names_reach_the_app(kind: Kind) {
    let s = stack();
    let _logs = s.logs_on_failure();
    let (seen, cookie) = s.login(kind, "alice").await;
    assert_eq!(
        value(&seen, "x-auth-request-user"),
        "alice",
        "{:#?}",
        seen.headers
    );
    assert_eq!(value(&seen, "x-auth-request-email"), "alice@example.com");
    assert_eq!(value(&seen, "x-auth-request-groups"), "admins,staff");
    assert_eq!(value(&seen, "x-auth-request-preferred-username"), "alice");
    assert!(
        value(&seen, "x-auth-request-access-token").len() > 10,
        "no access token: {:#?}",
        seen.headers
    );
    assert_eq!(value(&seen, "x-auth-name"), "Alice Liddell");
    assert_eq!(value(&seen, "x-auth-tenant"), "t-42", "nested claim org.id");
    for portcullis_name in ["x-auth-user", "x-auth-email", "x-auth-groups"] {
        assert_eq!(seen.one(portcullis_name), None, "{portcullis_name} sent");
    }

    // A user without the claim: the header is empty, never someone else's.
    let (bob, _) = s.login(kind, "bob").await;
    assert_eq!(value(&bob, "x-auth-request-user"), "bob");
    assert_eq!(value(&bob, "x-auth-name"), "Bob");
    assert_eq!(value(&bob, "x-auth-tenant"), "");

    // Spoofed copies: alice's values only on an allowed path, nothing on a
    // public one.
    let mut headers = vec![("Cookie", cookie.as_str())];
    headers.extend_from_slice(SPOOFS);
    let seen = app_seen(&s.raw(kind, "/some/spoof", &headers), "allowed, spoofed");
    seen.assert_no_spoofed(MARKERS);
    assert_eq!(value(&seen, "x-auth-request-user"), "alice");
    assert_eq!(value(&seen, "x-auth-request-groups"), "admins,staff");
    assert_eq!(value(&seen, "x-auth-tenant"), "t-42");
    let seen = app_seen(&s.raw(kind, "/health", SPOOFS), "public, spoofed");
    seen.assert_no_spoofed(MARKERS);
    for name in [
        "x-auth-request-user",
        "x-auth-request-groups",
        "x-auth-request-access-token",
        "x-auth-tenant",
    ] {
        assert_eq!(value(&seen, name), "", "{name} on a public path");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_proxy_names_through_nginx() {
    oauth2_proxy_names_reach_the_app(Kind::Nginx).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_proxy_names_through_traefik() {
    oauth2_proxy_names_reach_the_app(Kind::Traefik).await;
}

//! Test harness: a gateway started in-process on 127.0.0.1:0 in front of the
//! demo echo app, against the built-in development issuer, plus a browser-like
//! client (cookie jar, manual redirects) that can log in (tests/common/browser.rs).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use portcullis::config::Config;
use portcullis::dev::devidp::{self, DevClient, DevIdp, DevIdpConfig, DevUser};
use portcullis::server::{self, Running};
use tokio::net::TcpListener;

pub use crate::common::browser::Browser;

pub const SESSION_SECRET: &str = "an-integration-test-secret-that-is-long-enough";
pub const CLIENT_SECRET: &str = "client-secret-for-tests";

/// A running gateway with its IdP and app.
pub struct Harness {
    pub gw: Running,
    pub idp: Option<DevIdp>,
    pub base: String,
    _app_stop: tokio::sync::oneshot::Sender<()>,
}

/// Knobs for [`Harness::start_with`].
pub struct Opts {
    /// TOML appended after the generated `[server]`…`[session]` sections (rules, access).
    pub extra: String,
    /// Extra lines for `[server]`.
    pub server: String,
    /// Extra lines for `[session]`.
    pub session: String,
    /// Extra lines for `[oidc]`.
    pub oidc: String,
    /// Put groups/email in the ID token (false exercises the userinfo fallback).
    pub claims_in_id_token: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            extra: String::new(),
            server: String::new(),
            session: String::new(),
            oidc: String::new(),
            claims_in_id_token: true,
        }
    }
}

pub fn users() -> Vec<DevUser> {
    let u = |n: &str, g: &[&str]| DevUser {
        username: n.into(),
        password: "demo".into(),
        email: format!("{n}@example.com"),
        groups: g.iter().map(|s| s.to_string()).collect(),
    };
    vec![
        u("alice", &["admins", "staff"]),
        u("bob", &["staff"]),
        u("carol", &[]),
    ]
}

/// The standard rule set: `/health` public, `/admin` for admins, `/nobody` denied,
/// everything else on `app.test` any signed-in user, other hosts default deny.
pub fn standard_rules(app: SocketAddr) -> String {
    format!(
        r#"
[access]
default = "deny"
allowed_redirect_domains = [".example.com", "app.test"]

[[rule]]
name = "health"
host = "app.test"
path = "/health"
policy = "public"
upstream = "http://{app}"

[[rule]]
name = "admin"
host = "app.test"
path = "/admin"
groups = ["admins"]
upstream = "http://{app}"

[[rule]]
name = "nobody"
host = "app.test"
path = "/nobody"
policy = "deny"
upstream = "http://{app}"

[[rule]]
name = "app"
host = "app.test"
upstream = "http://{app}"

[[rule]]
name = "wild"
host = "*.example.com"
"#
    )
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(Opts::default()).await
    }

    pub async fn start_with(opts: Opts) -> Harness {
        let mut idp_cfg = DevIdpConfig {
            users: users(),
            clients: vec![DevClient {
                client_id: "portcullis".into(),
                client_secret: Some(CLIENT_SECRET.into()),
                redirect_uris: vec![],
            }],
            groups_in_id_token: opts.claims_in_id_token,
            email_in_id_token: opts.claims_in_id_token,
            id_token_ttl: std::time::Duration::from_secs(300),
        };
        let gw_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = gw_l.local_addr().unwrap().port();
        idp_cfg.clients[0].redirect_uris = ["app.test", "a.example.com", "127.0.0.1", "other.test"]
            .iter()
            .map(|h| format!("http://{h}:{port}/oauth2/callback"))
            .collect();
        let idp = devidp::start(TcpListener::bind("127.0.0.1:0").await.unwrap(), idp_cfg)
            .await
            .unwrap();
        let app_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = app_l.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(portcullis::dev::demo::upstream::serve(app_l, async move {
            let _ = stopped.await;
        }));
        let extra = if opts.extra.is_empty() {
            standard_rules(app)
        } else {
            opts.extra.replace("{app}", &app.to_string())
        };
        let toml = format!(
            r#"
[server]
listen = "127.0.0.1:0"
{server}

[oidc]
issuer = "{issuer}"
client_id = "portcullis"
{oidc}

[session]
cookie_secure = false
{session}
{extra}
"#,
            issuer = idp.issuer(),
            server = opts.server,
            oidc = opts.oidc,
            session = opts.session,
        );
        let gw = start_gateway_on(gw_l, &toml).await;
        let base = format!("http://{}", gw.addr);
        // Wait until discovery has run so tests are not racing it.
        for _ in 0..100 {
            let keys = gw.gateway.bearer.issuers()[0].jwks.status();
            if gw.gateway.oidc.is_ready()
                && matches!(keys, portcullis::auth::bearer::jwks::Status::Loaded(_))
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Harness {
            gw,
            idp: Some(idp),
            base,
            _app_stop: stop,
        }
    }

    /// A browser pointed at host `host` (resolved to the gateway).
    pub fn browser(&self) -> Browser {
        Browser::new(self.gw.addr)
    }

    /// A plain client with no cookie jar.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// A forward-auth request as Traefik would send it.
    pub fn check(&self, method: &str, host: &str, uri: &str) -> reqwest::RequestBuilder {
        self.client()
            .get(format!("{}/oauth2/auth", self.base))
            .header("X-Forwarded-Method", method)
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", host)
            .header("X-Forwarded-Uri", uri)
    }

    /// Logs `user` in and returns the raw session cookie value.
    pub async fn session_cookie(&self, user: &str) -> String {
        let b = self.browser();
        b.login(&format!("http://app.test:{}/", self.gw.addr.port()), user)
            .await;
        b.cookie("app.test", "_portcullis")
            .expect("session cookie set")
    }
}

pub async fn start_gateway_on(l: TcpListener, toml: &str) -> Running {
    let mut env: HashMap<String, String> =
        HashMap::from([("PORTCULLIS_OIDC_CLIENT_SECRET".into(), CLIENT_SECRET.into())]);
    // A config with its own session secret gets no second one (a secret
    // given twice is a start-up error).
    if !toml.contains("\nsecret = ") {
        env.insert("PORTCULLIS_SESSION_SECRET".into(), SESSION_SECRET.into());
    }
    let cfg = Config::from_toml(toml, Path::new("."), &env)
        .unwrap_or_else(|e| panic!("config: {e}\n{toml}"));
    server::start(cfg, Some(l), None).await.unwrap()
}

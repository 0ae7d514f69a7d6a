//! Rule conditions beyond host, path and method: `groups_all` through a
//! real IdP login (a user in one of two required groups gets 403 naming the
//! missing one; a user in both passes), and `networks` behind real Traefik,
//! Caddy and nginx configured from the examples.
//!
//! The network tests tell clients apart by their loopback source address:
//! every 127.0.0.0/8 address reaches the proxy on 127.0.0.1, and the proxy
//! reaches portcullis from 127.0.0.1, the only trusted proxy. So the LAN
//! (127.0.0.2/32 here) is a client address distinct from the proxy's, and
//! the tests prove that the address the gateway judges is the one the proxy
//! saw: 127.0.0.2 passes, 127.0.0.3 must sign in, and 127.0.0.3 sending
//! `X-Forwarded-For: 127.0.0.2` must still sign in (whether the proxy
//! replaces the client's header or appends to it, the real hop is the
//! rightmost untrusted entry). A client on 127.0.0.1 itself would be
//! indistinguishable from the proxy, a trusted hop; the examples' proxies
//! replace its `X-Forwarded-For` with 127.0.0.1, so its spoof fails too,
//! which the last assertion checks.

use std::sync::OnceLock;

use serde_json::json;

use crate::support::browser::Browser;
use crate::support::echo::Echo;
use crate::support::free_port;
use crate::support::gateway::{direct_config, Gateway, Launch};
use crate::support::http::RawResponse;
use crate::support::idp::{password, Idp};
use crate::support::proc::{LogsOnFailure, Proc};
use crate::support::proxy::{self, Edits, Kind, Ports};

/// `/pager` needs both `ops` and `oncall`; `/` anyone signed in.
const RULES: &str = r#"[[rule]]
host = "app.example.com"
path = "/pager"
groups_all = ["ops", "oncall"]

[[rule]]
host = "app.example.com"
path = "/"
policy = "authenticated"
"#;

struct Stack {
    idp: Idp,
    gw: Gateway,
}

fn stack() -> &'static Stack {
    static S: OnceLock<Stack> = OnceLock::new();
    S.get_or_init(|| {
        let port = free_port();
        let idp = Idp::start_with(
            &[format!("http://app.example.com:{port}/oauth2/callback")],
            json!({"users": {
                "olivia": {"password": password("olivia"), "email": "olivia@example.com", "groups": ["ops", "oncall", "staff"]},
                "oscar": {"password": password("oscar"), "email": "oscar@example.com", "groups": ["ops", "staff"]},
            }}),
        );
        let config = direct_config(
            &idp.issuer,
            r#"allowed_redirect_domains = ["app.example.com"]"#,
            RULES,
        );
        let gw = Gateway::launch(Launch {
            name: "portcullis-conditions",
            config: &config,
            port: Some(port),
            ..Launch::default()
        });
        Stack { idp, gw }
    })
}

impl Stack {
    fn logs(&self) -> LogsOnFailure<'_> {
        LogsOnFailure(vec![&self.idp.proc, &self.gw.proc])
    }
}

/// Logs `user` in; the session cookie as a `Cookie` header value.
async fn login(gw: &Gateway, user: &str) -> String {
    gw.login(&Browser::new(), user).await
}

/// The forward-auth check for `path` on app.example.com.
fn check(gw: &Gateway, cookie: &str, path: &str, accept: &str) -> RawResponse {
    gw.check_app(path, &[("Accept", accept), ("Cookie", cookie)])
}

#[tokio::test]
async fn groups_all_needs_every_group() {
    let s = stack();
    let _logs = s.logs();
    let both = login(&s.gw, "olivia").await;
    let one = login(&s.gw, "oscar").await;

    let r = check(&s.gw, &both, "/pager/today", "application/json");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-auth-user"), Some("olivia"));

    let r = check(&s.gw, &one, "/pager/today", "application/json");
    assert_eq!(r.status, 403, "{}", r.text());
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON 403");
    assert_eq!(body["missing_groups"], json!(["oncall"]), "{body}");
    let page = check(&s.gw, &one, "/pager", "text/html").text();
    assert!(page.contains("you are not in oncall"), "{page}");

    // Elsewhere the same user passes.
    let r = check(&s.gw, &one, "/", "application/json");
    assert_eq!(r.status, 200, "{}", r.text());
}

/// `/wiki` public from the LAN (127.0.0.2), for signed-in users elsewhere.
const NETWORK_RULES: &str = r#"[access.networks]
lan = ["127.0.0.2/32"]

[[rule]]
host = "app.example.com"
path = "/health"
policy = "public"

[[rule]]
host = "app.example.com"
path = "/wiki"
networks = ["lan"]
policy = "public"

[[rule]]
host = "app.example.com"
path = "/wiki"
policy = "authenticated"
"#;

struct NetStack {
    idp: Idp,
    gw: Gateway,
    proxy: Proc,
    _echo: Echo,
    port: u16,
}

fn start_net(kind: Kind) -> NetStack {
    proxy::require(kind);
    let echo = Echo::start();
    let port = free_port();
    let idp = Idp::start(&[format!("http://app.example.com:{port}/oauth2/callback")]);
    let config = direct_config(
        &idp.issuer,
        r#"allowed_redirect_domains = ["app.example.com"]"#,
        NETWORK_RULES,
    );
    let gw = Gateway::launch(Launch {
        name: "portcullis-networks",
        config: &config,
        ..Launch::default()
    });
    let ports = Ports {
        proxy: port,
        gateway: gw.port,
        app: echo.port,
    };
    let proxy = proxy::start(kind, &ports, &Edits::default());
    NetStack {
        idp,
        gw,
        proxy,
        _echo: echo,
        port,
    }
}

/// The status of `GET /wiki` through the proxy, sent from `source`.
async fn wiki_from(port: u16, source: [u8; 4], headers: &[(&str, &str)]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind((std::net::Ipv4Addr::from(source), 0).into())
        .unwrap();
    let mut s = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let mut req = format!(
        "GET /wiki/page HTTP/1.1\r\nHost: app.example.com:{port}\r\nAccept: application/json\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(15), s.read_to_end(&mut buf))
        .await
        .expect("answer in time")
        .unwrap();
    let head = String::from_utf8_lossy(&buf);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head}"))
}

async fn lan_public_elsewhere_login(kind: Kind) {
    let s = start_net(kind);
    let _logs = LogsOnFailure(vec![&s.idp.proc, &s.gw.proc, &s.proxy]);
    let lan = [127, 0, 0, 2];
    let other = [127, 0, 0, 3];
    let spoof = [("X-Forwarded-For", "127.0.0.2")];
    assert_eq!(
        wiki_from(s.port, lan, &[]).await,
        200,
        "{kind:?}: LAN client"
    );
    let st = wiki_from(s.port, other, &[]).await;
    assert!(
        st == 401 || st == 302,
        "{kind:?}: client elsewhere got {st}"
    );
    let st = wiki_from(s.port, other, &spoof).await;
    assert!(
        st == 401 || st == 302,
        "{kind:?}: spoofed X-Forwarded-For got {st}"
    );
    let st = wiki_from(
        s.port,
        other,
        &[("X-Forwarded-For", "127.0.0.2, 127.0.0.1")],
    )
    .await;
    assert!(
        st == 401 || st == 302,
        "{kind:?}: spoofed trusted hop got {st}"
    );
    let st = wiki_from(s.port, [127, 0, 0, 1], &spoof).await;
    assert!(
        st == 401 || st == 302,
        "{kind:?}: spoof from the proxy's own address got {st}"
    );
}

#[tokio::test]
async fn networks_behind_traefik() {
    lan_public_elsewhere_login(Kind::Traefik).await;
}

#[tokio::test]
async fn networks_behind_nginx() {
    lan_public_elsewhere_login(Kind::Nginx).await;
}

#[tokio::test]
async fn networks_behind_caddy() {
    lan_public_elsewhere_login(Kind::Caddy).await;
}

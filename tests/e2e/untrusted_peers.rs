//! A client talking to the gateway directly, from an address outside
//! `server.trusted_proxies` (here 127.0.0.1, with only 10.9.9.9 trusted),
//! cannot pick the host, path, scheme or method the forward-auth check
//! judges: `X-Forwarded-*` and `X-Original-*` from it are ignored, the check
//! judges the request it received, and the gateway says so once in its log.

use std::sync::OnceLock;

use crate::support::browser::Browser;
use crate::support::free_port;
use crate::support::gateway::{app_config, Gateway, Launch};
use crate::support::http::{raw_get, RawResponse};
use crate::support::idp::Idp;
use crate::support::proc::LogsOnFailure;

struct Stack {
    idp: Idp,
    gateway: Gateway,
}

fn stack() -> &'static Stack {
    static S: OnceLock<Stack> = OnceLock::new();
    S.get_or_init(|| {
        let port = free_port();
        let idp = Idp::start(&[format!("http://app.example.com:{port}/oauth2/callback")]);
        let config = app_config(&idp.issuer);
        let untrusted = config.replace(
            "trusted_proxies = [\"127.0.0.1/32\"]",
            "trusted_proxies = [\"10.9.9.9\"]",
        );
        assert_ne!(untrusted, config);
        let gateway = Gateway::launch(Launch {
            config: &untrusted,
            port: Some(port),
            ..Launch::default()
        });
        Stack { idp, gateway }
    })
}

/// What a client could send to be judged as another request: each family
/// alone, both, single headers, and targets that would be answered
/// differently if believed (`/health` is public, `/admin` is for admins,
/// `other.example.org` has no rule).
fn spoofs() -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
    let xf = |host, uri| {
        vec![
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", host),
            ("X-Forwarded-Uri", uri),
        ]
    };
    let xo = |url| vec![("X-Original-URL", url), ("X-Original-Method", "GET")];
    vec![
        ("X-Forwarded-* to /health", xf("app.example.com", "/health")),
        (
            "X-Original-* to /health",
            xo("https://app.example.com/health"),
        ),
        (
            "both to /health",
            [
                xf("app.example.com", "/health"),
                xo("https://app.example.com/health"),
            ]
            .concat(),
        ),
        ("X-Forwarded-* to /admin", xf("app.example.com", "/admin")),
        (
            "X-Original-* to /admin",
            xo("https://app.example.com/admin"),
        ),
        (
            "X-Forwarded-* to another host",
            xf("other.example.org", "/"),
        ),
        (
            "X-Original-* to another host",
            xo("https://other.example.org/"),
        ),
        (
            "X-Forwarded-Uri alone",
            vec![("X-Forwarded-Uri", "/health")],
        ),
        (
            "X-Forwarded-Method alone",
            vec![("X-Forwarded-Method", "DELETE")],
        ),
        (
            "X-Original-URL alone",
            vec![("X-Original-URL", "https://app.example.com/health")],
        ),
    ]
}

fn auth(port: u16, host: &str, headers: &[(&str, &str)], extra: &[(&str, &str)]) -> RawResponse {
    let all: Vec<(&str, &str)> = headers.iter().chain(extra).copied().collect();
    raw_get(port, host, "/oauth2/auth", &all)
}

#[tokio::test]
async fn a_client_outside_trusted_proxies_cannot_pick_what_is_judged() {
    let s = stack();
    let _logs = LogsOnFailure(vec![&s.idp.proc, &s.gateway.proc]);
    let port = s.gateway.port;
    let host = format!("app.example.com:{port}");
    // Bob is staff, not admins: /admin would be 403 for him.
    let b = Browser::new();
    let base = format!("http://{host}");
    b.open_as(&format!("{base}/oauth2/start?rd=%2F"), "bob")
        .await;
    let bob = format!(
        "_portcullis={}",
        b.cookie(&base, "_portcullis").expect("bob is signed in")
    );
    let login = format!(
        "http://{host}/oauth2/start?rd=http%3A%2F%2Fapp.example.com%3A{port}%2Foauth2%2Fauth"
    );
    for (what, headers) in spoofs() {
        // Judged as GET http://app.example.com:PORT/oauth2/auth: the
        // catch-all rule for signed-in users.
        let r = auth(port, &host, &headers, &[("Accept", "application/json")]);
        assert_eq!(r.status, 401, "{what}: {r:?}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}");
        assert_eq!(r.header("x-auth-user"), Some(""), "{what}");
        let r = auth(port, &host, &headers, &[("Accept", "text/html")]);
        assert_eq!(r.status, 302, "{what}: {r:?}");
        assert_eq!(r.header("location"), Some(login.as_str()), "{what}");
        let r = auth(port, &host, &headers, &[("Cookie", &bob)]);
        assert_eq!(r.status, 200, "{what}: {r:?}");
        assert_eq!(r.header("x-auth-user"), Some("bob"), "{what}");
        // A host without a rule stays that host (default deny), whatever
        // public page the headers name.
        let r = auth(port, "unknown.example.org", &headers, &[]);
        assert_eq!(r.status, 403, "{what}: {r:?}");
        assert_eq!(r.header("x-auth-user"), Some(""), "{what}");
    }
    // Said once, not per request.
    let log = s.gateway.proc.stderr();
    assert_eq!(
        log.matches("from a peer outside server.trusted_proxies; the headers are ignored")
            .count(),
        1,
        "{log}"
    );
}

//! Rule conditions beyond host, path and method, through a real IdP login:
//! `groups_all` (a user in one of two required groups gets 403 naming the
//! missing one; a user in both passes).

use std::sync::OnceLock;

use serde_json::json;

use crate::support::browser::Browser;
use crate::support::free_port;
use crate::support::gateway::{direct_config, Gateway, Launch};
use crate::support::http::{raw_get, RawResponse};
use crate::support::idp::{password, Idp};
use crate::support::proc::LogsOnFailure;

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
    let b = Browser::new();
    let base = format!("http://app.example.com:{}", gw.port);
    let page = b
        .open_as(&format!("{base}/oauth2/start?rd=%2F"), user)
        .await;
    let value = b
        .cookie(&base, "_portcullis")
        .unwrap_or_else(|| panic!("no session cookie after login:\n{page}"));
    format!("_portcullis={value}")
}

/// The forward-auth check for `path` on app.example.com.
fn check(gw: &Gateway, cookie: &str, path: &str, accept: &str) -> RawResponse {
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
            ("X-Forwarded-Uri", path),
        ],
    )
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

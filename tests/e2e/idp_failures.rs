//! When the IdP is down or says no: a clear HTML error page with a fitting
//! status (never a bare 500, never a session) and one log line naming the
//! cause.

use std::sync::OnceLock;

use url::Url;

use crate::support::browser::{Browser, Nav, Page};
use crate::support::free_port;
use crate::support::gateway::{direct_config, Gateway, Launch, APP_RULES};
use crate::support::http::raw_get;
use crate::support::idp::Idp;
use crate::support::proc::LogsOnFailure;

const ACCESS: &str = r#"allowed_redirect_domains = ["app.example.com"]"#;

struct Stack {
    idp: Idp,
    gateway: Gateway,
}

/// The module's shared IdP and gateway (for the tests that keep the IdP up).
fn stack() -> &'static Stack {
    static S: OnceLock<Stack> = OnceLock::new();
    S.get_or_init(|| {
        let port = free_port();
        let idp = Idp::start(&[format!("http://app.example.com:{port}/oauth2/callback")]);
        let config = direct_config(&idp.issuer, ACCESS, APP_RULES);
        let gateway = Gateway::launch(Launch {
            config: &config,
            port: Some(port),
            ..Launch::default()
        });
        Stack { idp, gateway }
    })
}

fn base(gw: &Gateway) -> String {
    format!("http://app.example.com:{}", gw.port)
}

fn is_callback(u: &Url) -> bool {
    u.path() == "/oauth2/callback"
}

/// Lines of the gateway's log that record a failed login with `reason`.
fn login_failures(gw: &Gateway, reason: &str) -> Vec<String> {
    gw.log()
        .lines()
        .filter(|l| l.contains("login failed") && l.contains(reason))
        .map(str::to_owned)
        .collect()
}

fn assert_error_page(page: &Page, status: u16, needle: &str) {
    assert_eq!(page.status, status, "{page}");
    let ct = page.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("text/html"),
        "error page is {ct:?}, not HTML:\n{page}"
    );
    assert!(
        page.body.to_lowercase().contains(&needle.to_lowercase()),
        "error page does not mention {needle:?}:\n{page}"
    );
    assert!(
        !page
            .header_all("set-cookie")
            .iter()
            .any(|c| c.starts_with("_portcullis=") && !c.starts_with("_portcullis=;")),
        "an error page set a session cookie:\n{page}"
    );
}

#[tokio::test]
async fn start_with_unreachable_idp_shows_503_page() {
    // The IdP is gone before the gateway ever reached it.
    let port = free_port();
    let idp = Idp::start(&[format!("http://app.example.com:{port}/oauth2/callback")]);
    idp.kill();
    let config = direct_config(&idp.issuer, ACCESS, APP_RULES);
    let gw = Gateway::launch(Launch {
        config: &config,
        port: Some(port),
        wait_ready: false,
        ..Launch::default()
    });
    let _logs = LogsOnFailure(vec![&gw.proc]);

    let page = Browser::new()
        .get(&format!("{}/oauth2/start?rd=%2Fsome%2Fpage", base(&gw)))
        .await;
    assert_error_page(&page, 503, "identity provider");
    let lines = login_failures(&gw, "idp_unreachable");
    assert_eq!(
        lines.len(),
        1,
        "expected one log line naming the cause, got {lines:#?}\n{}",
        gw.log()
    );

    // Not ready, and a forward-auth check still never grants anything.
    assert_eq!(raw_get(gw.port, "127.0.0.1", "/readyz", &[]).status, 503);
    let page = Browser::new()
        .get(&format!("{}/oauth2/userinfo", base(&gw)))
        .await;
    assert_eq!(page.status, 401, "{page}");
}

#[tokio::test]
async fn start_after_idp_went_down_shows_503_page() {
    // The gateway loaded the IdP's metadata and served logins; then the IdP dies.
    let port = free_port();
    let idp = Idp::start(&[format!("http://app.example.com:{port}/oauth2/callback")]);
    let config = direct_config(&idp.issuer, ACCESS, APP_RULES);
    let gw = Gateway::launch(Launch {
        config: &config,
        port: Some(port),
        ..Launch::default()
    });
    let _logs = LogsOnFailure(vec![&idp.proc, &gw.proc]);
    let page = Browser::new()
        .open_as(
            &format!("{}/oauth2/start?rd=%2Fsome%2Fpage", base(&gw)),
            "alice",
        )
        .await;
    assert!(
        page.hops
            .iter()
            .any(|h| h.starts_with("302 GET") && h.contains("/oauth2/callback")),
        "a login while the IdP is up:\n{page}"
    );
    idp.kill();

    // A new login must not send the browser to a dead IdP.
    let page = Browser::new()
        .get(&format!("{}/oauth2/start?rd=%2Fsome%2Fpage", base(&gw)))
        .await;
    assert_error_page(&page, 503, "identity provider");
    let lines = login_failures(&gw, "idp_unreachable");
    assert_eq!(
        lines.len(),
        1,
        "expected one log line naming the cause, got {lines:#?}\n{}",
        gw.log()
    );
}

#[tokio::test]
async fn callback_after_idp_went_down_shows_503_page() {
    let port = free_port();
    let idp = Idp::start(&[format!("http://app.example.com:{port}/oauth2/callback")]);
    let config = direct_config(&idp.issuer, ACCESS, APP_RULES);
    let gw = Gateway::launch(Launch {
        config: &config,
        port: Some(port),
        ..Launch::default()
    });
    let _logs = LogsOnFailure(vec![&idp.proc, &gw.proc]);

    let b = Browser::new();
    let page = b
        .navigate(
            &format!("{}/oauth2/start?rd=%2Fsome%2Fpage", base(&gw)),
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
    // The IdP dies between the login and the code exchange.
    idp.kill();
    let page = b.get(&callback).await;
    assert_error_page(&page, 503, "identity provider");
    let lines = login_failures(&gw, "idp_unreachable");
    assert_eq!(
        lines.len(),
        1,
        "expected one log line naming the cause, got {lines:#?}\n{}",
        gw.log()
    );
}

#[tokio::test]
async fn callback_with_access_denied_shows_error_page() {
    let s = stack();
    let _logs = LogsOnFailure(vec![&s.idp.proc, &s.gateway.proc]);
    let b = Browser::new();
    let start = b
        .get(&format!(
            "{}/oauth2/start?rd=%2Fsome%2Fpage",
            base(&s.gateway)
        ))
        .await;
    assert_eq!(start.status, 302, "{start}");
    let authorize = Url::parse(start.location().unwrap()).unwrap();
    let state = authorize
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state in the authorize URL");
    // What the IdP sends back when the user declines.
    let before = login_failures(&s.gateway, "idp_error").len();
    let callback = format!(
        "{}/oauth2/callback?error=access_denied&error_description=End-User%20aborted%20interaction&state={state}&iss={}",
        base(&s.gateway),
        crate::support::encode(&s.idp.issuer)
    );
    let page = b.get(&callback).await;
    assert_error_page(&page, 403, "access_denied");
    assert_eq!(
        login_failures(&s.gateway, "idp_error").len(),
        before + 1,
        "{}",
        s.gateway.log()
    );
    // No session came of it.
    assert_eq!(
        b.get(&format!("{}/oauth2/userinfo", base(&s.gateway)))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn replayed_callback_gives_invalid_grant_page() {
    let s = stack();
    let _logs = LogsOnFailure(vec![&s.idp.proc, &s.gateway.proc]);
    let b = Browser::new();
    let page = b
        .navigate(
            &format!("{}/oauth2/start?rd=%2Fsome%2Fpage", base(&s.gateway)),
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
    // Keep the flow cookie the callback is about to clear (a copied request, a double submit).
    let flow_cookies: Vec<String> = b
        .cookies(&callback)
        .into_iter()
        .filter(|(k, _)| k.starts_with("_portcullis_flow_"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(flow_cookies.len(), 1, "{flow_cookies:?}");

    let first = b.get(&callback).await;
    assert_eq!(
        first.status, 302,
        "the first callback should log in:\n{first}"
    );

    // The same callback URL again, with the flow cookie: the code is spent.
    let before = login_failures(&s.gateway, "invalid_grant").len();
    let replay = Browser::new();
    let page = replay
        .get_with(&callback, &[("Cookie", flow_cookies[0].as_str())])
        .await;
    assert_error_page(&page, 400, "sign-in code");
    assert_eq!(
        login_failures(&s.gateway, "invalid_grant").len(),
        before + 1,
        "{}",
        s.gateway.log()
    );

    // The same URL in the original browser (flow cookie already cleared):
    // an error page too, never a second session or a 500.
    let page = b.get(&callback).await;
    assert!(matches!(page.status, 400 | 403), "{page}");
    assert!(page.body.to_lowercase().contains("sign-in"), "{page}");
}

//! Login state lives in the browser, not in a process: a login started on
//! one gateway finishes on another with the same config (memory store, no
//! shared state), several tabs can log in at once in any order, and
//! abandoned logins cannot pile up flow cookies.
//!
//! The two gateways run from the same config text and secrets; only
//! `listen` differs, as two hosts would differ in their address.

use std::sync::OnceLock;

use url::Url;

use crate::support::browser::{Browser, Nav, Page};
use crate::support::free_port;
use crate::support::gateway::{direct_config, Gateway, Launch, APP_RULES};
use crate::support::idp::Idp;
use crate::support::proc::LogsOnFailure;

struct Stack {
    idp: Idp,
    a: Gateway,
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
        let config = direct_config(&idp.issuer, r#"allowed_redirect_domains = ["app.example.com"]"#, APP_RULES);
        let a = Gateway::launch(Launch { name: "portcullis-a", config: &config, port: Some(pa), ..Launch::default() });
        let b = Gateway::launch(Launch { name: "portcullis-b", config: &config, port: Some(pb), ..Launch::default() });
        Stack { idp, a, b }
    })
}

impl Stack {
    fn logs(&self) -> LogsOnFailure<'_> {
        LogsOnFailure(vec![&self.idp.proc, &self.a.proc, &self.b.proc])
    }
}

fn base(gw: &Gateway) -> String {
    format!("http://app.example.com:{}", gw.port)
}

fn is_callback(u: &Url) -> bool {
    u.path() == "/oauth2/callback"
}

/// Follows `url` through the IdP (logging in as alice if asked) and returns
/// the callback URL the IdP sends the browser to, without requesting it.
async fn callback_url(b: &Browser, url: &str) -> String {
    let page = b.navigate(url, Nav { login: Some("alice"), stop_before: Some(&is_callback) }).await;
    page.next.clone().unwrap_or_else(|| panic!("no callback reached:\n{page}"))
}

fn assert_login_completed(page: &Page, rd: &str) {
    assert_eq!(page.status, 302, "callback did not complete the login:\n{page}");
    assert_eq!(page.location(), Some(rd), "callback sent the browser elsewhere:\n{page}");
    assert!(
        page.header_all("set-cookie").iter().any(|c| c.starts_with("_portcullis=") && !c.starts_with("_portcullis=;")),
        "no session cookie from the callback:\n{page}"
    );
}

#[tokio::test]
async fn login_started_on_one_gateway_finishes_on_another() {
    let s = stack();
    let _logs = s.logs();
    let b = Browser::new();
    let on_a = callback_url(&b, &format!("{}/oauth2/start?rd=%2Fsome%2Fcross", base(&s.a))).await;
    // A load balancer sends the callback to B instead.
    let mut on_b = Url::parse(&on_a).unwrap();
    on_b.set_port(Some(s.b.port)).unwrap();
    let page = b.get(on_b.as_str()).await;
    assert_login_completed(&page, "/some/cross");

    let info = b.get(&format!("{}/oauth2/userinfo", base(&s.b))).await;
    assert_eq!(info.status, 200, "{info}");
    let v: serde_json::Value = serde_json::from_str(&info.body).unwrap();
    assert_eq!(v["user"], "alice", "{info}");
    assert_eq!(v["email"], "alice@example.com", "{info}");
    assert_eq!(v["groups"], serde_json::json!(["admins", "staff"]), "{info}");
}

#[tokio::test]
async fn three_tabs_finish_in_reverse_order() {
    let s = stack();
    let _logs = s.logs();
    let b = Browser::new();
    // Start three logins before finishing any.
    let mut authorize = Vec::new();
    for tab in 1..=3 {
        let page = b.get(&format!("{}/oauth2/start?rd=%2Fsome%2Ftab{tab}", base(&s.a))).await;
        assert_eq!(page.status, 302, "start in tab {tab}:\n{page}");
        authorize.push(page.location().unwrap().to_owned());
    }
    // Through the IdP (the first one logs in; the IdP session covers the others).
    let mut callbacks = Vec::new();
    for url in &authorize {
        callbacks.push(callback_url(&b, url).await);
    }
    // Finish them last to first.
    for tab in (1..=3).rev() {
        let page = b.get(&callbacks[tab - 1]).await;
        assert_login_completed(&page, &format!("/some/tab{tab}"));
    }
    let info = b.get(&format!("{}/oauth2/userinfo", base(&s.a))).await;
    assert_eq!(info.status, 200, "{info}");
}

#[tokio::test]
async fn abandoned_logins_leave_at_most_four_flow_cookies() {
    let s = stack();
    let _logs = s.logs();
    let b = Browser::new();
    let cb = format!("{}/oauth2/callback", base(&s.a));
    let mut last = String::new();
    for i in 0..10 {
        let page = b.get(&format!("{}/oauth2/start?rd=%2Fsome%2Fn{i}", base(&s.a))).await;
        assert_eq!(page.status, 302, "start {i}:\n{page}");
        last = page.location().unwrap().to_owned();
        let flows: Vec<String> = b.cookies(&cb).into_iter().map(|(k, _)| k).filter(|k| k.starts_with("_portcullis_flow_")).collect();
        assert!(flows.len() <= 4, "after {} starts the browser holds {} flow cookies: {flows:?}", i + 1, flows.len());
    }
    // The newest login still completes.
    let callback = callback_url(&b, &last).await;
    let page = b.get(&callback).await;
    assert_login_completed(&page, "/some/n9");
}

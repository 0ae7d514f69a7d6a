//! Login state lives in the browser, not in a process: a login started on
//! one gateway finishes on another started from the same config file
//! (memory store, no shared state), several tabs can log in at once in any
//! order, and abandoned logins cannot pile up flow cookies.
//!
//! Both gateways run from one file (`listen = "127.0.0.1:0"`) behind a TCP
//! load balancer on `app.example.com:PORT`, which the test points at one or
//! the other for each request; each test has its own balancer.

use std::sync::OnceLock;

use url::Url;

use crate::support::balancer::Balancer;
use crate::support::browser::{Browser, Nav, Page};
use crate::support::gateway::{app_config, Gateway, Launch, LISTEN_PLACEHOLDER};
use crate::support::idp::Idp;
use crate::support::proc::{scratch_dir, LogsOnFailure};

struct Stack {
    idp: Idp,
    a: Gateway,
    b: Gateway,
    /// One balancer per test: [cross, tabs, flows].
    lbs: [Balancer; 3],
}

fn stack() -> &'static Stack {
    static S: OnceLock<Stack> = OnceLock::new();
    S.get_or_init(|| {
        let lbs = [Balancer::start(), Balancer::start(), Balancer::start()];
        let uris: Vec<String> = lbs
            .iter()
            .map(|lb| format!("http://app.example.com:{}/oauth2/callback", lb.port))
            .collect();
        let idp = Idp::start(&uris);
        let config = app_config(&idp.issuer).replace(LISTEN_PLACEHOLDER, "127.0.0.1:0");
        let file = scratch_dir("shared-config").join("portcullis.toml");
        std::fs::write(&file, config).unwrap();
        let a = Gateway::launch(Launch {
            name: "portcullis-a",
            config_file: Some(&file),
            ..Launch::default()
        });
        let b = Gateway::launch(Launch {
            name: "portcullis-b",
            config_file: Some(&file),
            ..Launch::default()
        });
        for lb in &lbs {
            lb.route_to(a.port);
        }
        Stack { idp, a, b, lbs }
    })
}

impl Stack {
    fn logs(&self) -> LogsOnFailure<'_> {
        LogsOnFailure(vec![&self.idp.proc, &self.a.proc, &self.b.proc])
    }
}

fn base(lb: &Balancer) -> String {
    format!("http://app.example.com:{}", lb.port)
}

fn logins(gw: &Gateway) -> usize {
    gw.log()
        .lines()
        .filter(|l| l.contains("login succeeded"))
        .count()
}

fn is_callback(u: &Url) -> bool {
    u.path() == "/oauth2/callback"
}

/// Follows `url` through the IdP (logging in as alice if asked) and returns
/// the callback URL the IdP sends the browser to, without requesting it.
async fn callback_url(b: &Browser, url: &str) -> String {
    let page = b
        .navigate(
            url,
            Nav {
                login: Some("alice"),
                stop_before: Some(&is_callback),
            },
        )
        .await;
    page.next
        .clone()
        .unwrap_or_else(|| panic!("no callback reached:\n{page}"))
}

fn assert_login_completed(page: &Page, rd: &str) {
    assert_eq!(
        page.status, 302,
        "callback did not complete the login:\n{page}"
    );
    assert_eq!(
        page.location(),
        Some(rd),
        "callback sent the browser elsewhere:\n{page}"
    );
    assert!(
        page.header_all("set-cookie")
            .iter()
            .any(|c| c.starts_with("_portcullis=") && !c.starts_with("_portcullis=;")),
        "no session cookie from the callback:\n{page}"
    );
}

#[tokio::test]
async fn login_started_on_one_gateway_finishes_on_another() {
    let s = stack();
    let _logs = s.logs();
    let lb = &s.lbs[0];
    let b = Browser::new();
    // /oauth2/start and the IdP on A...
    lb.route_to(s.a.port);
    let callback = callback_url(&b, &format!("{}/oauth2/start?rd=%2Fsome%2Fcross", base(lb))).await;
    // ...the callback on B.
    lb.route_to(s.b.port);
    let b_before = logins(&s.b);
    let page = b.get(&callback).await;
    assert_login_completed(&page, "/some/cross");
    // Only B's count is compared: the other tests of this file share the
    // two gateways and may complete logins on A meanwhile.
    assert!(
        logins(&s.b) > b_before,
        "the callback was not completed by B"
    );

    let info = b.get(&format!("{}/oauth2/userinfo", base(lb))).await;
    assert_eq!(info.status, 200, "{info}");
    let v: serde_json::Value = serde_json::from_str(&info.body).unwrap();
    assert_eq!(v["user"], "alice", "{info}");
    assert_eq!(v["email"], "alice@example.com", "{info}");
    assert_eq!(
        v["groups"],
        serde_json::json!(["admins", "staff"]),
        "{info}"
    );
}

#[tokio::test]
async fn three_tabs_finish_in_reverse_order() {
    let s = stack();
    let _logs = s.logs();
    let lb = &s.lbs[1];
    let b = Browser::new();
    // Start three logins before finishing any.
    let mut authorize = Vec::new();
    for tab in 1..=3 {
        let page = b
            .get(&format!("{}/oauth2/start?rd=%2Fsome%2Ftab{tab}", base(lb)))
            .await;
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
    let info = b.get(&format!("{}/oauth2/userinfo", base(lb))).await;
    assert_eq!(info.status, 200, "{info}");
}

#[tokio::test]
async fn abandoned_logins_leave_at_most_four_flow_cookies() {
    let s = stack();
    let _logs = s.logs();
    let lb = &s.lbs[2];
    let b = Browser::new();
    let cb = format!("{}/oauth2/callback", base(lb));
    let mut last = String::new();
    for i in 0..10 {
        let page = b
            .get(&format!("{}/oauth2/start?rd=%2Fsome%2Fn{i}", base(lb)))
            .await;
        assert_eq!(page.status, 302, "start {i}:\n{page}");
        last = page.location().unwrap().to_owned();
        let flows: Vec<String> = b
            .cookies(&cb)
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("_portcullis_flow_"))
            .collect();
        assert!(
            flows.len() <= 4,
            "after {} starts the browser holds {} flow cookies: {flows:?}",
            i + 1,
            flows.len()
        );
    }
    // The newest login still completes.
    let callback = callback_url(&b, &last).await;
    let page = b.get(&callback).await;
    assert_login_completed(&page, "/some/n9");
}

//! Hostile `rd` values at `/oauth2/start`, carried through a real IdP login:
//! after the callback the browser must land on `/` of the gateway's own host,
//! never on another site. Allowed targets (relative, same host) are followed,
//! so the tests can tell "refused" from "ignored".

use std::sync::OnceLock;

use url::Url;

use crate::support::browser::{Browser, Nav};
use crate::support::encode;
use crate::support::free_port;
use crate::support::gateway::{direct_config, Gateway, Launch, APP_RULES};
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
        let config = direct_config(
            &idp.issuer,
            r#"allowed_redirect_domains = ["app.example.com"]"#,
            APP_RULES,
        );
        let gateway = Gateway::launch(Launch {
            config: &config,
            port: Some(port),
            ..Launch::default()
        });
        Stack { idp, gateway }
    })
}

impl Stack {
    fn base(&self) -> String {
        format!("http://app.example.com:{}", self.gateway.port)
    }
}

/// Logs in through `/oauth2/start?<query>` and returns the callback's
/// `Location` (resolved against the callback URL) and the page the browser
/// finally lands on.
async fn login_with_start_query(query: &str) -> (String, crate::support::browser::Page) {
    let s = stack();
    let _logs = LogsOnFailure(vec![&s.idp.proc, &s.gateway.proc]);
    let b = Browser::new();
    let start = format!("{}/oauth2/start?{query}", s.base());
    let is_callback = |u: &Url| u.path() == "/oauth2/callback";
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
        .unwrap_or_else(|| panic!("the login never reached the callback:\n{page}"));
    let answer = b.get(&callback).await;
    assert_eq!(
        answer.status, 302,
        "callback did not complete the login:\n{answer}"
    );
    assert!(
        answer
            .header_all("set-cookie")
            .iter()
            .any(|c| c.starts_with("_portcullis=")),
        "no session cookie from the callback:\n{answer}"
    );
    let location = answer.location().expect("Location").to_owned();
    let resolved = Url::parse(&callback)
        .unwrap()
        .join(&location)
        .map(|u| u.to_string())
        .unwrap_or(location.clone());
    assert!(
        !location.contains("evil"),
        "the callback sends the browser to {location:?}"
    );
    let landed = b.open(&resolved).await;
    (resolved, landed)
}

/// `rd` (percent-encoded as a query component) must end at `/` of the gateway's host.
async fn refused(rd: &str) {
    refused_query(&format!("rd={}", encode(rd)), rd).await;
}

async fn refused_query(query: &str, what: &str) {
    let s = stack();
    let (target, landed) = login_with_start_query(query).await;
    let home = format!("{}/", s.base());
    assert_eq!(target, home, "rd {what:?} was not replaced by /");
    assert_eq!(
        landed.url.as_str(),
        home,
        "rd {what:?}: the browser did not land on / of the gateway's host:\n{landed}"
    );
    assert!(
        landed.next.is_none(),
        "rd {what:?}: the browser was sent off the test hosts:\n{landed}"
    );
    for hop in &landed.hops {
        assert!(!hop.contains("evil"), "rd {what:?}: visited {hop}");
    }
    assert_ne!(landed.status, 500, "{landed}");
}

#[tokio::test]
async fn rd_absolute_url_on_other_site_is_refused() {
    refused("https://evil.com").await;
    refused("https://evil.com/some/path?x=1").await;
}

#[tokio::test]
async fn rd_scheme_relative_url_is_refused() {
    refused("//evil.com").await;
    refused("//evil.com/some/path").await;
}

#[tokio::test]
async fn rd_slash_backslash_url_is_refused() {
    refused("/\\evil.com").await;
    refused("\\\\evil.com").await;
}

#[tokio::test]
async fn rd_userinfo_trick_is_refused() {
    refused("https://app.example.com@evil.com").await;
    refused("http://app.example.com:80@evil.com/").await;
}

#[tokio::test]
async fn rd_javascript_url_is_refused() {
    refused("javascript:alert(1)").await;
    refused("JavaScript://app.example.com/%0aalert(1)").await;
}

#[tokio::test]
async fn rd_lookalike_suffix_domain_is_refused() {
    refused("https://example.com.evil.com").await;
    refused("https://app.example.com.evil.com/").await;
}

#[tokio::test]
async fn rd_header_injection_is_refused() {
    // The whole value percent-encoded: rd holds a literal "%0d%0a".
    refused("http://app.example.com%0d%0aLocation:%20https://evil.com").await;
    // Written into the query as it is: rd holds a real CR LF.
    refused_query(
        "rd=http://app.example.com%0d%0aLocation:%20https://evil.com",
        "raw CR LF",
    )
    .await;
}

#[tokio::test]
async fn rd_on_own_host_is_followed() {
    let s = stack();
    let rel = "/some/page?x=1&y=a%20b";
    let (target, _) = login_with_start_query(&format!("rd={}", encode(rel))).await;
    assert_eq!(
        target,
        format!("{}{rel}", s.base()),
        "a relative rd was not followed"
    );
    let abs = format!("{}/some/abs?z=2", s.base());
    let (target, _) = login_with_start_query(&format!("rd={}", encode(&abs))).await;
    assert_eq!(target, abs, "an rd on the allowed host was not followed");
}

/// The flow cookie is found by the first 12 characters of `state`; a
/// callback whose `state` differs only after them finds the cookie and must
/// still be refused by the full comparison, with no session.
#[tokio::test]
async fn state_changed_after_the_cookie_tag_is_refused() {
    let s = stack();
    let _logs = LogsOnFailure(vec![&s.idp.proc, &s.gateway.proc]);
    let b = Browser::new();
    let is_callback = |u: &Url| u.path() == "/oauth2/callback";
    let page = b
        .navigate(
            &format!("{}/oauth2/start?rd=%2F", s.base()),
            Nav {
                login: Some("alice"),
                stop_before: Some(&is_callback),
            },
        )
        .await;
    let callback = Url::parse(page.next.as_deref().expect("reached the callback")).unwrap();
    let state = callback
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state in the callback");
    assert!(state.len() > 13, "{state}");
    let flow_cookie = format!("_portcullis_flow_{}", &state[..12]);
    assert!(
        b.cookie(callback.as_str(), &flow_cookie).is_some(),
        "no flow cookie named {flow_cookie}: {:?}",
        b.cookies(callback.as_str())
    );
    // Same first 12 characters (same flow cookie), one character changed after them.
    let mut forged = state.clone().into_bytes();
    forged[13] = if forged[13] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let mut tampered = callback.clone();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                forged.clone()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let answer = b.get(tampered.as_str()).await;
    assert_eq!(
        answer.status, 400,
        "a changed state was accepted:\n{answer}"
    );
    assert!(
        answer
            .body
            .contains("could not be matched to your browser. Please start again"),
        "not the state mismatch page:\n{answer}"
    );
    assert!(
        !answer
            .header_all("set-cookie")
            .iter()
            .any(|c| c.starts_with("_portcullis=")),
        "a session was planted:\n{answer}"
    );
}

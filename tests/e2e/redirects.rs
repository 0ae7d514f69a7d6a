//! Hostile `rd` values at `/oauth2/start`, carried through a real IdP login:
//! after the callback the browser must land on `/` of the gateway's own host,
//! never on another site. Allowed targets (relative, same host) are followed,
//! so the tests can tell "refused" from "ignored".
//!
//! The same hostile values as `rd` of `/oauth2/sign_out`, with
//! `oidc.rp_logout` off (the gateway redirects itself) and on (the browser
//! continues at the IdP's end-session endpoint, whose
//! `post_logout_redirect_uri` the gateway builds from `rd`).

use std::sync::OnceLock;

use url::Url;

use crate::support::browser::{Browser, Nav};
use crate::support::encode;
use crate::support::free_port;
use crate::support::gateway::{app_config, Gateway, Launch};
use crate::support::idp::{Idp, CLIENT_ID, CLIENT_SECRET};
use crate::support::proc::LogsOnFailure;

struct Stack {
    idp: Idp,
    gateway: Gateway,
    /// The same config with `oidc.rp_logout = true`.
    rp_logout: Gateway,
}

fn stack() -> &'static Stack {
    static S: OnceLock<Stack> = OnceLock::new();
    S.get_or_init(|| {
        let (port, rp_port) = (free_port(), free_port());
        let bases = [port, rp_port].map(|p| format!("http://app.example.com:{p}"));
        let callbacks = bases.clone().map(|b| format!("{b}/oauth2/callback"));
        let clients = serde_json::json!([{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": callbacks,
            "post_logout_redirect_uris": bases.map(|b| format!("{b}/")),
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }]);
        let idp = Idp::start_with(&callbacks, serde_json::json!({ "clients": clients }));
        let config = app_config(&idp.issuer);
        let gateway = Gateway::launch(Launch {
            config: &config,
            port: Some(port),
            ..Launch::default()
        });
        let rp_config = config.replace("[oidc]\n", "[oidc]\nrp_logout = true\n");
        assert_ne!(rp_config, config);
        let rp_logout = Gateway::launch(Launch {
            name: "portcullis-rp-logout",
            config: &rp_config,
            port: Some(rp_port),
            ..Launch::default()
        });
        Stack {
            idp,
            gateway,
            rp_logout,
        }
    })
}

impl Stack {
    fn base(&self) -> String {
        format!("http://app.example.com:{}", self.gateway.port)
    }

    fn logs(&self) -> LogsOnFailure<'_> {
        LogsOnFailure(vec![
            &self.idp.proc,
            &self.gateway.proc,
            &self.rp_logout.proc,
        ])
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

/// Sign-out targets that must never be followed. `%2F%2Fevil.com` is the
/// value itself (encoded once more in the query); tabs and newlines are
/// removed by browsers' URL parsers, so `/\t/evil.com` is `//evil.com` to them.
const HOSTILE_SIGN_OUT_RD: &[&str] = &[
    "//evil.com",
    "///evil.com",
    "/\\evil.com",
    "\\\\evil.com",
    "https://evil.com",
    "https://evil.com/",
    "HTTPS://EVIL.COM/",
    "https://good.example.com.evil.com",
    "https://app.example.com.evil.com/",
    "https://evil.com\\@app.example.com",
    "https://evil.com\\@app.example.com/",
    "https://app.example.com@evil.com/",
    "https://app.example.com:80@evil.com/",
    "https://user:pass@evil.com/",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "javascript://app.example.com/%0aalert(1)",
    "data:text/html,<script>alert(1)</script>",
    "%2F%2Fevil.com",
    "%2f%5cevil.com",
    "/\t/evil.com",
    "/\n/evil.com",
    "/\r\n/evil.com",
    "https://evil.com\t/",
    "https://ev\nil.com/",
    "java\tscript:alert(1)",
    "http:evil.com",
    "http:/evil.com",
    "http:\\\\evil.com",
    " //evil.com",
];

/// Signs `b` in on `gw` through the real IdP (so sign-out has a session,
/// and with `rp_logout` an ID token, to end).
async fn signed_in(gw: &Gateway) -> Browser {
    let b = Browser::new();
    let base = format!("http://app.example.com:{}", gw.port);
    let page = b
        .open_as(&format!("{base}/oauth2/start?rd=%2F"), "alice")
        .await;
    assert!(
        b.cookie(&base, "_portcullis").is_some(),
        "no session after the login:\n{page}"
    );
    b
}

/// `GET /oauth2/sign_out?<query>` on `gw` for a signed-in browser: the
/// answer's `Location` resolved against the gateway's URL, and the browser.
async fn sign_out(gw: &Gateway, query: &str) -> (Url, String, Browser) {
    let b = signed_in(gw).await;
    let base = format!("http://app.example.com:{}", gw.port);
    let out = b.get(&format!("{base}/oauth2/sign_out?{query}")).await;
    assert_eq!(out.status, 302, "{query}:\n{out}");
    assert!(
        out.header_all("set-cookie")
            .iter()
            .any(|c| c.starts_with("_portcullis=;")),
        "{query}: the session cookie was not cleared:\n{out}"
    );
    let location = out.location().expect("Location").to_owned();
    let to = Url::parse(&base)
        .unwrap()
        .join(&location)
        .unwrap_or_else(|e| {
            panic!("{query}: Location {location:?} is no URL a browser can follow: {e}")
        });
    (to, location, b)
}

#[tokio::test]
async fn sign_out_with_a_hostile_rd_ends_at_the_gateway_root() {
    let s = stack();
    let _logs = s.logs();
    let home = format!("{}/", s.base());
    for rd in HOSTILE_SIGN_OUT_RD {
        let (to, location, b) = sign_out(&s.gateway, &format!("rd={}", encode(rd))).await;
        assert_eq!(location, "/", "rd {rd:?}");
        assert_eq!(to.as_str(), home, "rd {rd:?}");
        // Followed like a browser would: it stays on the gateway's host.
        let landed = b.open(to.as_str()).await;
        assert!(
            landed.next.is_none(),
            "rd {rd:?}: left the test hosts:\n{landed}"
        );
        assert_eq!(landed.url.host_str(), Some("app.example.com"), "rd {rd:?}");
        for hop in &landed.hops {
            assert!(!hop.contains("evil"), "rd {rd:?}: visited {hop}");
        }
    }
    // Raw in the query, as a hand-written link would carry them.
    for query in [
        "rd=//evil.com",
        "rd=%2F%2Fevil.com",
        "rd=/%5Cevil.com",
        "rd=https://evil.com&rd=/",
    ] {
        let (to, location, _) = sign_out(&s.gateway, query).await;
        assert_eq!(location, "/", "{query}");
        assert_eq!(to.as_str(), home, "{query}");
    }
}

#[tokio::test]
async fn sign_out_with_rp_logout_never_hands_a_hostile_rd_to_the_idp() {
    let s = stack();
    let _logs = s.logs();
    let base = format!("http://app.example.com:{}", s.rp_logout.port);
    let issuer = Url::parse(&s.idp.issuer).unwrap();
    for rd in HOSTILE_SIGN_OUT_RD {
        let (to, location, b) = sign_out(&s.rp_logout, &format!("rd={}", encode(rd))).await;
        assert_eq!(to.origin(), issuer.origin(), "rd {rd:?}: {location}");
        let q: std::collections::HashMap<_, _> = to.query_pairs().into_owned().collect();
        assert_eq!(
            q.get("post_logout_redirect_uri").map(String::as_str),
            Some(format!("{base}/").as_str()),
            "rd {rd:?}: {location}"
        );
        assert_eq!(q.get("client_id").map(String::as_str), Some(CLIENT_ID));
        // Nothing else the IdP might follow (`state` is echoed back to the
        // post-logout URI) carries the target.
        for (k, v) in &q {
            assert!(
                !v.to_ascii_lowercase().contains("evil") && !v.contains("javascript"),
                "rd {rd:?}: {k}={v}"
            );
        }
        // The IdP accepts the registered URI: its sign-out confirmation.
        let page = b.get(to.as_str()).await;
        assert_eq!(page.status, 200, "rd {rd:?}:\n{page}");
        assert!(page.body.contains("op.logoutForm"), "rd {rd:?}:\n{page}");
    }
}

#[tokio::test]
async fn sign_out_with_an_allowed_rd_ends_there() {
    // The control for the two tests above: allowed targets are followed,
    // so "/" there means refused, not ignored.
    let s = stack();
    let _logs = s.logs();
    for gw in [&s.gateway, &s.rp_logout] {
        let base = format!("http://app.example.com:{}", gw.port);
        for rd in ["/bye?x=1".to_owned(), format!("{base}/bye?x=1")] {
            let (to, location, _) = sign_out(gw, &format!("rd={}", encode(&rd))).await;
            let expected = format!("{base}/bye?x=1");
            if gw.port == s.gateway.port {
                assert_eq!(location, rd);
                assert_eq!(to.as_str(), expected);
            } else {
                let q: std::collections::HashMap<_, _> = to.query_pairs().into_owned().collect();
                assert_eq!(
                    q.get("post_logout_redirect_uri"),
                    Some(&expected),
                    "{location}"
                );
            }
        }
    }
}

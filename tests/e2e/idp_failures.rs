//! When the IdP is down or says no: a clear HTML error page with a fitting
//! status (never a bare 500, never a session) and one log line naming the
//! cause. The IdP's metadata and keys come from the gateway's cached copy:
//! a login start after the IdP went down still redirects to it, a burst of
//! starts at a dead IdP costs it one fetch, the first start after the IdP
//! came up works, and a login after the IdP rotated its signing key works.

use std::io::Read as _;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

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
async fn start_after_idp_went_down_still_redirects() {
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

    // A new login starts from the cached metadata, without asking the IdP:
    // the browser goes to the authorization endpoint (where it finds the
    // outage itself), and no login failure is logged.
    let page = Browser::new()
        .get(&format!("{}/oauth2/start?rd=%2Fsome%2Fpage", base(&gw)))
        .await;
    assert_eq!(page.status, 302, "{page}");
    let location = page.location().unwrap_or_default();
    assert!(
        location.starts_with(&format!("{}/auth?", idp.issuer)),
        "redirect to {location:?}, not to the IdP's authorization endpoint"
    );
    let lines = login_failures(&gw, "idp_unreachable");
    assert!(lines.is_empty(), "{lines:#?}");
}

/// A port where a dead IdP would be: it accepts connections and closes them
/// at once, counting them.
fn dead_idp() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = conn.read(&mut [0u8; 1024]);
        }
    });
    (issuer, count)
}

#[tokio::test]
async fn a_start_burst_at_a_dead_idp_asks_it_once() {
    let (issuer, connections) = dead_idp();
    let port = free_port();
    let config = direct_config(&issuer, ACCESS, APP_RULES);
    let gw = Gateway::launch(Launch {
        config: &config,
        port: Some(port),
        wait_ready: false,
        ..Launch::default()
    });
    let _logs = LogsOnFailure(vec![&gw.proc]);
    // The background load at start failed (and waits a second before it retries).
    crate::support::wait_for(
        "the gateway's first discovery attempt",
        || Ok(()),
        || (connections.load(Ordering::SeqCst) > 0).then_some(()),
    )
    .unwrap();
    let before = connections.load(Ordering::SeqCst);
    let url = format!("{}/oauth2/start?rd=%2Fsome%2Fpage", base(&gw));
    let burst: Vec<_> = (0..100)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Browser::new().get(&url).await })
        })
        .collect();
    for page in burst {
        assert_error_page(&page.await.unwrap(), 503, "identity provider");
    }
    let asked = connections.load(Ordering::SeqCst) - before;
    // One fetch for the burst, plus perhaps one whose failure aged out
    // during the burst and one background retry.
    assert!(
        asked <= 3,
        "{asked} connections at the dead IdP for 100 login starts"
    );
}

#[tokio::test]
async fn start_after_idp_came_up_logs_in() {
    // The IdP is not there yet when the gateway starts.
    let idp_port = free_port();
    let issuer = format!("http://127.0.0.1:{idp_port}");
    let port = free_port();
    let config = direct_config(&issuer, ACCESS, APP_RULES);
    let gw = Gateway::launch(Launch {
        config: &config,
        port: Some(port),
        wait_ready: false,
        ..Launch::default()
    });
    let page = Browser::new()
        .get(&format!("{}/oauth2/start?rd=%2Fsome%2Fpage", base(&gw)))
        .await;
    assert_error_page(&page, 503, "identity provider");
    // A failed fetch is answered from memory for 2 s; the IdP comes up after that.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let idp = Idp::start_with(
        &[format!("http://app.example.com:{port}/oauth2/callback")],
        serde_json::json!({ "port": idp_port }),
    );
    assert_eq!(idp.issuer, issuer);
    let _logs = LogsOnFailure(vec![&idp.proc, &gw.proc]);
    // The gateway's own retries may have failed while the IdP was starting;
    // such a failure is answered from memory for FAILURE_BACKOFF (2 s) at
    // most. Within that bound (plus room for a busy machine), starts redirect
    // to the IdP again.
    let up = std::time::Instant::now();
    loop {
        let page = Browser::new()
            .get(&format!("{}/oauth2/start?rd=%2Fsome%2Fpage", base(&gw)))
            .await;
        if page.status == 302 {
            break;
        }
        assert_error_page(&page, 503, "identity provider");
        assert!(
            up.elapsed() < Duration::from_secs(8),
            "starts still fail {:?} after the IdP came up",
            up.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
        "the first login after the IdP came up:\n{page}"
    );
}

#[tokio::test]
async fn login_after_idp_rotated_its_key() {
    let port = free_port();
    let idp = Idp::start(&[format!("http://app.example.com:{port}/oauth2/callback")]);
    let config = direct_config(&idp.issuer, ACCESS, APP_RULES);
    let gw = Gateway::launch(Launch {
        config: &config,
        port: Some(port),
        ..Launch::default()
    });
    let _logs = LogsOnFailure(vec![&idp.proc, &gw.proc]);
    let logged_in = |page: &Page| {
        page.hops
            .iter()
            .any(|h| h.starts_with("302 GET") && h.contains("/oauth2/callback"))
    };
    let start = format!("{}/oauth2/start?rd=%2Fsome%2Fpage", base(&gw));
    let page = Browser::new().open_as(&start, "alice").await;
    assert!(logged_in(&page), "a login with the first key:\n{page}");

    let before = idp.metadata_fetches();
    idp.rotate_keys();

    // The new ID token names a kid the cached keys lack: one refetch, then a login.
    let page = Browser::new().open_as(&start, "bob").await;
    assert!(logged_in(&page), "a login with the rotated key:\n{page}");
    let page = Browser::new().open_as(&start, "carol").await;
    assert!(
        logged_in(&page),
        "another login with the rotated key:\n{page}"
    );
    let after = idp.metadata_fetches();
    assert_eq!(
        after.jwks - before.jwks,
        1,
        "JWKS fetches after the rotation: {before:?} -> {after:?}"
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

//! A cookie that is not ASCII text (`z=café`, which any app under the cookie
//! domain can set) beside portcullis's own cookies, on gateways in proxy
//! mode with the memory store and with a real Redis: the login callback
//! still finds its flow cookie, the session cookie never reaches the
//! upstream while the other cookies do byte for byte, and sign-out ends the
//! session on the server, so the old cookie no longer works.

use std::sync::OnceLock;

use url::Url;

use crate::support::browser::{Browser, Nav};
use crate::support::echo::{Echo, Seen};
use crate::support::free_port;
use crate::support::gateway::{direct_config, Gateway, Launch};
use crate::support::http::{raw_get, RawResponse};
use crate::support::idp::Idp;
use crate::support::proc::LogsOnFailure;
use crate::support::redis::Redis;

/// The cookie another app set: valid UTF-8, not ASCII.
const FOREIGN: &str = "z=café";

struct Stack {
    idp: Idp,
    _echo: Echo,
    redis: Redis,
    memory: Gateway,
    shared: Gateway,
}

fn stack() -> &'static Stack {
    static S: OnceLock<Stack> = OnceLock::new();
    S.get_or_init(|| {
        let (pm, pr) = (free_port(), free_port());
        let idp = Idp::start(&[
            format!("http://app.example.com:{pm}/oauth2/callback"),
            format!("http://app.example.com:{pr}/oauth2/callback"),
        ]);
        let echo = Echo::start();
        let redis = Redis::start();
        let config = direct_config(
            &idp.issuer,
            r#"allowed_redirect_domains = ["app.example.com"]"#,
            &format!(
                "[[rule]]\nhost = \"app.example.com\"\npath = \"/\"\nupstream = \"http://{}\"\n",
                echo.addr()
            ),
        );
        let memory = Gateway::launch(Launch {
            name: "portcullis-memory",
            config: &config,
            port: Some(pm),
            ..Launch::default()
        });
        let with_redis = config.replace(
            "[session]\ncookie_secure = false\n",
            &format!(
                "[session]\ncookie_secure = false\nstore = \"redis\"\nredis_url = \"redis://127.0.0.1:{}/0\"\n",
                redis.port
            ),
        );
        let shared = Gateway::launch(Launch {
            name: "portcullis-redis",
            config: &with_redis,
            port: Some(pr),
            ..Launch::default()
        });
        Stack {
            idp,
            _echo: echo,
            redis,
            memory,
            shared,
        }
    })
}

impl Stack {
    fn logs(&self) -> LogsOnFailure<'_> {
        LogsOnFailure(vec![&self.idp.proc, &self.memory.proc, &self.shared.proc])
    }

    fn gateways(&self) -> [(&'static str, &Gateway); 2] {
        [("memory", &self.memory), ("redis", &self.shared)]
    }
}

fn host(gw: &Gateway) -> String {
    format!("app.example.com:{}", gw.port)
}

fn set_cookies(res: &RawResponse) -> Vec<&str> {
    res.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Logs alice in on `gw`, the callback sent with the foreign cookie before
/// and after the flow cookie, and returns the session cookie's value.
async fn login(gw: &Gateway) -> String {
    let b = Browser::new();
    let base = format!("http://{}", host(gw));
    let at_callback = |u: &Url| u.path() == "/oauth2/callback";
    let page = b
        .navigate(
            &format!("{base}/oauth2/start?rd=%2Fhome"),
            Nav {
                login: Some("alice"),
                stop_before: Some(&at_callback),
            },
        )
        .await;
    let callback = Url::parse(
        page.next
            .as_deref()
            .unwrap_or_else(|| panic!("the login did not come back to the callback:\n{page}")),
    )
    .unwrap();
    let flow: Vec<String> = b
        .cookies(callback.as_str())
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert!(!flow.is_empty(), "no flow cookie:\n{page}");
    let cookie = format!("{FOREIGN}; {}; theme=dark; y=naïve", flow.join("; "));
    let target = format!("{}?{}", callback.path(), callback.query().unwrap_or(""));
    let res = raw_get(gw.port, &host(gw), &target, &[("Cookie", &cookie)]);
    assert_eq!(
        (res.status, res.header("location")),
        (302, Some("/home")),
        "the callback failed beside a non-ASCII cookie: {}",
        res.text()
    );
    let session = set_cookies(&res)
        .into_iter()
        .find_map(|c| c.strip_prefix("_portcullis="))
        .and_then(|c| c.split(';').next())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| panic!("no session cookie from the callback: {:?}", res.headers));
    session.to_owned()
}

/// The Redis key of the session named by a session cookie's value (the id
/// is the base64url text after the 44-character signature).
fn redis_key(session: &str) -> String {
    use base64::Engine as _;
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&session[44..])
        .expect("session id in the cookie");
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!("portcullis:s:{hex}")
}

/// What the app saw for `GET /page` sent with `cookie`, or the gateway's status.
fn app_sees(gw: &Gateway, cookie: &str) -> Result<Seen, u16> {
    let res = raw_get(
        gw.port,
        &host(gw),
        "/page",
        &[("Cookie", cookie), ("Accept", "application/json")],
    );
    Seen::parse(&res.text()).ok_or(res.status)
}

#[tokio::test]
async fn session_cookie_never_reaches_the_upstream_beside_a_non_ascii_cookie() {
    let s = stack();
    let _logs = s.logs();
    for (store, gw) in s.gateways() {
        let session = login(gw).await;
        for cookie in [
            format!("{FOREIGN}; _portcullis={session}; theme=dark"),
            format!("_portcullis={session}; {FOREIGN}"),
            format!("theme=dark;{FOREIGN};_portcullis=\"{session}\";y=naïve"),
        ] {
            let seen = app_sees(gw, &cookie)
                .unwrap_or_else(|status| panic!("{store}: {status} for {cookie:?}"));
            assert_eq!(seen.one("x-auth-user").as_deref(), Some("alice"), "{store}");
            let sent = seen.all("cookie");
            assert_eq!(sent.len(), 1, "{store}: {sent:?}");
            assert!(
                !sent[0].contains("_portcullis"),
                "{store}: our cookie reached the app: {sent:?}"
            );
            let kept: Vec<&str> = cookie
                .split(';')
                .map(str::trim)
                .filter(|c| !c.starts_with("_portcullis"))
                .collect();
            assert_eq!(sent[0], kept.join("; "), "{store}: other cookies changed");
        }
    }
}

#[tokio::test]
async fn sign_out_beside_a_non_ascii_cookie_ends_the_session_on_the_server() {
    let s = stack();
    let _logs = s.logs();
    for (store, gw) in s.gateways() {
        let session = login(gw).await;
        let alone = format!("_portcullis={session}");
        let before = app_sees(gw, &alone);
        assert!(
            matches!(&before, Ok(seen) if seen.one("x-auth-user").as_deref() == Some("alice")),
            "{store}: the session does not work before sign-out: {before:?}"
        );
        let key = redis_key(&session);
        if store == "redis" {
            assert_eq!(
                s.redis.cli(&["EXISTS", &key]).trim(),
                "1",
                "no {key} in Redis"
            );
        }
        let res = raw_get(
            gw.port,
            &host(gw),
            "/oauth2/sign_out?rd=%2Fbye",
            &[("Cookie", &format!("{FOREIGN}; {alone}; theme=dark"))],
        );
        assert_eq!(res.status, 302, "{store}: {}", res.text());
        assert!(
            set_cookies(&res)
                .iter()
                .any(|c| c.starts_with("_portcullis=;") && c.contains("Max-Age=0")),
            "{store}: the browser's cookie was not cleared: {:?}",
            res.headers
        );
        let after = app_sees(gw, &alone);
        assert_eq!(
            after.as_ref().map(|seen| seen.identity()).err(),
            Some(&401),
            "{store}: the signed-out session still works: {after:?}"
        );
        if store == "redis" {
            assert_eq!(
                s.redis.cli(&["EXISTS", &key]).trim(),
                "0",
                "{key} stayed in Redis"
            );
        }
    }
}

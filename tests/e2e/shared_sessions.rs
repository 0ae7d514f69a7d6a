//! Two portcullis processes sharing sessions through a real `redis-server`
//! (and, in one test, a real Sentinel), with the real IdP: logins that start
//! on one instance and finish on the other, sign-out and revocation honoured
//! by the other instance within a second, kill -9 and restart, a Redis
//! outage and its recovery, and the admin API.
//!
//! Each test owns its Redis, its two gateways and its TCP balancer (which the
//! test points at one instance or the other per request); the IdP is shared.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use url::Url;

use crate::support::balancer::Balancer;
use crate::support::browser::{Browser, Nav};
use crate::support::free_port;
use crate::support::gateway::{app_config, Gateway, Launch, SESSION_SECRET};
use crate::support::idp::{Idp, CLIENT_ID, CLIENT_SECRET};
use crate::support::jwt::{b64, TestKey};
use crate::support::proc::LogsOnFailure;
use crate::support::redis::{Redis, Sentinel};

/// One balancer per test, created before the IdP (which must know every callback URL).
const TESTS: usize = 14;
/// The Redis Cluster test.
const CLUSTER_TEST: usize = 7;
/// The test whose balancer receives the IdP's back-channel logouts.
const BACKCHANNEL_TEST: usize = 5;
/// The test whose gateways continue sign-out at the IdP.
const RP_LOGOUT_TEST: usize = 6;
/// The `rediss://` test.
const TLS_TEST: usize = 9;
/// The Sentinel failover test.
const FAILOVER_TEST: usize = 10;
/// The idle-timeout test.
const IDLE_TEST: usize = 11;
/// The `rediss+sentinel://` test.
const TLS_SENTINEL_TEST: usize = 12;
/// The TLS Redis Cluster test.
const TLS_CLUSTER_TEST: usize = 13;

struct Shared {
    idp: Idp,
    lbs: Vec<Balancer>,
    /// Where the round-robin Traefik of one test listens.
    traefik_port: u16,
}

fn shared() -> &'static Shared {
    static S: OnceLock<Shared> = OnceLock::new();
    S.get_or_init(|| {
        let lbs: Vec<Balancer> = (0..TESTS).map(|_| Balancer::start()).collect();
        let traefik_port = free_port();
        let uris: Vec<String> = lbs
            .iter()
            .map(|lb| lb.port)
            .chain([traefik_port])
            .map(|port| format!("http://app.example.com:{port}/oauth2/callback"))
            .collect();
        let post_logout: Vec<String> = lbs
            .iter()
            .map(|lb| format!("http://app.example.com:{}/", lb.port))
            .collect();
        let clients = serde_json::json!([{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": uris,
            "post_logout_redirect_uris": post_logout,
            "backchannel_logout_uri": format!(
                "http://127.0.0.1:{}/oauth2/backchannel_logout",
                lbs[BACKCHANNEL_TEST].port
            ),
            "backchannel_logout_session_required": true,
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }]);
        Shared {
            idp: Idp::start_with(&uris, serde_json::json!({ "clients": clients })),
            lbs,
            traefik_port,
        }
    })
}

/// Two gateways on one Redis behind one balancer.
struct Pair {
    redis: Redis,
    a: Option<Gateway>,
    b: Gateway,
    a_port: u16,
    a_admin: u16,
    b_admin: u16,
    a_config: String,
    lb: &'static Balancer,
}

fn config(issuer: &str, redis_url: &str, admin_port: u16, rp_logout: bool) -> String {
    app_config(issuer)
    .replace(
        "[session]\ncookie_secure = false\n",
        &format!(
            "[session]\ncookie_secure = false\nstore = \"redis\"\nredis_url = {redis_url}\nidle_timeout = \"1h\"\n"
        ),
    )
    .replace(
        "trusted_proxies = [\"127.0.0.1/32\"]\n",
        &format!("trusted_proxies = [\"127.0.0.1/32\"]\nadmin_listen = \"127.0.0.1:{admin_port}\"\n"),
    )
    .replace("[oidc]\n", &format!("[oidc]\nrp_logout = {rp_logout}\n"))
}

fn launch(name: &'static str, config: &str, port: Option<u16>, admin_port: u16) -> Gateway {
    Gateway::launch(Launch {
        name,
        config,
        port,
        admin_port: Some(admin_port),
        ..Launch::default()
    })
}

impl Pair {
    fn start(test: usize) -> Pair {
        Pair::start_with(test, Redis::start(), None)
    }

    fn start_with(test: usize, redis: Redis, url: Option<String>) -> Pair {
        Pair::start_edited(test, redis, url, |c| c)
    }

    /// [`Pair::start_with`], with `edit` applied to both configs.
    fn start_edited(
        test: usize,
        redis: Redis,
        url: Option<String>,
        edit: impl Fn(String) -> String,
    ) -> Pair {
        let s = shared();
        // A TOML value: one quoted URL, or a list for a cluster.
        let url = url.unwrap_or_else(|| format!("\"{}\"", redis.url()));
        let (a_admin, b_admin) = (free_port(), free_port());
        let rp = test == RP_LOGOUT_TEST;
        let a_config = edit(config(&s.idp.issuer, &url, a_admin, rp));
        let a = launch("portcullis-a", &a_config, None, a_admin);
        let b = launch(
            "portcullis-b",
            &edit(config(&s.idp.issuer, &url, b_admin, rp)),
            None,
            b_admin,
        );
        let lb = &s.lbs[test];
        lb.route_to(a.port);
        Pair {
            redis,
            a_port: a.port,
            a: Some(a),
            b,
            a_admin,
            b_admin,
            a_config,
            lb,
        }
    }

    fn a(&self) -> &Gateway {
        self.a.as_ref().expect("instance A is running")
    }

    fn base(&self) -> String {
        format!("http://app.example.com:{}", self.lb.port)
    }

    /// Logs in as `user`, starting on `start` and finishing on `finish`.
    async fn login(&self, b: &Browser, user: &str, start: u16, finish: u16) {
        self.lb.route_to(start);
        let page = b
            .navigate(
                &format!("{}/oauth2/start?rd=%2F", self.base()),
                Nav {
                    login: Some(user),
                    stop_before: Some(&|u: &Url| u.path() == "/oauth2/callback"),
                },
            )
            .await;
        let callback = page
            .next
            .clone()
            .unwrap_or_else(|| panic!("no callback reached:\n{page}"));
        self.lb.route_to(finish);
        let page = b.get(&callback).await;
        assert_eq!(page.status, 302, "callback on {finish} failed:\n{page}");
        assert_eq!(page.location(), Some("/"), "{page}");
    }

    /// A forward-auth check on instance `port`: its status.
    async fn check(&self, b: &Browser, port: u16) -> u16 {
        self.lb.route_to(port);
        b.get_with(
            &format!("{}/oauth2/auth", self.base()),
            &[
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Proto", "http"),
                ("X-Forwarded-Host", "app.example.com"),
                ("X-Forwarded-Uri", "/"),
            ],
        )
        .await
        .status
    }

    /// What every store topology must pass: a login started on A and
    /// finished on B is accepted by both and lives in Redis; a sign-out
    /// through B is refused by A within a second.
    async fn round_trip(&self) {
        let (a, b) = (self.a_port, self.b.port);
        let browser = Browser::new();
        self.login(&browser, "alice", a, b).await;
        assert_eq!(self.check(&browser, a).await, 200);
        assert_eq!(self.check(&browser, b).await, 200);
        assert!(self
            .redis
            .cli(&["KEYS", "portcullis:s:*"])
            .contains("portcullis:s:"));
        self.lb.route_to(b);
        browser
            .get(&format!("{}/oauth2/sign_out", self.base()))
            .await;
        assert!(self.until_denied(&browser, a).await < Duration::from_secs(1));
    }

    /// Polls checks on `port` until one is not 200 (it must then be the
    /// login redirect). Returns how long after the call the session was
    /// last still granted: when the last check answered 200 was sent, zero
    /// when the first one is refused. That is what "honoured within a
    /// second" bounds; how long the checks themselves take on a busy
    /// machine is not counted.
    async fn until_denied(&self, b: &Browser, port: u16) -> Duration {
        self.until_denied_since(b, port, Instant::now()).await
    }

    /// [`Pair::until_denied`], counted from `since` (a revocation's completion).
    async fn until_denied_since(&self, b: &Browser, port: u16, since: Instant) -> Duration {
        let mut granted = Duration::ZERO;
        loop {
            let sent = since.elapsed();
            let status = self.check(b, port).await;
            if status != 200 {
                assert_eq!(status, 302, "a signed-out browser is sent to the login");
                return granted;
            }
            granted = sent;
            assert!(
                since.elapsed() < Duration::from_secs(5),
                "the session still works on {port} after 5 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn logs(&self) -> LogsOnFailure<'_> {
        let mut v = vec![&shared().idp.proc, &self.b.proc];
        if let Some(a) = &self.a {
            v.push(&a.proc);
        }
        LogsOnFailure(v)
    }

    fn admin(&self, method: &str, port: u16, query: &str) -> (u16, serde_json::Value) {
        let r = crate::support::http::raw_request(
            port,
            method,
            "127.0.0.1",
            &format!("/admin/sessions{query}"),
            &[],
        )
        .expect("admin listener answers");
        let v = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
        (r.status, v)
    }

    /// `portcullis sessions ARGS --config <A's config>`.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("--config")
            .arg(&self.a().config)
            .arg("sessions")
            .args(args)
            .env("PORTCULLIS_OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .env("PORTCULLIS_SESSION_SECRET", SESSION_SECRET)
            .output()
            .expect("run portcullis sessions")
    }
}

#[tokio::test]
async fn twenty_logins_cross_instances_and_sign_out_reaches_the_other_within_a_second() {
    let p = Pair::start(0);
    let _logs = p.logs();
    let (a, b) = (p.a_port, p.b.port);
    for i in 0..20 {
        let browser = Browser::new();
        let (start, finish) = if i % 2 == 0 { (a, b) } else { (b, a) };
        p.login(&browser, "alice", start, finish).await;
        assert_eq!(p.check(&browser, a).await, 200, "login {i}: A");
        assert_eq!(p.check(&browser, b).await, 200, "login {i}: B");
    }

    // Both instances have the session cached; sign out through A.
    let browser = Browser::new();
    p.login(&browser, "bob", a, b).await;
    assert_eq!(p.check(&browser, a).await, 200);
    assert_eq!(p.check(&browser, b).await, 200);
    let cookie = browser
        .cookie(&p.base(), "_portcullis")
        .expect("session cookie");
    p.lb.route_to(a);
    let out = browser.get(&format!("{}/oauth2/sign_out", p.base())).await;
    assert_eq!(out.status, 302, "{out}");
    // A stale copy of the cookie (another tab) is what the other instance sees.
    let stale = Browser::new();
    stale.set_cookie(&p.base(), &format!("_portcullis={cookie}"));
    let took = p.until_denied(&stale, b).await;
    assert!(
        took < Duration::from_secs(1),
        "B honoured the sign-out after {took:?}"
    );
    assert_eq!(p.check(&stale, a).await, 302);
}

#[tokio::test]
async fn revoke_by_user_from_the_cli_and_the_admin_api_ends_sessions_everywhere() {
    let p = Pair::start(1);
    let _logs = p.logs();
    let (a, b) = (p.a_port, p.b.port);
    let alice1 = Browser::new();
    let alice2 = Browser::new();
    let bob = Browser::new();
    p.login(&alice1, "alice", a, a).await;
    p.login(&alice2, "alice", b, b).await;
    p.login(&bob, "bob", a, b).await;
    for br in [&alice1, &alice2, &bob] {
        assert_eq!(p.check(br, a).await, 200);
        assert_eq!(p.check(br, b).await, 200);
    }

    // Inventory: the CLI and both admin listeners agree.
    let out = p.cli(&["list", "--user", "alice", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(!text.contains(&alice1.cookie(&p.base(), "_portcullis").unwrap()));
    let (status, v) = p.admin("GET", p.b_admin, "");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["sessions"].as_array().map(Vec::len), Some(3), "{v}");
    let (status, v) = p.admin("GET", p.a_admin, "?user=bob");
    assert_eq!(
        (status, v["sessions"][0]["user"].as_str()),
        (200, Some("bob")),
        "{v}"
    );
    // Never on the public listener.
    p.lb.route_to(a);
    assert_ne!(
        bob.get(&format!("{}/admin/sessions", p.base()))
            .await
            .status,
        200
    );
    // Hostile or ambiguous revocations are refused.
    assert_eq!(p.admin("DELETE", p.a_admin, "").0, 400);
    assert_eq!(p.admin("DELETE", p.a_admin, "?user=alice&all=true").0, 400);
    assert_eq!(p.admin("PUT", p.a_admin, "?user=alice").0, 405);

    let out = p.cli(&["revoke", "--user", "alice"]);
    // The promise counts from the revocation, not from the CLI's start-up.
    let revoked = Instant::now();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("revoked 2"),
        "{out:?}"
    );
    for br in [&alice1, &alice2] {
        for port in [a, b] {
            let granted = p.until_denied_since(br, port, revoked).await;
            assert!(
                granted < Duration::from_secs(1),
                "{port} still granted a check sent {granted:?} after the revocation"
            );
        }
    }
    assert_eq!(p.check(&bob, a).await, 200, "bob is untouched");
    assert_eq!(p.check(&bob, b).await, 200, "bob is untouched");

    // The admin API on B revokes bob on both.
    let (status, v) = p.admin("DELETE", p.b_admin, "?user=bob");
    assert_eq!((status, v["revoked"].as_u64()), (200, Some(1)), "{v}");
    assert!(p.until_denied(&bob, a).await < Duration::from_secs(1));
    let (_, v) = p.admin("GET", p.a_admin, "");
    assert_eq!(v["sessions"].as_array().map(Vec::len), Some(0), "{v}");
}

#[tokio::test]
async fn kill_nine_one_instance_the_other_serves_and_old_cookies_survive_restarts() {
    let mut p = Pair::start(2);
    let _ = p.logs();
    let (a, b) = (p.a_port, p.b.port);
    let browser = Browser::new();
    p.login(&browser, "alice", a, a).await;
    assert_eq!(p.check(&browser, a).await, 200);

    p.a.take().unwrap().proc.kill();
    assert_eq!(p.check(&browser, b).await, 200, "B serves A's session");

    let a = launch("portcullis-a2", &p.a_config, Some(a), p.a_admin);
    assert_eq!(
        p.check(&browser, a.port).await,
        200,
        "restarted A knows the session"
    );
    // Rolling restart: B too.
    let b_config = std::fs::read_to_string(&p.b.config).unwrap();
    p.b.proc.kill();
    let b2 = launch(
        "portcullis-b2",
        &b_config.replace(&format!("127.0.0.1:{b}"), "127.0.0.1:4180"),
        Some(b),
        p.b_admin,
    );
    assert_eq!(
        p.check(&browser, b2.port).await,
        200,
        "restarted B knows the session"
    );
    p.a = Some(a);
}

#[tokio::test]
async fn redis_outage_never_grants_keeps_cached_sessions_and_recovers() {
    let p = Pair::start(3);
    let _logs = p.logs();
    let (a, b) = (p.a_port, p.b.port);
    let cached = Browser::new();
    p.login(&cached, "alice", a, a).await;
    assert_eq!(p.check(&cached, a).await, 200);
    assert_eq!(p.check(&cached, b).await, 200);
    // Known to Redis but never seen by B.
    let uncached = Browser::new();
    p.login(&uncached, "bob", a, a).await;
    let in_progress = Browser::new();

    p.redis.stop();
    let t0 = Instant::now();
    for _ in 0..5 {
        assert_eq!(p.check(&cached, a).await, 200, "cached on A");
        assert_eq!(p.check(&cached, b).await, 200, "cached on B");
        assert_eq!(
            p.check(&uncached, b).await,
            503,
            "not cached on B: 503, never 200"
        );
    }
    assert!(t0.elapsed() < Duration::from_secs(20));
    // A new login cannot be stored: the callback answers the 503 page.
    p.lb.route_to(a);
    let page = in_progress
        .navigate(
            &format!("{}/oauth2/start?rd=%2F", p.base()),
            Nav {
                login: Some("carol"),
                stop_before: None,
            },
        )
        .await;
    assert_eq!(page.status, 503, "{page}");
    assert!(page.body.contains("try again"), "{page}");
    // Sign-out cannot be made effective everywhere: 503, cookie kept.
    p.lb.route_to(b);
    let out = uncached.get(&format!("{}/oauth2/sign_out", p.base())).await;
    assert_eq!(out.status, 503, "{out}");
    // API clients get JSON.
    let api = Browser::api();
    api.set_cookie(
        &p.base(),
        &format!(
            "_portcullis={}",
            uncached.cookie(&p.base(), "_portcullis").unwrap()
        ),
    );
    let r = api.get(&format!("{}/oauth2/userinfo", p.base())).await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("store_unavailable"), "{r}");
    // readyz says why.
    let ready = crate::support::http::raw_get(p.b_admin, "127.0.0.1", "/readyz", &[]);
    assert_eq!(ready.status, 503);
    assert!(
        ready.text().contains("session store unreachable"),
        "{}",
        ready.text()
    );
    // One log line per outage, not per request.
    let outage_lines = |g: &Gateway| {
        g.log()
            .lines()
            .filter(|l| l.contains("session store unreachable:"))
            .count()
    };
    assert_eq!(outage_lines(&p.b), 1, "{}", p.b.log());
    assert_eq!(outage_lines(p.a()), 1, "{}", p.a().log());

    // Redis comes back (empty: persistence is off); everything recovers.
    p.redis.resume();
    let fresh = Browser::new();
    let t0 = Instant::now();
    loop {
        let ready = crate::support::http::raw_get(p.a_admin, "127.0.0.1", "/readyz", &[]);
        if ready.status == 200 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{}", ready.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    p.login(&fresh, "carol", b, a).await;
    assert_eq!(p.check(&fresh, a).await, 200);
    assert_eq!(p.check(&fresh, b).await, 200);
    assert!(p.b.log().contains("session store reachable again"));
}

#[tokio::test]
async fn sentinel_finds_the_master() {
    let redis = Redis::start();
    let sentinel = Sentinel::start(&redis);
    let url = format!(
        "\"redis+sentinel://127.0.0.1:{}/mymaster/0\"",
        sentinel.port
    );
    let p = Pair::start_with(4, redis, Some(url));
    let _logs = p.logs();
    p.round_trip().await;
    drop(sentinel);
}

/// Creates (or resets) an IdP user only this test logs in as.
async fn idp_user(name: &str, groups: &[&str]) {
    let s = shared();
    let r = reqwest::Client::new()
        .post(format!(
            "{}/__test/users/{name}",
            s.idp.issuer.trim_end_matches('/')
        ))
        .json(&serde_json::json!({
            "password": crate::support::idp::password(name),
            "email": format!("{name}@example.com"),
            "groups": groups,
        }))
        .send()
        .await
        .expect("IdP test hook");
    assert!(r.status().is_success());
}

async fn post_form(url: &str, form: &[(&str, &str)]) -> (u16, String, Option<String>) {
    let r = reqwest::Client::new()
        .post(url)
        .form(form)
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    let cache = r
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, r.text().await.unwrap_or_default(), cache)
}

/// A JWT signed with the IdP's own key (`/__test/jwt`): `claims` override
/// the defaults (iss, aud, iat, exp); a `null` removes one.
/// Part `n` (0: header, 1: payload) of a JWT, decoded.
fn jwt_part(token: &str, n: usize) -> serde_json::Value {
    use base64::Engine as _;
    let part = token.split('.').nth(n).expect("JWT part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

async fn idp_jwt(claims: serde_json::Value, header: serde_json::Value) -> String {
    let s = shared();
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/__test/jwt", s.idp.issuer.trim_end_matches('/')))
        .json(&serde_json::json!({ "claims": claims, "header": header }))
        .send()
        .await
        .expect("IdP jwt hook")
        .json()
        .await
        .expect("jwt JSON");
    r["token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn backchannel_logout_from_the_idp_ends_the_session_on_both_instances() {
    let p = Pair::start(BACKCHANNEL_TEST);
    let _logs = p.logs();
    let s = shared();
    let (a, b) = (p.a_port, p.b.port);
    idp_user("dave", &["staff"]).await;
    let browser = Browser::new();
    p.login(&browser, "dave", a, b).await;
    assert_eq!(p.check(&browser, a).await, 200);
    assert_eq!(p.check(&browser, b).await, 200);
    let (_, v) = p.admin("GET", p.a_admin, "?user=dave");
    let sid = v["sessions"][0]["idp_sid"]
        .as_str()
        .unwrap_or_else(|| panic!("the session keeps the IdP sid: {v}"))
        .to_owned();

    // Hostile logout tokens straight to the endpoint: 400 with a JSON error, nothing ended.
    let endpoint = format!("http://127.0.0.1:{a}/oauth2/backchannel_logout");
    let event = serde_json::json!({ "http://schemas.openid.net/event/backchannel-logout": {} });
    let no = serde_json::Value::Null;
    let hostile = [
        (
            "nonce",
            idp_jwt(
                serde_json::json!({ "sid": sid, "events": event, "nonce": "n" }),
                no.clone(),
            )
            .await,
        ),
        (
            "no events",
            idp_jwt(serde_json::json!({ "sid": sid }), no.clone()).await,
        ),
        (
            "wrong audience",
            idp_jwt(
                serde_json::json!({ "sid": sid, "events": event, "aud": "someone-else" }),
                no.clone(),
            )
            .await,
        ),
        (
            "wrong issuer",
            idp_jwt(
                serde_json::json!({ "sid": sid, "events": event, "iss": "https://evil.example" }),
                no.clone(),
            )
            .await,
        ),
        (
            "expired",
            idp_jwt(
                serde_json::json!({ "sid": sid, "events": event, "exp": 1000 }),
                no.clone(),
            )
            .await,
        ),
        (
            "no sid or sub",
            idp_jwt(serde_json::json!({ "events": event }), no.clone()).await,
        ),
        (
            "unknown kid",
            idp_jwt(
                serde_json::json!({ "sid": sid, "events": event }),
                serde_json::json!({ "kid": "nope" }),
            )
            .await,
        ),
        ("alg none", {
            let t = idp_jwt(
                serde_json::json!({ "sid": sid, "events": event }),
                serde_json::json!({ "alg": "none" }),
            )
            .await;
            let mut parts: Vec<&str> = t.split('.').collect();
            parts[2] = "";
            parts.join(".")
        }),
        ("garbage", "not-a-jwt".to_owned()),
        ("real kid, another key's signature", {
            // The IdP's real kid and algorithm, claims it would sign, but
            // signed with a key the IdP does not hold.
            let genuine = idp_jwt(
                serde_json::json!({ "sid": sid, "events": event }),
                no.clone(),
            )
            .await;
            let header = jwt_part(&genuine, 0);
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
            h.kid = Some(
                header["kid"]
                    .as_str()
                    .expect("the IdP's token names its kid")
                    .to_owned(),
            );
            assert_eq!(header["alg"], "RS256", "{header}");
            TestKey::rsa("other", jsonwebtoken::Algorithm::RS256)
                .sign_with(&h, &jwt_part(&genuine, 1))
        }),
        ("payload changed after signing", {
            // A genuine token for another IdP session, its payload then
            // pointed at dave's; header and signature untouched.
            let genuine = idp_jwt(
                serde_json::json!({ "sid": "some-other-idp-session", "events": event }),
                no.clone(),
            )
            .await;
            let mut claims = jwt_part(&genuine, 1);
            claims["sid"] = serde_json::json!(sid);
            let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
            parts[1] = b64(claims.to_string().as_bytes());
            parts.join(".")
        }),
    ];
    for (name, token) in &hostile {
        let (status, body, cache) = post_form(&endpoint, &[("logout_token", token)]).await;
        assert_eq!(status, 400, "{name}: {body}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{name}: {body}"));
        assert!(
            v["error"].is_string() && v["error_description"].is_string(),
            "{name}: {body}"
        );
        assert_eq!(cache.as_deref(), Some("no-store"), "{name}");
    }
    let (status, body, _) = post_form(&endpoint, &[("other", "x")]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_request"), "{body}");
    assert_eq!(
        p.check(&browser, a).await,
        200,
        "hostile tokens ended nothing"
    );
    assert_eq!(
        p.check(&browser, b).await,
        200,
        "hostile tokens ended nothing"
    );

    // The real thing: the IdP ends dave's IdP session and tells the gateway (via A).
    p.lb.route_to(a);
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "{}/__test/backchannel_logout",
            s.idp.issuer.trim_end_matches('/')
        ))
        .json(&serde_json::json!({ "user": "dave" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r["sent"][0]["ok"], true,
        "the gateway accepted the IdP's logout token: {r}"
    );
    assert_eq!(r["sent"][0]["client_id"], CLIENT_ID);
    let took = p.until_denied(&browser, b).await;
    assert!(
        took < Duration::from_secs(1),
        "B honoured it after {took:?}"
    );
    assert_eq!(p.check(&browser, a).await, 302);
    assert!(p
        .a()
        .log()
        .contains("back-channel logout from the identity provider"));

    // A logout token is used once, whichever instance a copy reaches: a
    // replay must not end the sessions opened since.
    let subject = v["sessions"][0]["subject"]
        .as_str()
        .unwrap_or_else(|| panic!("the session keeps the subject: {v}"))
        .to_owned();
    let by_subject = idp_jwt(
        serde_json::json!({ "sub": subject, "events": event, "jti": "logout-once-1" }),
        no.clone(),
    )
    .await;
    let again = Browser::new();
    p.login(&again, "dave", a, b).await;
    let (status, body, _) = post_form(&endpoint, &[("logout_token", &by_subject)]).await;
    assert_eq!(status, 200, "first use: {body}");
    p.until_denied(&again, b).await;
    let fresh = Browser::new();
    p.login(&fresh, "dave", b, a).await;
    let other = format!("http://127.0.0.1:{b}/oauth2/backchannel_logout");
    for url in [&endpoint, &other] {
        let (status, body, _) = post_form(url, &[("logout_token", &by_subject)]).await;
        assert_eq!(status, 400, "a replay to {url}: {body}");
        assert!(body.contains("jti already used"), "{body}");
    }
    assert_eq!(p.check(&fresh, a).await, 200, "the replay ended nothing");
    assert_eq!(p.check(&fresh, b).await, 200, "the replay ended nothing");
}

#[tokio::test]
async fn rp_initiated_logout_continues_at_the_idp_with_the_id_token_hint() {
    let p = Pair::start(RP_LOGOUT_TEST);
    let _logs = p.logs();
    let (a, b) = (p.a_port, p.b.port);
    idp_user("erin", &[]).await;
    let browser = Browser::new();
    p.login(&browser, "erin", a, b).await;
    assert_eq!(p.check(&browser, b).await, 200);
    p.lb.route_to(a);
    let out = browser
        .get(&format!("{}/oauth2/sign_out?rd=%2F", p.base()))
        .await;
    assert_eq!(out.status, 302, "{out}");
    let to = Url::parse(out.location().unwrap()).unwrap();
    let issuer = Url::parse(&shared().idp.issuer).unwrap();
    assert_eq!(
        to.origin(),
        issuer.origin(),
        "sign-out continues at the IdP: {to}"
    );
    let q: std::collections::HashMap<_, _> = to.query_pairs().into_owned().collect();
    assert_eq!(
        q.get("post_logout_redirect_uri").map(String::as_str),
        Some(format!("{}/", p.base()).as_str())
    );
    assert_eq!(q.get("client_id").map(String::as_str), Some(CLIENT_ID));
    assert_eq!(
        q.get("id_token_hint").map(|t| t.split('.').count()),
        Some(3)
    );
    // Ended here and on B at once.
    assert_eq!(p.check(&browser, b).await, 302);
    // The IdP accepts the hint and the registered redirect: it shows its
    // sign-out confirmation (an unknown hint or redirect would be a 400).
    let page = browser.get(to.as_str()).await;
    assert_eq!(page.status, 200, "{page}");
    assert!(page.body.contains("op.logoutForm"), "{page}");
}

/// An IdP whose ID tokens live 6 s (so refreshes come quickly) and its balancer.
fn refresh_stack() -> &'static (Idp, Balancer) {
    static S: OnceLock<(Idp, Balancer)> = OnceLock::new();
    S.get_or_init(|| {
        let lb = Balancer::start();
        let uri = format!("http://app.example.com:{}/oauth2/callback", lb.port);
        let idp = Idp::start_with(
            &[uri],
            serde_json::json!({ "ttl": { "IdToken": 6, "AccessToken": 6 } }),
        );
        (idp, lb)
    })
}

/// A forward-auth check of `path` straight at `port` with the session cookie.
async fn check_direct(client: &reqwest::Client, port: u16, cookie: &str, path: &str) -> u16 {
    client
        .get(format!("http://127.0.0.1:{port}/oauth2/auth"))
        .header("Cookie", format!("_portcullis={cookie}"))
        .header("Accept", "text/html")
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Proto", "http")
        .header("X-Forwarded-Host", "app.example.com")
        .header("X-Forwarded-Uri", path)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test]
async fn refresh_applies_group_changes_once_across_instances_and_idp_rejection_ends_the_session() {
    let (idp, lb) = refresh_stack();
    let redis = Redis::start();
    let (a_admin, b_admin) = (free_port(), free_port());
    let cfg = |admin| {
        config(&idp.issuer, &format!("\"{}\"", redis.url()), admin, false)
            .replace("[session]\n", "[session]\nrefresh = true\n")
            .replace("\"groups\"]", "\"groups\", \"offline_access\"]")
    };
    let a = launch("portcullis-a", &cfg(a_admin), None, a_admin);
    let b = launch("portcullis-b", &cfg(b_admin), None, b_admin);
    let p = Pair {
        redis,
        a_port: a.port,
        a: Some(a),
        b,
        a_admin,
        b_admin,
        a_config: String::new(),
        lb,
    };
    let _logs = LogsOnFailure(vec![&idp.proc, &p.a().proc, &p.b.proc]);
    let (pa, pb) = (p.a_port, p.b.port);
    let browser = Browser::new();
    p.login(&browser, "alice", pa, pb).await;
    let cookie = browser.cookie(&p.base(), "_portcullis").unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert_eq!(check_direct(&client, pa, &cookie, "/admin").await, 200);
    assert_eq!(check_direct(&client, pb, &cookie, "/admin").await, 200);
    let refreshes = || idp.stats()["token"]["refresh_token"].as_u64().unwrap_or(0);
    let before = refreshes();

    // alice leaves "admins" at the IdP; the next refresh must take it away.
    let r = client
        .post(format!(
            "{}/__test/users/alice",
            idp.issuer.trim_end_matches('/')
        ))
        .json(&serde_json::json!({ "groups": ["staff"] }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    // Concurrent checks on both instances until the decision changes.
    let t0 = Instant::now();
    loop {
        let mut tasks = Vec::new();
        for port in [pa, pb] {
            for _ in 0..8 {
                let (client, cookie) = (client.clone(), cookie.clone());
                tasks.push(tokio::spawn(async move {
                    check_direct(&client, port, &cookie, "/admin").await
                }));
            }
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 403),
            "no logout around a refresh: {statuses:?}"
        );
        if statuses.iter().all(|s| *s == 403) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the group change never took effect: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        refreshes() - before,
        1,
        "exactly one refresh at the IdP for both instances"
    );
    assert_eq!(
        check_direct(&client, pa, &cookie, "/").await,
        200,
        "still signed in"
    );
    assert_eq!(
        check_direct(&client, pb, &cookie, "/").await,
        200,
        "still signed in"
    );

    // The IdP revokes the grant: the next refresh is refused and the session ends everywhere.
    let r = client
        .post(format!(
            "{}/__test/backchannel_logout",
            idp.issuer.trim_end_matches('/')
        ))
        .json(&serde_json::json!({ "user": "alice" }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let t0 = Instant::now();
    loop {
        let (sa, sb) = (
            check_direct(&client, pa, &cookie, "/").await,
            check_direct(&client, pb, &cookie, "/").await,
        );
        if sa == 302 && sb == 302 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the session outlived the revoked grant: {sa} {sb}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        p.a().log().contains("refused the refresh") || p.b.log().contains("refused the refresh"),
        "the end is logged"
    );
}

#[tokio::test]
async fn redis_cluster_of_three_masters() {
    let (nodes, list) = cluster_of_three(None).await;
    let mut nodes = nodes.into_iter();
    let first = nodes.next().unwrap();
    let p = Pair::start_with(CLUSTER_TEST, first, Some(list));
    let _rest: Vec<Redis> = nodes.collect();
    let _logs = p.logs();
    let (a, b) = (p.a_port, p.b.port);
    let browsers = [Browser::new(), Browser::new(), Browser::new()];
    for (i, br) in browsers.iter().enumerate() {
        let (start, finish) = if i % 2 == 0 { (a, b) } else { (b, a) };
        p.login(br, "alice", start, finish).await;
        assert_eq!(p.check(br, a).await, 200);
        assert_eq!(p.check(br, b).await, 200);
    }
    let (_, v) = p.admin("GET", p.b_admin, "?user=alice");
    assert_eq!(v["sessions"].as_array().map(Vec::len), Some(3), "{v}");
    p.lb.route_to(a);
    browsers[0]
        .get(&format!("{}/oauth2/sign_out", p.base()))
        .await;
    assert!(p.until_denied(&browsers[0], b).await < Duration::from_secs(1));
    let (status, v) = p.admin("DELETE", p.a_admin, "?user=alice");
    assert_eq!((status, v["revoked"].as_u64()), (200, Some(2)), "{v}");
    assert!(p.until_denied(&browsers[1], b).await < Duration::from_secs(1));
    assert!(p.until_denied(&browsers[2], a).await < Duration::from_secs(1));
}

#[tokio::test]
async fn rediss_cluster_with_a_private_ca() {
    use crate::support::proc::scratch_dir;
    use crate::support::upstreams::TestCa;
    let ca = TestCa::new();
    let (nodes, list) = cluster_of_three(Some(&ca)).await;
    assert!(list.contains("rediss://"), "{list}");
    let dir = scratch_dir("redis-ca");
    let [ca_file, ..] = ca.write_to(&dir);
    let mut nodes = nodes.into_iter();
    let first = nodes.next().unwrap();
    let p = Pair::start_edited(TLS_CLUSTER_TEST, first, Some(list), with_ca(&ca_file));
    let _rest: Vec<Redis> = nodes.collect();
    let _logs = p.logs();
    let (a, b) = (p.a_port, p.b.port);
    let browsers = [Browser::new(), Browser::new()];
    for (i, br) in browsers.iter().enumerate() {
        let (start, finish) = if i % 2 == 0 { (a, b) } else { (b, a) };
        p.login(br, "alice", start, finish).await;
        assert_eq!(p.check(br, a).await, 200);
        assert_eq!(p.check(br, b).await, 200);
    }
    p.lb.route_to(a);
    browsers[0]
        .get(&format!("{}/oauth2/sign_out", p.base()))
        .await;
    assert!(p.until_denied(&browsers[0], b).await < Duration::from_secs(1));
    assert_eq!(p.check(&browsers[1], a).await, 200);
}

/// Three cluster masters (TLS-only with `ca`'s certificate, also between
/// the nodes, when given), all slots assigned; the nodes and their URLs as
/// a TOML list.
async fn cluster_of_three(ca: Option<&crate::support::upstreams::TestCa>) -> (Vec<Redis>, String) {
    let args = [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
    ];
    // The cluster bus gets a free port of its own: its default (the client
    // port + 10000) may belong to another test's process.
    let nodes: Vec<Redis> = (0..3)
        .map(|_| {
            let bus = crate::support::free_port().to_string();
            let args = [&args[..], &["--cluster-port", &bus]].concat();
            match ca {
                Some(ca) => Redis::start_tls(ca, &[&args[..], &["--tls-cluster", "yes"]].concat()),
                None => Redis::start_with(&args),
            }
        })
        .collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|r| format!("127.0.0.1:{}", r.port))
        .collect();
    let mut args = vec!["--cluster", "create"];
    args.extend(addrs.iter().map(String::as_str));
    args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
    let out = nodes[0].cli(&args);
    assert!(out.contains("All 16384 slots covered"), "{out}");
    poll_until(
        Duration::from_secs(20),
        || {
            nodes
                .iter()
                .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        },
        || "cluster never became ok".into(),
    )
    .await;
    let list = format!(
        "[{}]",
        nodes
            .iter()
            .map(|n| format!("\"{}\"", n.url().trim_end_matches("/0")))
            .collect::<Vec<_>>()
            .join(", ")
    );
    (nodes, list)
}

#[tokio::test]
async fn twenty_logins_through_traefik_round_robin_over_two_instances() {
    use crate::support::echo::Echo;
    use crate::support::proxy::{self, Edits, Kind, Ports};
    // The balancer of this test is unused: Traefik alternates between the instances.
    let p = Pair::start(CLUSTER_TEST + 1);
    let _logs = p.logs();
    let app = Echo::start();
    let (a, b) = (p.a_port, p.b.port);
    let one = format!("- url: \"http://127.0.0.1:{a}\"");
    let two = format!("{one}\n          - url: \"http://127.0.0.1:{b}\"");
    let traefik = proxy::start(
        Kind::Traefik,
        &Ports {
            proxy: shared().traefik_port,
            gateway: a,
            app: app.port,
        },
        &Edits {
            traefik_dynamic: vec![(one.as_str(), two.as_str())],
            ..Edits::default()
        },
    );
    let _traefik_logs = LogsOnFailure(vec![&traefik]);
    let base = format!("http://app.example.com:{}", shared().traefik_port);
    let logins = |g: &Gateway| g.log().matches("login succeeded").count();
    for i in 0..20 {
        let browser = Browser::new();
        let page = browser
            .open_as(&format!("{base}/some/page{i}"), "alice")
            .await;
        assert_eq!(page.status, 200, "login {i} through Traefik:\n{page}");
        let seen = page.expect_app();
        assert_eq!(seen.identity().0, "alice", "login {i}");
    }
    // Traefik alternates the gateway's requests (start, callback, start, ...)
    // over the two servers, so every login started on one instance and was
    // completed by the other: all callbacks on one, all starts on the other.
    let (la, lb) = (logins(p.a()), logins(&p.b));
    assert_eq!(la + lb, 20, "every login completed");
    assert!(
        la == 20 || lb == 20,
        "strict alternation puts every callback on the same instance: {la} / {lb}"
    );
}

#[tokio::test]
async fn wrong_redis_password_is_named_in_readyz_and_by_the_cli() {
    let redis = Redis::start_with(&["--requirepass", "right-password"]);
    let admin = free_port();
    let url = format!("\"redis://:wrong-password@127.0.0.1:{}/0\"", redis.port);
    let gw = launch_unready("portcullis-badauth", &url, admin);
    let _logs = LogsOnFailure(vec![&gw.proc]);
    let ready = crate::support::http::raw_get(admin, "127.0.0.1", "/readyz", &[]);
    assert_eq!(ready.status, 503);
    let text = ready.text();
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(
        !text.contains("wrong-password"),
        "the password never shows: {text}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("--config")
        .arg(&gw.config)
        .args(["sessions", "list"])
        .env("PORTCULLIS_OIDC_CLIENT_SECRET", CLIENT_SECRET)
        .env("PORTCULLIS_SESSION_SECRET", SESSION_SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(!err.contains("wrong-password"), "{err}");
}

#[tokio::test]
async fn redis_down_at_start_is_logged_once_and_named_by_readyz() {
    // A port nothing listens on: taken, then released.
    let dead = free_port();
    let admin = free_port();
    let url = format!("\"redis://127.0.0.1:{dead}/0\"");
    let gw = launch_unready("portcullis-redis-down", &url, admin);
    let _logs = LogsOnFailure(vec![&gw.proc]);
    // The start-up checks report it in their own words, with the fix.
    poll_until(
        Duration::from_secs(10),
        || gw.log().contains("start-up checks found problems"),
        || gw.log(),
    )
    .await;
    let log = gw.log();
    assert!(
        log.contains(&format!(
            "redis at redis://127.0.0.1:{dead}/0 is unreachable"
        )),
        "{log}"
    );
    // Let the invalidation subscriber retry a few times (100, 200, 400 ms...).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ready = crate::support::http::raw_get(admin, "127.0.0.1", "/readyz", &[]);
    assert_eq!(ready.status, 503);
    assert!(
        ready.text().contains("session store unreachable"),
        "{}",
        ready.text()
    );
    let log = gw.log();
    let outage_lines = log
        .lines()
        .filter(|l| l.contains("session store unreachable:"))
        .count();
    assert_eq!(
        outage_lines, 1,
        "one line for the outage, however many probes and retries:\n{log}"
    );
}

/// A gateway on `redis_url` that is not expected to become ready.
fn launch_unready(name: &'static str, redis_url: &str, admin_port: u16) -> Gateway {
    Gateway::launch(Launch {
        name,
        config: &config(&shared().idp.issuer, redis_url, admin_port, false),
        admin_port: Some(admin_port),
        wait_ready: false,
        ..Launch::default()
    })
}

/// Polls `done` every 50 ms until it holds; fails with `why()` after `limit`.
async fn poll_until(limit: Duration, mut done: impl FnMut() -> bool, why: impl Fn() -> String) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < limit, "after {limit:?}: {}", why());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A config edit adding `session.redis_ca = PATH`.
fn with_ca(path: &std::path::Path) -> impl Fn(String) -> String {
    let line = format!("redis_ca = {:?}\n", path.display().to_string());
    move |c: String| c.replace("store = \"redis\"\n", &format!("store = \"redis\"\n{line}"))
}

/// A check of `/` straight at `port` with `cookie`: its status.
async fn check_cookie(port: u16, cookie: &str) -> u16 {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    check_direct(&client, port, cookie, "/").await
}

#[tokio::test]
async fn rediss_with_a_private_ca_and_an_acl_user() {
    use crate::support::proc::scratch_dir;
    use crate::support::upstreams::TestCa;
    let ca = TestCa::new();
    let redis = Redis::start_tls(&ca, &[]);
    let out = redis.cli(&[
        "ACL",
        "SETUSER",
        "portcullis",
        "on",
        ">tls-pass-4711",
        "~portcullis:*",
        "&portcullis:*",
        "+@all",
    ]);
    assert_eq!(out.trim(), "OK", "{}", redis.logs());
    let url = format!(
        "\"rediss://portcullis:tls-pass-4711@127.0.0.1:{}/0\"",
        redis.port
    );
    let dir = scratch_dir("redis-ca");
    let [ca_file, ..] = ca.write_to(&dir);
    let p = Pair::start_edited(TLS_TEST, redis, Some(url.clone()), with_ca(&ca_file));
    let _logs = p.logs();
    let (a, b) = (p.a_port, p.b.port);

    // A login over TLS; B reads the session from Redis, never having seen it.
    let browser = Browser::new();
    p.login(&browser, "alice", a, a).await;
    assert_eq!(p.check(&browser, b).await, 200, "B reads it over TLS");
    assert_eq!(p.check(&browser, a).await, 200);
    assert!(p
        .redis
        .cli(&["KEYS", "portcullis:s:*"])
        .contains("portcullis:s:"));
    let cookie = browser.cookie(&p.base(), "_portcullis").unwrap();
    // A login started on B finishes on A.
    let other = Browser::new();
    p.login(&other, "bob", b, a).await;
    assert_eq!(p.check(&other, b).await, 200);
    // Invalidation (pub/sub) works over TLS too: sign-out on B ends it on A.
    p.lb.route_to(b);
    other.get(&format!("{}/oauth2/sign_out", p.base())).await;
    assert!(p.until_denied(&other, a).await < Duration::from_secs(1));

    // A gateway trusting another CA, or only the system roots: never ready,
    // the cause named, no password shown, and a valid session answers 503.
    let wrong = TestCa::new();
    let wrong_dir = scratch_dir("redis-wrong-ca");
    let [wrong_file, ..] = wrong.write_to(&wrong_dir);
    for (name, ca_path) in [
        ("portcullis-wrong-ca", Some(wrong_file.as_path())),
        ("portcullis-no-ca", None),
    ] {
        let admin = free_port();
        let mut cfg = config(&shared().idp.issuer, &url, admin, false);
        if let Some(path) = ca_path {
            cfg = with_ca(path)(cfg);
        }
        let gw = Gateway::launch(Launch {
            name,
            config: &cfg,
            admin_port: Some(admin),
            wait_ready: false,
            ..Launch::default()
        });
        let _gw_logs = LogsOnFailure(vec![&gw.proc]);
        let ready = crate::support::http::raw_get(admin, "127.0.0.1", "/readyz", &[]);
        let text = ready.text();
        assert_eq!(ready.status, 503, "{name}: {text}");
        assert!(text.contains("session store TLS failure"), "{name}: {text}");
        assert!(text.contains("invalid peer certificate"), "{name}: {text}");
        assert!(
            !text.contains("tls-pass-4711"),
            "{name}: the password never shows: {text}"
        );
        for _ in 0..3 {
            assert_eq!(
                check_cookie(gw.port, &cookie).await,
                503,
                "{name}: a session the store cannot confirm is 503, never 200"
            );
        }
        assert!(!gw.log().contains("tls-pass-4711"), "{name}: {}", gw.log());
    }
    assert_eq!(p.check(&browser, a).await, 200, "the right CA still works");
}

#[tokio::test]
async fn rediss_sentinel_with_a_private_ca() {
    use crate::support::proc::scratch_dir;
    use crate::support::upstreams::TestCa;
    let ca = TestCa::new();
    let redis = Redis::start_tls(&ca, &[]);
    // The sentinel speaks TLS and reaches the master over TLS.
    let sentinel = Sentinel::start(&redis);
    let _sentinel_logs = LogsOnFailure(vec![&sentinel.proc]);
    let dir = scratch_dir("redis-ca");
    let [ca_file, ..] = ca.write_to(&dir);
    let url = format!(
        "\"rediss+sentinel://127.0.0.1:{}/mymaster/0\"",
        sentinel.port
    );
    let p = Pair::start_edited(TLS_SENTINEL_TEST, redis, Some(url), with_ca(&ca_file));
    let _logs = p.logs();
    p.round_trip().await;
}

#[tokio::test]
async fn sentinel_failover_is_followed_without_a_restart() {
    // Replicas synchronise at once (not after the default 5 s diskless delay).
    let master = Redis::start_with(&["--repl-diskless-sync-delay", "0"]);
    let replica = Redis::start_replica(&master);
    let sentinel = Sentinel::start_with(&master, 500);
    let _redis_logs = LogsOnFailure(vec![&sentinel.proc]);
    // The sentinel must know the replica (and see it healthy) before the master dies.
    let replicas = || sentinel.cli(&["SENTINEL", "replicas", "mymaster"]);
    poll_until(
        Duration::from_secs(15),
        || {
            let r = replicas();
            r.contains(&replica.port.to_string())
                && r.contains("flags\nslave\n")
                && r.contains("master-link-status\nok\n")
        },
        || format!("the sentinel never saw the replica: {}", replicas()),
    )
    .await;
    let url = format!(
        "\"redis+sentinel://127.0.0.1:{}/mymaster/0\"",
        sentinel.port
    );
    let p = Pair::start_with(FAILOVER_TEST, master, Some(url));
    let _logs = p.logs();
    let (a, b) = (p.a_port, p.b.port);
    let before = Browser::new();
    // Only A has seen this session.
    p.login(&before, "alice", a, a).await;
    assert_eq!(p.check(&before, a).await, 200);
    // Replicated before the master dies.
    p.redis.wait_replicated_to(&replica);

    p.redis.stop();
    let t0 = Instant::now();
    poll_until(
        Duration::from_secs(20),
        || sentinel.master_port() == Some(replica.port),
        || format!("no failover:\n{}", sentinel.proc.logs()),
    )
    .await;
    eprintln!("sentinel promoted the replica after {:?}", t0.elapsed());
    // Both instances subscribe again, to the new master.
    poll_until(
        Duration::from_secs(10),
        || {
            replica
                .cli(&["PUBSUB", "NUMSUB", "portcullis:invalidate"])
                .lines()
                .nth(1)
                == Some("2")
        },
        || "the invalidation subscriptions did not follow the failover".into(),
    )
    .await;

    // The old session: B reads it from the new master; A too.
    let t0 = Instant::now();
    loop {
        let status = p.check(&before, b).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "the session survived the failover");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "B never reached the new master"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(p.check(&before, a).await, 200);
    // A new login, across the instances.
    let after = Browser::new();
    p.login(&after, "bob", b, a).await;
    assert_eq!(p.check(&after, a).await, 200);
    assert_eq!(p.check(&after, b).await, 200);
    assert!(replica
        .cli(&["KEYS", "portcullis:s:*"])
        .contains("portcullis:s:"));
    // Sign-out on A reaches B (cached there) within a second.
    for br in [&before, &after] {
        p.lb.route_to(a);
        let out = br.get(&format!("{}/oauth2/sign_out", p.base())).await;
        assert_eq!(out.status, 302, "{out}");
        assert!(p.until_denied(br, b).await < Duration::from_secs(1));
        assert_eq!(p.check(br, a).await, 302);
    }
}

#[tokio::test]
async fn idle_timeout_slides_in_redis_at_a_bounded_rate_and_ends_idle_sessions_everywhere() {
    let p = Pair::start_edited(IDLE_TEST, Redis::start(), None, |c| {
        c.replace("idle_timeout = \"1h\"", "idle_timeout = \"3s\"")
    });
    let _logs = p.logs();
    let (a, b) = (p.a_port, p.b.port);
    let browser = Browser::new();
    p.login(&browser, "alice", a, b).await;
    assert_eq!(p.check(&browser, a).await, 200);
    assert_eq!(p.check(&browser, b).await, 200);
    // The login's invalidation can reach A while A reads the session for
    // the first check, and A then rightly does not cache that read; once
    // the invalidations have settled, one more check caches it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(p.check(&browser, a).await, 200);
    let keys = p.redis.cli(&["KEYS", "portcullis:s:*"]);
    let key = keys.trim().to_owned();
    assert!(
        key.starts_with("portcullis:s:") && !key.contains('\n'),
        "{keys}"
    );
    let pttl = || -> i64 { p.redis.cli(&["PTTL", &key]).trim().parse().unwrap() };
    let ttl = pttl();
    assert!(
        (1..=3000).contains(&ttl),
        "the key expires with the idle timeout: {ttl}"
    );

    // Used every second on A only (answered from A's cache) for twice the idle timeout.
    p.redis.cli(&["CONFIG", "RESETSTAT"]);
    let mut lowest = i64::MAX;
    for i in 0..6 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let ttl = pttl();
        lowest = lowest.min(ttl);
        assert!(
            ttl > 0,
            "use {i}: the key expired although the session is in use"
        );
        assert_eq!(p.check(&browser, a).await, 200, "use {i}");
    }
    assert!(
        lowest >= 1000,
        "the Redis expiry follows the use (lowest PTTL {lowest} ms)"
    );
    let calls = |cmd: &str| -> u64 {
        p.redis
            .cli(&["INFO", "commandstats"])
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("cmdstat_{cmd}:calls="))
                    .and_then(|v| v.split(',').next())
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    };
    // Expiry writes, whichever command slides the key.
    let writes = || calls("expire") + calls("pexpire");
    assert_eq!(calls("getex"), 0, "every use came from A's cache");
    let n = writes();
    assert!((3..=9).contains(&n), "{n} expiry writes for 6 uses");
    // A burst of checks costs at most one write per touch interval (750 ms).
    // The bound counts the touch intervals of the whole window the counters
    // cover (from the reset to the reading), so a slow burst on a busy
    // machine raises it; one write per use would be 100.
    let t0 = Instant::now();
    p.redis.cli(&["CONFIG", "RESETSTAT"]);
    for _ in 0..100 {
        assert_eq!(p.check(&browser, a).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let n = writes();
    let window = t0.elapsed();
    let bound = window.as_millis() as u64 / 750 + 2;
    assert!(
        n <= bound,
        "{n} expiry writes for 100 uses in a window of {window:?}"
    );
    assert_eq!(calls("getex"), 0, "every use came from A's cache");
    // B, which last saw the session 7 s ago, reads it again (the key lives).
    assert_eq!(
        p.check(&browser, b).await,
        200,
        "still valid past the idle timeout"
    );

    // Left idle: the key ends the idle timeout after the last use, no later.
    // (The use happened between `sent` and `answered`; each PTTL is read
    // between `before` and the next clock reading.)
    let sent = Instant::now();
    assert_eq!(p.check(&browser, a).await, 200);
    let answered = Instant::now();
    loop {
        let before = answered.elapsed();
        let ttl = pttl();
        if ttl == -2 {
            let gone = sent.elapsed();
            assert!(
                gone >= Duration::from_millis(2900),
                "the key ended early, within {gone:?} of the last use"
            );
            break;
        }
        assert!(
            before < Duration::from_millis(3400),
            "the key outlived the idle timeout: alive {before:?} after the last use, PTTL {ttl}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Neither instance was told anything: both still hold it in their local
    // cache, where it has expired too (A's entry at the same moment).
    tokio::time::sleep(Duration::from_millis(3100).saturating_sub(answered.elapsed())).await;
    for port in [a, b] {
        let status = p.check(&browser, port).await;
        assert_eq!(status, 302, "instance {port} refuses the idle session");
    }
    assert_eq!(pttl(), -2, "refusing it did not bring it back");
}

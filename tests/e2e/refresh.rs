//! Session refresh (`session.refresh = true`) against a slow token endpoint
//! at the real IdP: a sign-out that lands while a refresh waits for the IdP
//! stays in force (memory and Redis stores), and the refresh lock is held
//! for as long as the IdP takes, so two instances sharing one Redis never
//! redeem the same refresh token twice, even past the lock's base duration.
//!
//! Each test owns its IdP (the token delay is IdP-wide), whose ID tokens
//! live 6 s so a refresh falls due about 5 s after the login.

use std::time::{Duration, Instant};

use crate::support::browser::Browser;
use crate::support::free_port;
use crate::support::gateway::{app_config, Gateway, Launch};
use crate::support::http::raw_get;
use crate::support::idp::Idp;
use crate::support::proc::LogsOnFailure;
use crate::support::redis::Redis;

/// An IdP with 6 s ID tokens whose client accepts callbacks on `port`.
fn idp(port: u16) -> Idp {
    Idp::start_with(
        &[format!("http://app.example.com:{port}/oauth2/callback")],
        serde_json::json!({ "ttl": { "IdToken": 6, "AccessToken": 6 } }),
    )
}

/// A refreshing gateway config; `store` is extra `[session]` lines.
fn config(issuer: &str, store: &str) -> String {
    app_config(issuer)
        .replace(
            "[session]\n",
            &format!("[session]\nrefresh = true\n{store}"),
        )
        .replace("\"groups\"]", "\"groups\", \"offline_access\"]")
        // Longer than any token delay below: the IdP is slow, not unreachable.
        .replace("http_timeout = \"5s\"", "http_timeout = \"40s\"")
}

fn start(name: &str, config: &str, port: u16) -> Gateway {
    Gateway::launch(Launch {
        name,
        config,
        port: Some(port),
        ..Launch::default()
    })
}

/// Logs alice in on `gw`: the session cookie's value.
async fn login(gw: &Gateway) -> String {
    let cookie = gw.login(&Browser::new(), "alice").await;
    cookie["_portcullis=".len()..].to_owned()
}

/// A forward-auth check for `/` with the session cookie: its status.
fn check(gw: &Gateway, cookie: &str) -> u16 {
    let cookie = format!("_portcullis={cookie}");
    gw.check_app("/", &[("Accept", "text/html"), ("Cookie", &cookie)])
        .status
}

/// Token requests that reached the IdP while it was delaying them.
fn delayed(idp: &Idp) -> u64 {
    idp.stats()["token_delayed"].as_u64().unwrap_or(0)
}

/// Makes every token request at `idp` wait `ms`.
async fn slow_token_endpoint(idp: &Idp, ms: u64) {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/__test/token_delay", idp.port))
        .json(&serde_json::json!({ "ms": ms }))
        .send()
        .await
        .expect("IdP answers");
    assert!(r.status().is_success(), "token delay set: {}", r.status());
}

/// Checks on `gw` until a refresh request waits at the IdP.
async fn until_refresh_started(idp: &Idp, gw: &Gateway, cookie: &str) {
    let t0 = Instant::now();
    while delayed(idp) == 0 {
        assert_eq!(check(gw, cookie), 200, "signed in until the refresh");
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no refresh reached the IdP"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A sign-out during a slow refresh is not undone when the refresh returns.
async fn sign_out_during_refresh_stays(store: &str) {
    let port = free_port();
    let idp = idp(port);
    let gw = start("portcullis", &config(&idp.issuer, store), port);
    let _logs = LogsOnFailure(vec![&idp.proc, &gw.proc]);
    let cookie = login(&gw).await;
    assert_eq!(check(&gw, &cookie), 200);
    slow_token_endpoint(&idp, 3000).await;
    until_refresh_started(&idp, &gw, &cookie).await;

    // The refresh waits at the IdP; the user signs out meanwhile.
    let out = raw_get(
        gw.port,
        &format!("app.example.com:{}", gw.port),
        "/oauth2/sign_out",
        &[("Cookie", &format!("_portcullis={cookie}"))],
    );
    assert_eq!(out.status, 302, "sign-out: {}", out.text());
    assert_eq!(check(&gw, &cookie), 302, "signed out");

    // The IdP answers the refresh; the session stays ended.
    let t0 = Instant::now();
    while !gw.log().contains("during its refresh") && !gw.log().contains("session refreshed") {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the refresh never finished"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..5 {
        assert_eq!(
            check(&gw, &cookie),
            302,
            "the refresh brought the signed-out session back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gw.log()
            .contains("session ended or changed during its refresh"),
        "the dropped refresh is logged"
    );
}

#[tokio::test]
async fn sign_out_during_a_slow_refresh_stays_in_force_memory_store() {
    sign_out_during_refresh_stays("").await;
}

#[tokio::test]
async fn sign_out_during_a_slow_refresh_stays_in_force_redis_store() {
    let redis = Redis::start();
    sign_out_during_refresh_stays(&format!(
        "store = \"redis\"\nredis_url = \"{}\"\n",
        redis.url()
    ))
    .await;
}

/// The IdP takes longer than the refresh lock's base duration (15 s): the
/// lock is extended meanwhile, so neither instance asks the IdP again.
#[tokio::test]
async fn the_refresh_lock_outlasts_a_slow_idp_across_instances() {
    let redis = Redis::start();
    let (pa, pb) = (free_port(), free_port());
    let idp = idp(pa);
    let cfg = config(
        &idp.issuer,
        &format!("store = \"redis\"\nredis_url = \"{}\"\n", redis.url()),
    );
    let a = start("portcullis-a", &cfg, pa);
    let b = start("portcullis-b", &cfg, pb);
    let _logs = LogsOnFailure(vec![&idp.proc, &a.proc, &b.proc]);
    let cookie = login(&a).await;
    assert_eq!(check(&b, &cookie), 200, "shared through Redis");
    slow_token_endpoint(&idp, 21_000).await;
    until_refresh_started(&idp, &a, &cookie).await;
    let started = Instant::now();

    // Both instances keep seeing the due session, past the 15 s mark.
    while started.elapsed() < Duration::from_secs(19) {
        assert_eq!(check(&a, &cookie), 200);
        assert_eq!(check(&b, &cookie), 200);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        delayed(&idp),
        1,
        "a second refresh of the same token reached the IdP"
    );
    // Later refreshes (of the renewed tokens) are not counted.
    slow_token_endpoint(&idp, 0).await;
    // The one refresh completes and is kept.
    let t0 = Instant::now();
    while !a.log().contains("session refreshed") {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the refresh never finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(check(&a, &cookie), 200);
    assert_eq!(check(&b, &cookie), 200);
    assert_eq!(delayed(&idp), 1, "one redemption in all");
}

//! Health and login start under load: a burst of anonymous `/readyz` and
//! `/oauth2/start` requests, counted where they would hurt — new
//! connections at a real Redis and fetches at the real test IdP.

use std::time::Instant;

use crate::support::browser::Browser;
use crate::support::free_port;
use crate::support::gateway::{direct_config, Gateway, Launch, APP_RULES};
use crate::support::http::raw_get;
use crate::support::idp::Idp;
use crate::support::proc::LogsOnFailure;
use crate::support::redis::Redis;

const ACCESS: &str = r#"allowed_redirect_domains = ["app.example.com"]"#;

/// Connections Redis has accepted so far (`INFO stats`).
fn connections_received(redis: &Redis) -> u64 {
    let info = redis.cli(&["INFO", "stats"]);
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no total_connections_received in {info}"))
}

/// A gateway on the public listener only (no `admin_listen`), sessions in `redis`.
fn gateway(idp: &Idp, redis: &Redis, port: u16) -> Gateway {
    let config = direct_config(&idp.issuer, ACCESS, APP_RULES).replace(
        "[session]\ncookie_secure = false\n",
        &format!(
            "[session]\ncookie_secure = false\nstore = \"redis\"\nredis_url = \"{}\"\n",
            redis.url()
        ),
    );
    Gateway::launch(Launch {
        name: "portcullis-health",
        config: &config,
        port: Some(port),
        ..Launch::default()
    })
}

#[tokio::test]
async fn a_readyz_burst_opens_no_redis_connections() {
    let port = free_port();
    let idp = Idp::start(&[format!("http://app.example.com:{port}/oauth2/callback")]);
    let redis = Redis::start();
    let gw = gateway(&idp, &redis, port);
    let _logs = LogsOnFailure(vec![&idp.proc, &gw.proc]);
    let host = format!("127.0.0.1:{port}");
    let before = connections_received(&redis);
    let started = Instant::now();
    for _ in 0..200 {
        let r = raw_get(port, &host, "/readyz", &[]);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let elapsed = started.elapsed();
    // The readiness of the store is one PING a second on the connection the
    // gateway keeps; the one extra is the counting `redis-cli` itself.
    let opened = connections_received(&redis) - before;
    assert!(
        opened <= 2,
        "{opened} Redis connections for 200 /readyz in {elapsed:?}"
    );
}

#[tokio::test]
async fn a_start_burst_fetches_no_idp_metadata() {
    let port = free_port();
    let idp = Idp::start(&[format!("http://app.example.com:{port}/oauth2/callback")]);
    let config = direct_config(&idp.issuer, ACCESS, APP_RULES);
    let gw = Gateway::launch(Launch {
        name: "portcullis-health",
        config: &config,
        port: Some(port),
        ..Launch::default()
    });
    let _logs = LogsOnFailure(vec![&idp.proc, &gw.proc]);
    // Ready means the metadata and keys are loaded; what the start-up cost is the baseline.
    let before = idp.metadata_fetches();
    let url = format!("http://app.example.com:{port}/oauth2/start?rd=%2Fsome%2Fpage");
    let started = Instant::now();
    // 10 waves of 20 concurrent starts: a flood, not one instant, so fetches
    // shared only by requests waiting at the same moment would still show.
    let authorize = format!("{}/auth?", idp.issuer);
    for _ in 0..10 {
        let wave: Vec<_> = (0..20)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { Browser::new().get(&url).await })
            })
            .collect();
        for page in wave {
            let page = page.await.unwrap();
            assert_eq!(page.status, 302, "{page}");
            let location = page.location().unwrap_or_default();
            assert!(
                location.starts_with(&authorize),
                "redirect to {location:?}, not to the IdP"
            );
        }
    }
    let elapsed = started.elapsed();
    let after = idp.metadata_fetches();
    let fetched = (after.discovery - before.discovery) + (after.jwks - before.jwks);
    assert!(
        fetched <= 2,
        "200 login starts in {elapsed:?} made the IdP serve its metadata {fetched} times: {before:?} -> {after:?}"
    );
}

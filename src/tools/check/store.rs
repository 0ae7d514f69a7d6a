//! `session store`: whether the configured store answers from here.
//!
//! The memory store always does (and the line says what it cannot do).
//! Redis is pinged through the same client the gateway uses, and a failure
//! names its class — unreachable, credentials refused, or TLS — with the
//! fix. The URL is shown without its credentials.

use std::time::{Duration, Instant};

use super::net::ms;
use super::Finding;
use crate::auth::session::redis::RedisStore;
use crate::auth::session::StoreError;
use crate::config::{Config, StoreKind};

const TLS_FIX: &str = "use rediss:// only for a TLS port (redis:// otherwise), and give Redis a certificate this host trusts for that name";

/// Longest the store probe may take.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// Probes the configured session store.
pub async fn probe(config: &Config) -> Finding {
    const NAME: &str = "session store";
    match config.session.store {
        StoreKind::Memory => Finding::ok(
            NAME,
            "memory: sessions live in this process only (lost on restart, not shared between instances)",
        ),
        StoreKind::Redis => {
            let at: Vec<String> = config
                .session
                .redis_urls
                .iter()
                .map(|u| without_credentials(u.expose()))
                .collect();
            let at = at.join(", ");
            let store = match RedisStore::new(&config.session) {
                Ok(s) => s,
                Err(e) => return failure(NAME, &at, &e),
            };
            let started = Instant::now();
            match tokio::time::timeout(STORE_TIMEOUT, store.probe()).await {
                Ok(Ok(())) => Finding::ok(
                    NAME,
                    format!("redis at {at} answered PING in {}", ms(started)),
                ),
                Ok(Err(e)) => failure(NAME, &at, &e),
                Err(_) => Finding::fail(
                    NAME,
                    format!("redis at {at}: no answer within {} s", STORE_TIMEOUT.as_secs()),
                    "check that Redis runs and that nothing between here and it drops the traffic",
                ),
            }
        }
    }
}

fn failure(name: &str, at: &str, e: &StoreError) -> Finding {
    let cause = |r: &redis::RedisError| crate::base::error::error_chain(r);
    match e {
        StoreError::AuthFailed(r) => Finding::fail(
            name,
            format!("redis at {at} refused the credentials: {}", cause(r)),
            "put a user and password Redis accepts into session.redis_url (redis://USER:PASSWORD@HOST:PORT/DB; just :PASSWORD@ for requirepass)",
        ),
        StoreError::Tls(r) => Finding::fail(
            name,
            format!("TLS to redis at {at} failed: {}", cause(r)),
            TLS_FIX,
        ),
        // A plain-Redis port keeps quiet on a TLS ClientHello.
        StoreError::Unavailable(r) if at.starts_with("rediss") && cause(r).contains("timed out") => {
            Finding::fail(
                name,
                format!("redis at {at} did not answer the TLS handshake ({}); the port may speak plain Redis", cause(r)),
                TLS_FIX,
            )
        }
        StoreError::Unavailable(r) => Finding::fail(
            name,
            format!("redis at {at} is unreachable: {}", cause(r)),
            "start Redis, or correct the host and port in session.redis_url; it must be reachable from where portcullis runs (firewall, container network)",
        ),
        StoreError::Config(d) => bad_url(name, d),
        StoreError::BadUrl(r) => bad_url(name, &cause(r)),
    }
}

/// The finding for a `session.redis_url` that cannot be used, and why.
fn bad_url(name: &str, why: &str) -> Finding {
    Finding::fail(
        name,
        format!("session.redis_url: {why}"),
        "write it as redis://[USER:PASSWORD@]HOST:PORT/DB (or rediss://, redis+sentinel://)",
    )
}

/// `scheme://host:port/path` without any `user:password@`.
pub fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(unparseable URL)".into();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{hosts}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_shown() {
        assert_eq!(
            without_credentials("redis://:s3cret@10.0.0.1:6379/0"),
            "redis://10.0.0.1:6379/0"
        );
        assert_eq!(
            without_credentials("redis+sentinel://u:p%40ss@h1:26379,h2:26380/mymaster"),
            "redis+sentinel://h1:26379,h2:26380/mymaster"
        );
        assert_eq!(without_credentials("rediss://h"), "rediss://h");
        assert_eq!(without_credentials("nonsense"), "(unparseable URL)");
    }
}

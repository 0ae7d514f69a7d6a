//! `session store`: whether the configured store answers from here.
//!
//! The memory store always does (and the line says what it cannot do);
//! Redis is pinged over a fresh connection, and a failure names its class:
//! unreachable, refused credentials, TLS, or unusable settings.

use super::Finding;
use crate::config::{Config, StoreKind};
use crate::session::redis::RedisStore;
use crate::session::{SessionStore, StoreError};

/// Probes the configured session store.
pub async fn probe(config: &Config) -> Finding {
    const CHECK: &str = "session store";
    match config.session.store {
        StoreKind::Memory => Finding::ok(
            CHECK,
            "memory: sessions live in this process only (lost on restart, not shared between instances)",
        ),
        StoreKind::Redis => {
            let result = match RedisStore::new(&config.session) {
                Ok(store) => store.ping().await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => Finding::ok(CHECK, "redis: answers PING"),
                Err(e @ StoreError::Unavailable(_)) => Finding::fail(
                    CHECK,
                    e.to_string(),
                    "check the host and port in session.redis_url and that Redis (or the sentinels) accept connections from this host",
                ),
                Err(e @ StoreError::AuthFailed(_)) => Finding::fail(
                    CHECK,
                    e.to_string(),
                    "put the right ACL user and password in session.redis_url (redis://USER:PASSWORD@host:port/0, URL-encoded)",
                ),
                Err(e @ StoreError::Tls(_)) => Finding::fail(
                    CHECK,
                    e.to_string(),
                    "use rediss:// only for a TLS port, and make the server certificate trusted here (system store or SSL_CERT_FILE) and valid for the host name",
                ),
                Err(e @ StoreError::Config(_)) => Finding::fail(
                    CHECK,
                    e.to_string(),
                    "fix session.redis_url (see the Redis section of the README)",
                ),
            }
        }
    }
}

//! HTTP Basic authentication, for clients that can neither sign in with a
//! browser nor present a bearer token (WebDAV, mobile apps, scrapers, old
//! command-line tools), on rules with `basic_auth = true`.
//!
//! Users and their password hashes come from `access.htpasswd_file`, their
//! groups from `access.htpasswd_groups_file` ([`crate::config::htpasswd`] reads both at
//! config load, so SIGHUP reloads them with the rest of the config). A user
//! becomes an [`Identity`](crate::base::identity::Identity) with no e-mail address, judged by rules like any
//! other.
//!
//! Hashes are slow on purpose, so [`BasicAuth`] keeps what it verified: the
//! key is an HMAC (with a random per-process key) of `user:password`, the
//! entry lives [`Limits::cache_ttl`] (60 s), and it only counts while the
//! user's hash in the current file is the one it was verified against. A
//! client that sends the header on every request costs one hash check per
//! minute. Failed attempts are counted per user name and per client address;
//! past [`Limits::failures`] in [`Limits::window`] (5 a minute) the request
//! is refused with a retry delay and no hash is run. Every failure is logged
//! (never the password). Hashes are checked on the blocking pool, never on an
//! async worker.
//!
//! Called by `pipeline` when a rule with `basic_auth` sees `Authorization: Basic`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use http::header::{self, HeaderMap, HeaderValue};
use moka::sync::Cache;
use sha2::Sha256;

use crate::config::htpasswd::{User, Users};

/// `WWW-Authenticate` challenge of rules with `basic_auth`.
pub const CHALLENGE: &str = "Basic realm=\"portcullis\", charset=\"UTF-8\"";

/// Longest `Authorization: Basic` value read, in bytes; longer is malformed.
const MAX_HEADER_BYTES: usize = 4096;

/// How hard Basic credentials are limited; [`Limits::default`] in production.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failed attempts allowed per user name, and per client address, in a window.
    pub failures: u32,
    /// The window the failures are counted in.
    pub window: Duration,
    /// How long verified credentials are trusted without a hash check.
    pub cache_ttl: Duration,
}

/// Why Basic credentials were not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BasicError {
    /// The header is not `Basic` + base64 of `user:password` with a UTF-8 user name.
    #[error("malformed Basic credentials")]
    Malformed,
    /// No such user in the htpasswd file.
    #[error("unknown user")]
    UnknownUser,
    /// The password does not match the user's hash.
    #[error("wrong password")]
    WrongPassword,
    /// Too many failed attempts for this user name or client address;
    /// refused without checking the password.
    #[error("too many failed attempts for this {by}")]
    RateLimited {
        /// `user` or `address`.
        by: &'static str,
        /// Seconds until attempts are accepted again (at least 1).
        retry_after_secs: u64,
    },
}

/// Verified-credential cache and failure counters: long-lived (they outlast
/// config reloads), one per process.
pub struct BasicAuth {
    key: [u8; 32],
    limits: Limits,
    verified: Cache<[u8; 32], Arc<User>>,
    by_user: Cache<Box<str>, Arc<Window>>,
    by_addr: Cache<Option<IpAddr>, Arc<Window>>,
    hash_checks: AtomicU64,
}

/// Failures counted since `started`.
struct Window {
    started: Instant,
    failures: AtomicU32,
}

/// `Authorization: Basic` taken apart.
struct Credentials {
    user: String,
    password: Vec<u8>,
}

// === impl Limits ===

impl Default for Limits {
    fn default() -> Self {
        Limits {
            failures: 5,
            window: Duration::from_secs(60),
            cache_ttl: Duration::from_secs(60),
        }
    }
}

// === impl BasicError ===

impl BasicError {
    /// The `result` label of `portcullis_basic_auth_total`.
    pub fn label(&self) -> &'static str {
        match self {
            BasicError::Malformed => "malformed",
            BasicError::UnknownUser => "unknown_user",
            BasicError::WrongPassword => "wrong_password",
            BasicError::RateLimited { .. } => "rate_limited",
        }
    }
}

// === impl BasicAuth ===

impl BasicAuth {
    /// An empty cache with a fresh random key.
    pub fn new(limits: Limits) -> BasicAuth {
        BasicAuth {
            key: rand::random(),
            limits,
            verified: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(limits.cache_ttl)
                .build(),
            by_user: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(limits.window)
                .build(),
            by_addr: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(limits.window)
                .build(),
            hash_checks: AtomicU64::new(0),
        }
    }

    /// Password hashes checked so far (cache hits and rate-limited
    /// attempts run none).
    pub fn hash_checks(&self) -> u64 {
        self.hash_checks.load(Ordering::Relaxed)
    }

    /// Checks `Authorization: Basic` (`value`) against `users`. `client` is
    /// the client address (`None` when unknown: those share one counter);
    /// `rule` names the rule in the log line of a failure.
    pub async fn authenticate(
        &self,
        users: &Users,
        value: &HeaderValue,
        client: Option<IpAddr>,
        rule: &str,
    ) -> Result<Arc<User>, BasicError> {
        let result = self.check(users, value, client).await;
        let m = crate::base::metrics::global();
        match &result {
            Ok(_) => {}
            Err(e @ BasicError::RateLimited { by, .. }) => {
                m.basic_auth(e.label());
                tracing::debug!(rule.name = rule, client.addr = ?client, limited_by = by, "basic auth refused: too many failed attempts");
            }
            Err(e) => {
                m.basic_auth(e.label());
                let user = decode(value).map(|c| c.user).unwrap_or_default();
                tracing::info!(rule.name = rule, user = ?user, client.addr = ?client, reason = %e, "basic auth failed");
            }
        }
        result
    }

    async fn check(
        &self,
        users: &Users,
        value: &HeaderValue,
        client: Option<IpAddr>,
    ) -> Result<Arc<User>, BasicError> {
        let m = crate::base::metrics::global();
        let creds = decode(value).ok_or(BasicError::Malformed)?;
        let key = self.cache_key(&creds);
        if let Some(cached) = self.verified.get(&key) {
            match users.get(&creds.user) {
                Some(current) if current.hash == cached.hash => {
                    m.basic_auth("cached");
                    return Ok(current.clone());
                }
                _ => self.verified.invalidate(&key),
            }
        }
        self.limited(&creds.user, client)?;
        let user = users.get(&creds.user).cloned();
        let Some(hash) = user
            .as_ref()
            .map(|u| u.hash.clone())
            .or_else(|| users.decoy())
        else {
            self.failed(&creds.user, client);
            return Err(BasicError::UnknownUser);
        };
        self.hash_checks.fetch_add(1, Ordering::Relaxed);
        m.basic_auth_hash_checks.inc();
        let password = creds.password.clone();
        let matched = tokio::task::spawn_blocking(move || hash.verify(&password))
            .await
            .unwrap_or(false);
        match user {
            Some(user) if matched => {
                m.basic_auth("verified");
                self.verified.insert(key, user.clone());
                Ok(user)
            }
            Some(_) => {
                self.failed(&creds.user, client);
                Err(BasicError::WrongPassword)
            }
            None => {
                self.failed(&creds.user, client);
                Err(BasicError::UnknownUser)
            }
        }
    }

    fn cache_key(&self, c: &Credentials) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        mac.update(c.user.as_bytes());
        mac.update(b":");
        mac.update(&c.password);
        mac.finalize().into_bytes().into()
    }

    /// Err when the user name or the client address is over its limit.
    fn limited(&self, user: &str, client: Option<IpAddr>) -> Result<(), BasicError> {
        let over = |w: Option<Arc<Window>>| w.and_then(|w| w.over(&self.limits));
        if let Some(retry_after_secs) = over(self.by_user.get(user)) {
            return Err(BasicError::RateLimited {
                by: "user",
                retry_after_secs,
            });
        }
        if let Some(retry_after_secs) = over(self.by_addr.get(&client)) {
            return Err(BasicError::RateLimited {
                by: "address",
                retry_after_secs,
            });
        }
        Ok(())
    }

    /// Counts a failure for the user name and the client address; logs once
    /// when either reaches its limit.
    fn failed(&self, user: &str, client: Option<IpAddr>) {
        let limits = &self.limits;
        let user_window = count(&self.by_user, user.into(), limits);
        let addr_window = count(&self.by_addr, client, limits);
        if user_window == limits.failures || addr_window == limits.failures {
            tracing::warn!(user = ?user, client.addr = ?client, failures = limits.failures, window_secs = limits.window.as_secs(), "basic auth: too many failed attempts; further attempts are refused until the window ends");
        }
    }
}

/// Adds a failure to `key`'s window (a new window when the old one ended);
/// the failures in the window now.
fn count<K>(cache: &Cache<K, Arc<Window>>, key: K, limits: &Limits) -> u32
where
    K: std::hash::Hash + Eq + Send + Sync + Clone + 'static,
{
    let fresh = || {
        Arc::new(Window {
            started: Instant::now(),
            failures: AtomicU32::new(0),
        })
    };
    let mut w = cache.get_with(key.clone(), fresh);
    if w.started.elapsed() >= limits.window {
        w = fresh();
        cache.insert(key, w.clone());
    }
    w.failures.fetch_add(1, Ordering::Relaxed).saturating_add(1)
}

// === impl Window ===

impl Window {
    /// Seconds until the window ends, when it holds too many failures.
    fn over(&self, limits: &Limits) -> Option<u64> {
        let elapsed = self.started.elapsed();
        if elapsed >= limits.window || self.failures.load(Ordering::Relaxed) < limits.failures {
            return None;
        }
        let left = limits.window - elapsed;
        Some(left.as_secs() + u64::from(left.subsec_nanos() > 0))
    }
}

/// The `Authorization` header when its scheme is `Basic`.
pub fn credentials(headers: &HeaderMap) -> Option<&HeaderValue> {
    let value = headers.get(header::AUTHORIZATION)?;
    let b = value.as_bytes();
    (b.len() > 6 && b[..6].eq_ignore_ascii_case(b"basic ")).then_some(value)
}

/// `Basic base64(user:password)`: a UTF-8 user name without `:`, any password.
fn decode(value: &HeaderValue) -> Option<Credentials> {
    let b = value.as_bytes();
    if b.len() > MAX_HEADER_BYTES || b.len() <= 6 || !b[..6].eq_ignore_ascii_case(b"basic ") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b[6..].trim_ascii())
        .ok()?;
    let colon = decoded.iter().position(|&c| c == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?;
    if user.is_empty() {
        return None;
    }
    Some(Credentials {
        user: user.to_owned(),
        password: decoded[colon + 1..].to_vec(),
    })
}

#[cfg(test)]
mod tests;

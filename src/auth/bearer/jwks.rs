//! One issuer's signing keys: fetched from its `jwks_url` (or the
//! `jwks_uri` of its discovery document), kept in an [`ArcSwap`] so the
//! request path reads them without locks, reloaded in the background as the
//! response's `Cache-Control: max-age` says (clamped to sane bounds), and
//! refetched when a token names an unknown `kid` — at most once per
//! [`REFETCH_MIN_INTERVAL`], single-flight, so a flood of forged `kid`s costs
//! the IdP one request.
//!
//! Only asymmetric keys are kept (`RSA`, `EC` P-256/P-384, `OKP` Ed25519);
//! `oct` keys and keys whose `use` is not `sig` are dropped when the set is
//! parsed, so no symmetric secret can ever verify a token.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

/// Fewest time between two fetches triggered by unknown `kid`s.
pub const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Background reload when the response has no usable `max-age`.
const DEFAULT_RELOAD: Duration = Duration::from_secs(3600);
/// Bounds applied to `max-age`.
const MIN_RELOAD: Duration = Duration::from_secs(60);
const MAX_RELOAD: Duration = Duration::from_secs(24 * 3600);
/// Largest JWKS (or discovery) document accepted.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Why keys could not be loaded. Each message names the URL and the cause.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The JWKS or discovery URL did not answer: no connection, a timeout,
    /// or a transfer that broke off.
    #[error("cannot fetch {url}: {}", crate::base::error::error_chain(.source))]
    Unreachable {
        /// The URL asked.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The URL answered with an error status.
    #[error("cannot fetch {url}: status {status}")]
    Status {
        /// The URL asked.
        url: String,
        /// The status received.
        status: http::StatusCode,
    },
    /// The document is larger than [`MAX_DOCUMENT_BYTES`].
    #[error("cannot fetch {url}: document too large")]
    TooLarge {
        /// The URL asked.
        url: String,
    },
    /// The issuer does not make a discovery URL (it is not a URL).
    #[error("unusable document from {url}: {source}")]
    IssuerUrl {
        /// The discovery URL built from the issuer.
        url: String,
        /// Why it does not parse.
        #[source]
        source: url::ParseError,
    },
    /// The discovery document's `jwks_uri` is not a URL.
    #[error("unusable document from {url}: jwks_uri: {source}")]
    JwksUri {
        /// The discovery URL.
        url: String,
        /// Why `jwks_uri` does not parse.
        #[source]
        source: url::ParseError,
    },
    /// The document is not the JSON expected: a JWKS, or a discovery document
    /// with `issuer` and `jwks_uri`.
    #[error("unusable document from {url}: not a {what}: {source}")]
    NotJson {
        /// The URL asked.
        url: String,
        /// `JWKS` or `discovery document`.
        what: &'static str,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The discovery document names another issuer.
    #[error("unusable document from {url}: its issuer {found:?} differs from the configured {configured:?}")]
    IssuerMismatch {
        /// The discovery URL.
        url: String,
        /// The document's `issuer`.
        found: String,
        /// The issuer configured.
        configured: String,
    },
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A configured `jwks_url`.
    Url(Url),
    /// The `jwks_uri` of `<issuer>/.well-known/openid-configuration`.
    Discover(String),
}

/// The key family a JWK belongs to; an algorithm must match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `kty: RSA` (RS*, PS*).
    Rsa,
    /// `kty: EC, crv: P-256` (ES256).
    P256,
    /// `kty: EC, crv: P-384` (ES384).
    P384,
    /// `kty: OKP, crv: Ed25519` (EdDSA).
    Ed25519,
}

/// One usable verification key.
pub struct Key {
    /// `kid`, when the JWK has one.
    pub kid: Option<String>,
    /// Its family.
    pub kind: KeyKind,
    /// `alg` of the JWK, when given: the only algorithm it may verify.
    pub alg: Option<String>,
    /// The key material.
    pub decoding: DecodingKey,
}

/// The keys of one fetch.
#[derive(Default)]
pub struct KeySet {
    /// Usable keys, in document order.
    pub keys: Vec<Key>,
}

/// Readiness of one issuer's keys, for `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Never fetched yet.
    Pending,
    /// Keys loaded (the count); the latest fetch may have failed since.
    Loaded(usize),
    /// Never loaded; the last attempt's error.
    Failed(String),
}

/// One issuer's key cache.
pub struct Jwks {
    source: Source,
    http: reqwest::Client,
    keys: ArcSwap<KeySet>,
    /// Set once the first fetch succeeded; then the status is `Loaded`.
    status: Mutex<Status>,
    /// The discovered `jwks_uri`.
    discovered: Mutex<Option<Url>>,
    /// Serialises fetches (single-flight).
    fetch_lock: tokio::sync::Mutex<()>,
    epoch: Instant,
    /// Milliseconds after `epoch` of the last fetch attempt, plus one; 0 = never.
    last_fetch: AtomicU64,
    /// Bumped whenever a fetch drops a key that was served before: cached
    /// verifications made with an older generation are redone.
    generation: AtomicU64,
    /// Documents fetched successfully.
    fetches: AtomicU64,
    min_refetch: Duration,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize)]
struct RawDiscovery {
    issuer: String,
    jwks_uri: String,
}

// === impl KeyKind ===

impl KeyKind {
    /// True when `alg` (an allow-listed JWS algorithm) is made for this key type.
    pub fn fits(self, alg: jsonwebtoken::Algorithm) -> bool {
        use jsonwebtoken::Algorithm as A;
        matches!(
            (self, alg),
            (
                KeyKind::Rsa,
                A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512
            ) | (KeyKind::P256, A::ES256)
                | (KeyKind::P384, A::ES384)
                | (KeyKind::Ed25519, A::EdDSA)
        )
    }
}

// === impl KeySet ===

impl KeySet {
    /// Parses a JWKS document, keeping the keys that can verify tokens.
    /// Unusable entries (symmetric, encryption-only, unknown curves,
    /// malformed) are skipped, never an error: one odd key must not hide the rest.
    pub fn parse(body: &[u8]) -> Result<KeySet, serde_json::Error> {
        let raw: RawJwks = serde_json::from_slice(body)?;
        let keys = raw
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<RawJwk>(v).ok())
            .filter_map(Key::from_raw)
            .collect();
        Ok(KeySet { keys })
    }

    /// The key named `kid`; without a `kid`, the only key of the algorithm's type.
    pub fn find(&self, kid: Option<&str>, alg: jsonwebtoken::Algorithm) -> Option<&Key> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.kind.fits(alg));
                let first = fitting.next()?;
                fitting.next().is_none().then_some(first)
            }
        }
    }

    fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

// === impl Key ===

impl Key {
    fn from_raw(raw: RawJwk) -> Option<Key> {
        if raw.use_.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        let (kind, decoding) = match (raw.kty.as_str(), raw.crv.as_deref()) {
            ("RSA", _) => (
                KeyKind::Rsa,
                DecodingKey::from_rsa_components(raw.n.as_deref()?, raw.e.as_deref()?).ok()?,
            ),
            ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                let (x, y) = (raw.x.as_deref()?, raw.y.as_deref()?);
                let kind = if crv == "P-256" {
                    KeyKind::P256
                } else {
                    KeyKind::P384
                };
                (kind, DecodingKey::from_ec_components(x, y).ok()?)
            }
            ("OKP", Some("Ed25519")) => (
                KeyKind::Ed25519,
                DecodingKey::from_ed_components(raw.x.as_deref()?).ok()?,
            ),
            _ => return None,
        };
        Some(Key {
            kid: raw.kid,
            kind,
            alg: raw.alg,
            decoding,
        })
    }
}

// === impl Jwks ===

impl Jwks {
    /// An empty cache; nothing is fetched until [`Jwks::fetch`].
    pub fn new(source: Source, http: reqwest::Client) -> Jwks {
        Jwks {
            source,
            http,
            keys: ArcSwap::from_pointee(KeySet::default()),
            status: Mutex::new(Status::Pending),
            discovered: Mutex::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
            epoch: Instant::now(),
            last_fetch: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            min_refetch: REFETCH_MIN_INTERVAL,
        }
    }

    /// Shortens the unknown-`kid` refetch interval (tests).
    #[cfg(test)]
    pub fn with_min_refetch(mut self, d: Duration) -> Jwks {
        self.min_refetch = d;
        self
    }

    /// The current keys (lock-free).
    pub fn keys(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    /// The current key generation; see [`Jwks::fetch`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Successful fetches so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// For `/readyz`.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .map(|s| s.clone())
            .unwrap_or(Status::Pending)
    }

    /// Fetches the keys now (waiting for a fetch already under way) and
    /// returns how long they may be kept.
    pub async fn fetch(&self) -> Result<Duration, JwksError> {
        let _flight = self.fetch_lock.lock().await;
        self.fetch_locked().await
    }

    /// Refetches because a token named `kid`, unknown here: unless a fetch
    /// happened within the last [`REFETCH_MIN_INTERVAL`] (or one under way
    /// brings the key), fetch once. Returns true when `kid` is now known.
    pub async fn refetch_for(&self, kid: &str) -> bool {
        // Waits for a fetch under way (the first one, at start-up, say):
        // it may bring the key, and the rate limit below would otherwise
        // refuse the token for want of keys the fetch is about to bring.
        let _flight = self.fetch_lock.lock().await;
        if self.keys.load().has_kid(kid) {
            return true;
        }
        if !self.may_refetch() {
            return false;
        }
        if let Err(e) = self.fetch_locked().await {
            tracing::warn!(error = %e, "refetching signing keys for an unknown kid failed");
        }
        self.keys.load().has_kid(kid)
    }

    fn may_refetch(&self) -> bool {
        match self.last_fetch.load(Ordering::Acquire) {
            0 => true,
            last => {
                let since = self.millis().saturating_sub(last - 1);
                since >= self.min_refetch.as_millis() as u64
            }
        }
    }

    fn millis(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    async fn fetch_locked(&self) -> Result<Duration, JwksError> {
        self.last_fetch.store(self.millis() + 1, Ordering::Release);
        let result = self.download().await;
        let issuer = match &self.source {
            Source::Url(u) => u.as_str(),
            Source::Discover(issuer) => issuer.as_str(),
        };
        crate::base::metrics::global().jwks_fetch(issuer, result.is_ok());
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok((set, max_age)) => {
                let old = self.keys.load();
                let dropped = old
                    .keys
                    .iter()
                    .filter_map(|k| k.kid.as_deref())
                    .any(|kid| !set.has_kid(kid));
                if dropped || old.keys.len() > set.keys.len() {
                    self.generation.fetch_add(1, Ordering::AcqRel);
                }
                *status = Status::Loaded(set.keys.len());
                self.keys.store(Arc::new(set));
                self.fetches.fetch_add(1, Ordering::Relaxed);
                Ok(max_age)
            }
            Err(e) => {
                if !matches!(*status, Status::Loaded(_)) {
                    *status = Status::Failed(e.to_string());
                }
                Err(e)
            }
        }
    }

    async fn download(&self) -> Result<(KeySet, Duration), JwksError> {
        let url = self.jwks_url().await?;
        let (body, max_age) = self.get(&url).await?;
        let set = KeySet::parse(&body).map_err(|e| JwksError::NotJson {
            url: url.to_string(),
            what: "JWKS",
            source: e,
        })?;
        Ok((set, max_age))
    }

    async fn jwks_url(&self) -> Result<Url, JwksError> {
        let issuer = match &self.source {
            Source::Url(u) => return Ok(u.clone()),
            Source::Discover(issuer) => issuer,
        };
        if let Some(u) = self.discovered.lock().ok().and_then(|d| d.clone()) {
            return Ok(u);
        }
        let well_known = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let url = Url::parse(&well_known).map_err(|source| JwksError::IssuerUrl {
            url: well_known.clone(),
            source,
        })?;
        let (body, _) = self.get(&url).await?;
        let doc: RawDiscovery = serde_json::from_slice(&body).map_err(|e| JwksError::NotJson {
            url: well_known.clone(),
            what: "discovery document",
            source: e,
        })?;
        if doc.issuer != *issuer {
            return Err(JwksError::IssuerMismatch {
                url: well_known,
                found: doc.issuer,
                configured: issuer.clone(),
            });
        }
        let jwks = Url::parse(&doc.jwks_uri).map_err(|source| JwksError::JwksUri {
            url: well_known.clone(),
            source,
        })?;
        if let Ok(mut d) = self.discovered.lock() {
            *d = Some(jwks.clone());
        }
        Ok(jwks)
    }

    async fn get(&self, url: &Url) -> Result<(bytes::Bytes, Duration), JwksError> {
        let unreachable = |source| JwksError::Unreachable {
            url: url.to_string(),
            source,
        };
        let too_large = || JwksError::TooLarge {
            url: url.to_string(),
        };
        let res = self
            .http
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(unreachable)?;
        if !res.status().is_success() {
            return Err(JwksError::Status {
                url: url.to_string(),
                status: res.status(),
            });
        }
        if res
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_large());
        }
        let max_age = res
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .map(|d| d.clamp(MIN_RELOAD, MAX_RELOAD))
            .unwrap_or(DEFAULT_RELOAD);
        let body = res.bytes().await.map_err(unreachable)?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(too_large());
        }
        Ok((body, max_age))
    }
}

/// `max-age` of a `Cache-Control` value; `no-cache`/`no-store` count as zero.
pub fn max_age(cache_control: &str) -> Option<Duration> {
    let mut found = None;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            found = v
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    found
}

/// The pause after a failed fetch: 5 s doubling to 5 min.
pub fn retry_after(failures: u32) -> Duration {
    Duration::from_secs(5u64.saturating_mul(1 << failures.min(6)).min(300))
}

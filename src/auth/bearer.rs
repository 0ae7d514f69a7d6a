//! Bearer tokens: `Authorization: Bearer <JWT>` verified locally against the
//! trusted issuers' published keys and mapped to an [`Identity`] with the
//! same claim paths as sessions, so rules decide the same way for both.
//!
//! Trusted issuers are the OIDC issuer itself (audience `client_id` or one of
//! `oidc.extra_audiences`) and every `[[oidc.bearer_issuers]]` entry (its own
//! keys, audiences, claim paths and optional `typ`). Each issuer's keys live
//! in a [`jwks::Jwks`] (fetched at start-up, reloaded in the background,
//! refetched on an unknown `kid` at most once per 10 s); the checks on one
//! token are in [`token`]. A verified token is cached under the SHA-256 of its
//! text until it expires (bounded in size), so a busy CI token costs one
//! signature check, and the cached path does no I/O and no allocation.
//!
//! Called by `pipeline::Gateway::decide`; `admin` reads [`Bearer::issuers`].
//! Tokens are never logged, only the check that failed.

pub mod jwks;
#[cfg(test)]
#[path = "../../tests/e2e/support/jwt.rs"]
pub(crate) mod testkeys;
#[cfg(test)]
pub(crate) mod tests;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use moka::sync::Cache;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::base::clock::unix_now;
use crate::base::identity::{EmailClaim, Identity, IdentityHeaders};
use crate::config::{ClaimPath, OidcConfig};

use self::jwks::{Jwks, KeySet, Source};
use self::token::{Expect, Parsed};

/// Most verified tokens kept.
const CACHE_CAPACITY: u64 = 10_000;

/// Every trusted issuer and the verified-token cache.
pub struct Bearer {
    issuers: Vec<Issuer>,
    verified: Cache<[u8; 32], Arc<Verified>>,
    leeway: u64,
}

/// One issuer whose tokens are accepted.
pub struct Issuer {
    /// Expected `iss`, byte for byte.
    pub iss: String,
    audiences: Vec<String>,
    user_claim: ClaimPath,
    email_claim: ClaimPath,
    groups_claim: ClaimPath,
    typ: Option<String>,
    /// `oidc.allow_unverified_email`.
    allow_unverified_email: bool,
    /// Claims kept for `[headers]` beyond user, e-mail and groups.
    capture: crate::base::identity::Capture,
    /// Its keys.
    pub jwks: Jwks,
}

/// A token that passed every check.
#[derive(Debug)]
pub struct Verified {
    /// Who it names.
    pub identity: Identity,
    /// Identity header values, rendered once.
    pub headers: IdentityHeaders,
    /// `exp`, unix seconds.
    pub expires_at: u64,
    /// The token's `sub`.
    pub subject: String,
    issuer: usize,
    generation: u64,
}

/// Why a bearer token was refused. [`BearerError::check`] names the failing
/// check for the debug log; the client only ever sees `invalid_token`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// Not a compact JWS: wrong characters, part count, base64 or JSON.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` is `none`, symmetric, or not on the allow-list.
    #[error("algorithm refused: {0}")]
    Algorithm(&'static str),
    /// The header has `crit`: extensions portcullis does not implement.
    #[error("critical header extensions are not supported")]
    CriticalHeader,
    /// `iss` names no trusted issuer (or is missing).
    #[error("issuer is not trusted")]
    UnknownIssuer,
    /// No key with the token's `kid`, even after a refetch (when one was allowed).
    #[error("no signing key with this kid")]
    UnknownKey,
    /// The issuer's keys have not been loaded: its JWKS is unreachable.
    #[error("the issuer's signing keys are not loaded")]
    NoKeys,
    /// The key's type (or its JWK `alg`) does not fit the header's `alg`.
    #[error("algorithm does not match the key type")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("signature does not verify")]
    Signature,
    /// `exp` is past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `aud` names none of the accepted audiences.
    #[error("audience not accepted")]
    Audience,
    /// The header `typ` differs from the issuer's configured `typ`.
    #[error("token type not accepted")]
    Type,
    /// Neither the user claim nor `sub` is present.
    #[error("token names no user")]
    NoSubject,
}

// === impl BearerError ===

impl BearerError {
    /// Short name of the failing check, for logs.
    pub fn check(&self) -> &'static str {
        match self {
            BearerError::Malformed(_) => "format",
            BearerError::Algorithm(_) | BearerError::KeyMismatch => "alg",
            BearerError::CriticalHeader => "crit",
            BearerError::UnknownIssuer => "iss",
            BearerError::UnknownKey => "kid",
            BearerError::NoKeys => "keys_unavailable",
            BearerError::Signature => "signature",
            BearerError::Expired => "exp",
            BearerError::NotYetValid => "nbf",
            BearerError::IssuedInFuture => "iat",
            BearerError::Audience => "aud",
            BearerError::Type => "typ",
            BearerError::NoSubject => "sub",
        }
    }
}

/// The token of an `Authorization: Bearer` header. An empty or non-UTF-8
/// token still comes back as `Some` (empty, or `"\0"`) so it is refused, not
/// ignored; other schemes (`Basic`) and no header give `None`.
pub fn token_of(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    if v.eq_ignore_ascii_case(b"bearer") {
        return Some("");
    }
    let scheme = v.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(std::str::from_utf8(&v[7..]).map_or("\u{0}", str::trim))
}

// === impl Bearer ===

impl Bearer {
    /// Builds the issuers from the config; nothing is fetched yet (see [`Bearer::spawn_key_reload`]).
    pub fn new(cfg: &OidcConfig) -> Result<Bearer, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(3))
            .timeout(cfg.http_timeout)
            .connect_timeout(cfg.http_timeout.min(Duration::from_secs(5)))
            .build()?;
        let mut audiences = vec![cfg.client_id.clone()];
        audiences.extend(cfg.extra_audiences.iter().cloned());
        let mut issuers = vec![Issuer {
            iss: cfg.issuer.clone(),
            audiences,
            user_claim: cfg.user_claim.clone(),
            email_claim: cfg.email_claim.clone(),
            groups_claim: cfg.groups_claim.clone(),
            typ: None,
            allow_unverified_email: cfg.allow_unverified_email,
            capture: cfg.capture.clone(),
            jwks: Jwks::new(Source::Discover(cfg.issuer.clone()), http.clone()),
        }];
        for b in &cfg.bearer_issuers {
            let source = match &b.jwks_url {
                Some(u) => Source::Url(u.clone()),
                None => Source::Discover(b.issuer.clone()),
            };
            issuers.push(Issuer {
                iss: b.issuer.clone(),
                audiences: b.audiences.clone(),
                user_claim: b.user_claim.clone(),
                email_claim: b.email_claim.clone(),
                groups_claim: b.groups_claim.clone(),
                typ: b.typ.clone(),
                allow_unverified_email: cfg.allow_unverified_email,
                capture: cfg.capture.clone(),
                jwks: Jwks::new(source, http.clone()),
            });
        }
        Ok(Bearer::from_issuers(issuers, cfg.clock_leeway))
    }

    fn from_issuers(issuers: Vec<Issuer>, leeway: Duration) -> Bearer {
        let verified = Cache::builder()
            .max_capacity(CACHE_CAPACITY)
            .expire_after(UntilExpiry)
            .build();
        Bearer {
            issuers,
            verified,
            leeway: leeway.as_secs(),
        }
    }

    /// The trusted issuers, main one first.
    pub fn issuers(&self) -> &[Issuer] {
        &self.issuers
    }

    /// Fetches every issuer's keys now, then keeps them fresh in the
    /// background (`Cache-Control: max-age`, clamped to 1 min – 24 h; failures
    /// retried from 5 s up to 5 min). The tasks end when `self` is dropped.
    pub fn spawn_key_reload(self: &Arc<Self>) {
        for i in 0..self.issuers.len() {
            let weak = Arc::downgrade(self);
            tokio::spawn(async move {
                let mut failures = 0u32;
                loop {
                    let Some(this) = weak.upgrade() else { return };
                    let issuer = &this.issuers[i];
                    let wait = match issuer.jwks.fetch().await {
                        Ok(max_age) => {
                            if failures > 0 {
                                tracing::info!(issuer = %issuer.iss, "bearer signing keys loaded");
                            }
                            failures = 0;
                            max_age
                        }
                        Err(e) => {
                            if failures == 0 {
                                tracing::warn!(issuer = %issuer.iss, error = %e, "cannot load bearer signing keys; tokens from this issuer are refused until they load");
                            }
                            failures = failures.saturating_add(1);
                            jwks::retry_after(failures)
                        }
                    };
                    drop(this);
                    tokio::time::sleep(wait).await;
                }
            });
        }
    }

    /// The verification of `token` from the verified-token cache, without
    /// waiting; `None` when only [`Bearer::verify`] can tell. An entry past
    /// its expiry (and leeway) or made under keys that have since changed
    /// is dropped.
    pub fn verify_cached(&self, token: &str) -> Option<Arc<Verified>> {
        if token.len() > token::MAX_TOKEN_BYTES {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let v = self.verified.get(&digest)?;
        if self.is_current(&v, unix_now()) {
            return Some(v);
        }
        self.verified.invalidate(&digest);
        None
    }

    /// Verifies a token: from the cache when it was verified before (no I/O,
    /// no allocation), otherwise fully, refetching the issuer's keys once if
    /// the `kid` is unknown and the rate limit allows.
    pub async fn verify(&self, token: &str) -> Result<Arc<Verified>, BearerError> {
        if token.len() > token::MAX_TOKEN_BYTES {
            return Err(BearerError::Malformed("longer than 16 KiB"));
        }
        if let Some(v) = self.verify_cached(token) {
            return Ok(v);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = unix_now();
        // Boxed: the signature check's future is large, and every request's
        // future (which hyper moves into place per request) would otherwise
        // carry it, cached hits and session cookies included.
        let v = Arc::new(Box::pin(self.verify_uncached(token, now)).await?);
        if v.expires_at > now {
            self.verified.insert(digest, v.clone());
        }
        Ok(v)
    }

    fn is_current(&self, v: &Verified, now: u64) -> bool {
        now <= v.expires_at.saturating_add(self.leeway)
            && self
                .issuers
                .get(v.issuer)
                .is_some_and(|i| i.jwks.generation() == v.generation)
    }

    async fn verify_uncached(&self, token: &str, now: u64) -> Result<Verified, BearerError> {
        let parsed = Parsed::parse(token)?;
        let iss = parsed.issuer().ok_or(BearerError::UnknownIssuer)?;
        let index = self
            .issuers
            .iter()
            .position(|i| i.iss == iss)
            .ok_or(BearerError::UnknownIssuer)?;
        let issuer = &self.issuers[index];
        let generation = issuer.jwks.generation();
        let first = self.check(issuer, &parsed, &issuer.jwks.keys(), now);
        let exp = match (first, parsed.kid.as_deref()) {
            (Err(BearerError::UnknownKey | BearerError::NoKeys), Some(kid))
                if issuer.jwks.refetch_for(kid).await =>
            {
                self.check(issuer, &parsed, &issuer.jwks.keys(), now)?
            }
            (result, _) => result?,
        };
        let identity = issuer.identity(&parsed.claims)?;
        Ok(Verified {
            headers: identity.headers(),
            identity,
            subject: parsed
                .claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            expires_at: exp,
            issuer: index,
            generation,
        })
    }

    fn check(
        &self,
        issuer: &Issuer,
        parsed: &Parsed<'_>,
        keys: &KeySet,
        now: u64,
    ) -> Result<u64, BearerError> {
        let key = keys
            .find(parsed.kid.as_deref(), parsed.alg)
            .ok_or(if keys.keys.is_empty() {
                BearerError::NoKeys
            } else {
                BearerError::UnknownKey
            })?;
        parsed.verify_signature(key)?;
        parsed.check_claims(&Expect {
            now,
            leeway: self.leeway,
            audiences: &issuer.audiences,
            typ: issuer.typ.as_deref(),
        })
    }
}

impl Issuer {
    fn identity(&self, claims: &Value) -> Result<Identity, BearerError> {
        let user = self
            .user_claim
            .string(claims)
            .or_else(|| claims.get("sub").and_then(Value::as_str).map(str::to_owned))
            .filter(|u| !u.is_empty())
            .ok_or(BearerError::NoSubject)?;
        // Same rule as at login: an address without `email_verified: true`
        // in the token itself is no address.
        let email = EmailClaim::of(&self.email_claim, claims);
        if let Some(address) = email.dropped(self.allow_unverified_email) {
            tracing::debug!(user = %user, email = %address, issuer = %self.iss, "bearer token's email is not marked email_verified; not used");
        }
        let mut identity = Identity {
            email: email.usable(self.allow_unverified_email),
            user,
            groups: self.groups_claim.strings(claims).unwrap_or_default(),
            ..Identity::default()
        };
        for claim in self.capture.apply(claims, &mut identity) {
            tracing::debug!(user = %identity.user, claim = %claim, issuer = %self.iss, "bearer token's claim too long for its [headers.claims] header; sent empty");
        }
        Ok(identity)
    }
}

/// Cache entries live until the token's `exp`.
struct UntilExpiry;

impl moka::Expiry<[u8; 32], Arc<Verified>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Verified>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            value.expires_at.saturating_sub(unix_now()),
        ))
    }
}

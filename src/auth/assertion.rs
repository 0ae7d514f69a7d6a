//! The signed identity assertion (`headers.assertion`): every allowed
//! request carries `X-Auth-Assertion: <JWT>`, signed by portcullis with
//! ES256, so an app can verify who the gateway vouched for instead of
//! trusting a plain header.
//!
//! Claims: `iss` (`server.external_url`), `aud` (the request's host, lower
//! case, without port), `sub`, `user`, `email`, `groups`, `iat`, `exp`
//! ([`LIFETIME`] after `iat`). The [`Keys`] come from the PEM file
//! `headers.assertion_key_file` (PKCS#8 P-256 private keys): the first signs,
//! all are published at `/.well-known/portcullis/jwks.json`, so a new key
//! can be put first while apps still hold the old one.
//!
//! Hot path: a signed token is cached per (principal, audience) and reused
//! until [`REUSE_MARGIN`] before its `exp`; a cache hit costs a hash, a map
//! lookup and a copy of the value, no signing.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use crate::auth::principal::Principal;

pub use crate::config::assertion_keys::Keys;

/// The request header the assertion travels in.
pub static X_AUTH_ASSERTION: HeaderName = HeaderName::from_static("x-auth-assertion");

/// Where the public keys are published, on every host.
pub const JWKS_PATH: &str = "/.well-known/portcullis/jwks.json";

/// Lifetime of one assertion, in seconds.
pub const LIFETIME: u64 = 60;

/// A cached assertion is signed anew when less than this many seconds of
/// its lifetime are left, so an app never receives one about to expire.
pub const REUSE_MARGIN: u64 = 20;

/// Most cached assertions (principal × audience).
const CACHE_CAPACITY: u64 = 100_000;

/// The assertion signer of one runtime: keys, issuer and the token cache.
pub struct Signer {
    keys: Arc<Keys>,
    issuer: String,
    cache: moka::sync::Cache<u64, Arc<Cached>>,
    hasher: std::hash::RandomState,
}

/// One signed token and whom it was signed for.
struct Cached {
    owner: Owner,
    aud: Box<str>,
    exp: u64,
    value: HeaderValue,
}

/// The principal a cached token belongs to. A session is named by its id and
/// claims generation (a refresh changes the claims and the generation); a
/// bearer token or Basic user by its allocation, held by a `Weak` so the
/// address cannot be reused by another principal while the entry exists.
enum Owner {
    Session([u8; 32], u64),
    Bearer(Weak<crate::auth::bearer::Verified>),
    Basic(Weak<crate::config::htpasswd::User>),
}

/// The answer to `GET /.well-known/portcullis/jwks.json`: the JWKS
/// document of the runtime's signer, cacheable for five minutes; `None`
/// without `headers.assertion` (the request goes on like any other).
pub fn jwks_response(
    signer: Option<&Signer>,
) -> Option<http::Response<crate::base::http_util::Body>> {
    let signer = signer?;
    let mut res = crate::base::http_util::fixed(
        http::StatusCode::OK,
        "application/json",
        signer.jwks().to_vec(),
    );
    res.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Some(res)
}

// === impl Signer ===

impl Signer {
    /// A signer for `issuer` (`server.external_url`, without a trailing slash).
    pub fn new(keys: Arc<Keys>, issuer: &str) -> Signer {
        Signer {
            keys,
            issuer: issuer.trim_end_matches('/').to_owned(),
            cache: moka::sync::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(Duration::from_secs(LIFETIME - REUSE_MARGIN))
                .build(),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// The JWKS document.
    pub fn jwks(&self) -> &[u8] {
        self.keys.jwks()
    }

    /// The assertion for `principal` at host `aud` (normalised, no port):
    /// the cached one while more than [`REUSE_MARGIN`] seconds are left, else
    /// a fresh one (then cached).
    pub fn assertion(&self, principal: &Principal, aud: &str, now: u64) -> HeaderValue {
        let slot = self.slot(principal, aud);
        if let Some(c) = self.cache.get(&slot) {
            if c.owner.is(principal) && *c.aud == *aud && now + REUSE_MARGIN < c.exp {
                return HeaderValue::from_bytes(c.value.as_bytes())
                    .unwrap_or(HeaderValue::from_static(""));
            }
        }
        let exp = now + LIFETIME;
        let token = self.keys.sign(&self.claims(principal, aud, now, exp));
        // Base64url text is always a valid header value.
        let value = HeaderValue::from_str(&token).unwrap_or(HeaderValue::from_static(""));
        self.cache.insert(
            slot,
            Arc::new(Cached {
                owner: Owner::of(principal),
                aud: aud.into(),
                exp,
                value: value.clone(),
            }),
        );
        value
    }

    /// The cache key: a keyed hash of the principal and the audience. A
    /// collision only costs a signature: a hit is checked against the entry.
    fn slot(&self, principal: &Principal, aud: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        match principal {
            Principal::Session(s) => {
                s.id.0.hash(&mut h);
                s.refresh_at.hash(&mut h);
            }
            Principal::Bearer(b) => (Arc::as_ptr(b) as usize).hash(&mut h),
            Principal::Basic(u) => (Arc::as_ptr(u) as usize).hash(&mut h),
        }
        aud.hash(&mut h);
        h.finish()
    }

    fn claims(&self, principal: &Principal, aud: &str, iat: u64, exp: u64) -> serde_json::Value {
        let id = principal.identity();
        let sub = match principal {
            Principal::Session(s) => s.subject.as_str(),
            Principal::Bearer(b) => b.subject.as_str(),
            Principal::Basic(_) => id.user.as_str(),
        };
        serde_json::json!({
            "iss": self.issuer,
            "aud": aud,
            "sub": sub,
            "user": id.user,
            "email": id.email,
            "groups": id.groups,
            "iat": iat,
            "exp": exp,
        })
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("issuer", &self.issuer)
            .field("keys", &self.keys)
            .finish()
    }
}

// === impl Owner ===

impl Owner {
    fn of(p: &Principal) -> Owner {
        match p {
            Principal::Session(s) => Owner::Session(s.id.0, s.refresh_at),
            Principal::Bearer(b) => Owner::Bearer(Arc::downgrade(b)),
            Principal::Basic(u) => Owner::Basic(Arc::downgrade(u)),
        }
    }

    fn is(&self, p: &Principal) -> bool {
        match (self, p) {
            (Owner::Session(id, generation), Principal::Session(s)) => {
                *id == s.id.0 && *generation == s.refresh_at
            }
            (Owner::Bearer(w), Principal::Bearer(b)) => std::ptr::eq(w.as_ptr(), Arc::as_ptr(b)),
            (Owner::Basic(w), Principal::Basic(u)) => std::ptr::eq(w.as_ptr(), Arc::as_ptr(u)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;

//! The signed identity assertion (`headers.assertion`): every allowed
//! request carries `X-Auth-Assertion: <JWT>`, signed by portcullis with
//! ES256, so an app can verify who the gateway vouched for instead of
//! trusting a plain header.
//!
//! Claims: `iss` (`server.external_url`), `aud` (the request's host, lower
//! case, without port), `sub`, `user`, `email`, `groups`, `iat`, `exp`
//! ([`LIFETIME`] after `iat`). The keys come from the PEM file
//! `headers.assertion_key_file` (PKCS#8 P-256 private keys): the first signs,
//! all are published at `/.well-known/portcullis/jwks.json`, so a new key
//! can be put first while apps still hold the old one.
//!
//! Hot path: a signed token is cached per (principal, audience) and reused
//! until [`REUSE_MARGIN`] before its `exp`; a cache hit costs a hash, a map
//! lookup and a copy of the value, no signing.

use std::hash::{BuildHasher, Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{HeaderName, HeaderValue};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use sha2::Digest as _;

use crate::pipeline::Principal;

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

/// The signing keys of `headers.assertion_key_file`.
pub struct Keys {
    /// Non-empty; the first signs.
    keys: Vec<Key>,
    /// The JWKS document with every public key.
    jwks: Vec<u8>,
    rng: SystemRandom,
}

struct Key {
    pair: EcdsaKeyPair,
    /// RFC 7638 thumbprint of the public key.
    kid: String,
    /// `{"alg":"ES256","typ":"JWT","kid":...}`, base64url.
    header: String,
}

/// Why the key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("cannot read the key file: {0}")]
    Read(#[source] std::io::Error),
    /// The PEM text is damaged.
    #[error("not PEM: {0}")]
    Pem(#[source] std::io::Error),
    /// No `PRIVATE KEY` block.
    #[error("no PRIVATE KEY block; create one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`")]
    NoKey,
    /// An `EC PRIVATE KEY` (SEC1) block: convertible, but not read as is.
    #[error("key {0} is an EC PRIVATE KEY (SEC1) block; convert it to PKCS#8 with `openssl pkcs8 -topk8 -nocrypt`")]
    Sec1(usize),
    /// A key of another type or curve.
    #[error("key {0} is not a P-256 (ES256) private key")]
    NotP256(usize),
}

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
    Bearer(Weak<crate::bearer::Verified>),
    Basic(Weak<crate::basic::User>),
}

/// The answer to `GET /.well-known/portcullis/jwks.json`: the JWKS
/// document, cacheable for five minutes; `None` without `headers.assertion`
/// (the request goes on like any other).
pub fn jwks_response(
    rt: &crate::pipeline::Runtime,
) -> Option<http::Response<crate::http_util::Body>> {
    let signer = rt.assertion.as_ref()?;
    let mut res = crate::http_util::fixed(
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

// === impl Keys ===

impl Keys {
    /// Reads the PEM key file.
    pub fn load(path: &Path) -> Result<Keys, KeyError> {
        Keys::from_pem(&std::fs::read(path).map_err(KeyError::Read)?)
    }

    /// Parses PEM text: every `PRIVATE KEY` block, in order.
    pub fn from_pem(pem: &[u8]) -> Result<Keys, KeyError> {
        let rng = SystemRandom::new();
        let mut keys = Vec::new();
        for (i, item) in rustls_pemfile::read_all(&mut &pem[..]).enumerate() {
            let n = i + 1;
            match item.map_err(KeyError::Pem)? {
                rustls_pemfile::Item::Pkcs8Key(der) => {
                    let pair = EcdsaKeyPair::from_pkcs8(
                        &ECDSA_P256_SHA256_FIXED_SIGNING,
                        der.secret_pkcs8_der(),
                        &rng,
                    )
                    .map_err(|_| KeyError::NotP256(n))?;
                    keys.push(Key::new(pair));
                }
                rustls_pemfile::Item::Sec1Key(_) => return Err(KeyError::Sec1(n)),
                rustls_pemfile::Item::Pkcs1Key(_) => return Err(KeyError::NotP256(n)),
                _ => {}
            }
        }
        if keys.is_empty() {
            return Err(KeyError::NoKey);
        }
        let doc = serde_json::json!({
            "keys": keys.iter().map(Key::jwk).collect::<Vec<_>>(),
        });
        Ok(Keys {
            jwks: doc.to_string().into_bytes(),
            keys,
            rng,
        })
    }

    /// The JWKS document (`{"keys": [...]}`) with every public key.
    pub fn jwks(&self) -> &[u8] {
        &self.jwks
    }

    /// The `kid` of the signing key.
    pub fn signing_kid(&self) -> &str {
        &self.keys[0].kid
    }

    /// A compact JWS of `claims` under the first key.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let key = &self.keys[0];
        let mut token = key.header.clone();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims.to_string(), &mut token);
        // Signing with a valid key and the system RNG fails only if the RNG does.
        let sig = key
            .pair
            .sign(&self.rng, token.as_bytes())
            .expect("ECDSA signing with the system random source");
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut token);
        token
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("Keys").field("kids", &kids).finish()
    }
}

// === impl Key ===

impl Key {
    fn new(pair: EcdsaKeyPair) -> Key {
        let (x, y) = Key::coordinates(&pair);
        // RFC 7638: the required members in lexical order, no spaces.
        let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(thumbprint.as_bytes()));
        let header = URL_SAFE_NO_PAD
            .encode(serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": kid}).to_string());
        Key { pair, kid, header }
    }

    /// The public point's coordinates, base64url (the key is `04 || x || y`).
    fn coordinates(pair: &EcdsaKeyPair) -> (String, String) {
        let point = pair.public_key().as_ref();
        (
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..65]),
        )
    }

    fn jwk(&self) -> serde_json::Value {
        let (x, y) = Key::coordinates(&self.pair);
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "kid": self.kid, "alg": "ES256", "use": "sig",
        })
    }
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

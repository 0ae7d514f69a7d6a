//! The signing keys of the identity assertion (`headers.assertion`): the
//! PKCS#8 P-256 private keys of `headers.assertion_key_file` (or the PEM text
//! in `PORTCULLIS_HEADERS_ASSERTION_KEY`), read and checked when the config is
//! loaded, so a bad key is a start-up (or reload) error. The first key signs;
//! every key is published in the JWKS document. The assertion signer (in
//! `assertion`) uses them.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use sha2::Digest as _;

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

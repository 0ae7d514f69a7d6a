//! The development issuer's signing key: an RSA-2048 key generated when the
//! issuer starts (never stored anywhere), RS256 JWT signing with a `kid`
//! header, the matching JWKS document, and verification of the issuer's own
//! tokens (for `id_token_hint` at the end-session endpoint).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

/// RSA modulus size in bits.
const KEY_BITS: usize = 2048;

/// The issuer's key pair and its key id.
pub(super) struct Keys {
    signer: SigningKey<Sha256>,
    verifier: VerifyingKey<Sha256>,
    public: RsaPublicKey,
    kid: String,
}

// === impl Keys ===

impl Keys {
    /// Generates a fresh key. Slow (tens to hundreds of milliseconds): call it
    /// off the async runtime.
    pub fn generate() -> Result<Self, rsa::Error> {
        let private = RsaPrivateKey::new(&mut rand::rngs::OsRng, KEY_BITS)?;
        let public = private.to_public_key();
        let kid = thumbprint(&public);
        Ok(Keys {
            signer: SigningKey::new(private),
            verifier: VerifyingKey::new(public.clone()),
            public,
            kid,
        })
    }

    /// The key id: the RFC 7638 JWK thumbprint of the public key.
    #[cfg(test)]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWKS document served at `/jwks`.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "RSA",
                "use": "sig",
                "alg": "RS256",
                "kid": self.kid,
                "n": b64(&self.public.n().to_bytes_be()),
                "e": b64(&self.public.e().to_bytes_be()),
            }]
        })
    }

    /// Signs `claims` as a compact RS256 JWT.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": self.kid });
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self.signer.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", b64(&signature.to_vec()))
    }

    /// The claims of a JWT this key signed, or `None` when it is malformed,
    /// signed by another key, or not RS256. Expiry is not checked.
    pub fn verify(&self, jwt: &str) -> Option<serde_json::Value> {
        let mut parts = jwt.split('.');
        let (header, payload, sig) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: serde_json::Value = serde_json::from_slice(&unb64(header)?).ok()?;
        if header.get("alg")?.as_str()? != "RS256" {
            return None;
        }
        let signature = Signature::try_from(unb64(sig)?.as_slice()).ok()?;
        let signing_input = &jwt[..header_payload_len(jwt)?];
        self.verifier
            .verify(signing_input.as_bytes(), &signature)
            .ok()?;
        serde_json::from_slice(&unb64(payload)?).ok()
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Unpadded base64url, as JOSE uses it.
pub(super) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// `at_hash`: the left half of SHA-256 of the access token, base64url.
pub(super) fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    b64(&digest[..digest.len() / 2])
}

/// Length of `header.payload` in a compact JWT.
fn header_payload_len(jwt: &str) -> Option<usize> {
    jwt.rfind('.')
}

/// RFC 7638 thumbprint of an RSA public key.
fn thumbprint(public: &RsaPublicKey) -> String {
    // Members in lexicographic order, no whitespace, as RFC 7638 §3 requires.
    let canonical = format!(
        r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
        b64(&public.e().to_bytes_be()),
        b64(&public.n().to_bytes_be())
    );
    b64(&Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_and_rejects_tampering() {
        let keys = Keys::generate().expect("key generation");
        let jwt = keys.sign(&serde_json::json!({ "sub": "alice" }));
        let claims = keys.verify(&jwt).expect("own token verifies");
        assert_eq!(claims["sub"], "alice");

        let mut parts: Vec<&str> = jwt.split('.').collect();
        let forged = b64(br#"{"sub":"mallory"}"#);
        parts[1] = &forged;
        assert!(keys.verify(&parts.join(".")).is_none());
        assert!(keys.verify("a.b").is_none());
        assert!(keys.verify("").is_none());

        let other = Keys::generate().expect("key generation");
        assert!(other.verify(&jwt).is_none());
        assert_ne!(keys.kid(), other.kid());
    }

    #[test]
    fn jwks_names_the_kid() {
        let keys = Keys::generate().expect("key generation");
        let jwks = keys.jwks();
        assert_eq!(jwks["keys"][0]["kid"], keys.kid());
        assert_eq!(jwks["keys"][0]["e"], "AQAB");
    }
}

//! Unit tests of the assertion signer: tokens verify against the published
//! keys with an independent JWT library, and the cache reuses them.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::*;
use crate::auth::session::{Session, SessionId};
use crate::base::identity::Identity;
use crate::config::assertion_keys::KeyError;

fn pem() -> String {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .expect("P-256 key")
        .serialize_pem()
}

fn session(id: u8, refresh_at: u64) -> Principal {
    let identity = Identity {
        user: "alice".into(),
        email: "alice@example.com".into(),
        groups: vec!["admins".into()],
        ..Identity::default()
    };
    Principal::Session(Arc::new(Session {
        id: SessionId([id; 32]),
        headers: identity.headers(),
        identity,
        subject: "sub-alice".into(),
        idp_session: None,
        id_token: None,
        access_token: None,
        refresh_token: None,
        created_at: 0,
        expires_at: u64::MAX,
        refresh_at,
    }))
}

/// Verifies `token` against the JWKS document, as an app would.
fn verify(jwks: &[u8], token: &str, aud: &str) -> Result<serde_json::Value, String> {
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(jwks).map_err(|e| e.to_string())?;
    let kid = jsonwebtoken::decode_header(token)
        .map_err(|e| e.to_string())?
        .kid
        .ok_or("no kid")?;
    let jwk = set.find(&kid).ok_or("unknown kid")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[aud]);
    v.set_issuer(&["https://auth.example.com"]);
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

#[test]
fn tokens_verify_against_the_published_keys() {
    let keys = Arc::new(Keys::from_pem(pem().as_bytes()).unwrap());
    let signer = Signer::new(keys.clone(), "https://auth.example.com/");
    let now = crate::base::clock::unix_secs();
    let v = signer.assertion(&session(1, 0), "app.example.com", now);
    let token = v.to_str().unwrap();
    let claims = verify(signer.jwks(), token, "app.example.com").expect("valid");
    assert_eq!(claims["sub"], "sub-alice");
    assert_eq!(claims["user"], "alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["groups"], serde_json::json!(["admins"]));
    assert_eq!(claims["exp"].as_u64(), Some(now + LIFETIME));
    // Replayed to another host: the audience does not match.
    let err = verify(signer.jwks(), token, "other.example.com").unwrap_err();
    assert!(err.contains("Audience"), "{err}");
    // A flipped signature byte fails.
    let mut bad = token.to_owned();
    let last = bad.pop().unwrap();
    bad.push(if last == 'A' { 'B' } else { 'A' });
    assert!(verify(signer.jwks(), &bad, "app.example.com").is_err());
}

#[test]
fn assertions_are_cached_per_principal_and_audience() {
    let keys = Arc::new(Keys::from_pem(pem().as_bytes()).unwrap());
    let signer = Signer::new(keys, "https://auth.example.com");
    let now = 1_000_000;
    let alice = session(1, 0);
    let first = signer.assertion(&alice, "app.example.com", now);
    // ECDSA signatures are randomised: equal values mean the cached one.
    assert_eq!(signer.assertion(&alice, "app.example.com", now + 1), first);
    assert_eq!(
        signer.assertion(&alice, "app.example.com", now + LIFETIME - REUSE_MARGIN - 1),
        first
    );
    // Close to its exp, another host, another session, a refreshed session: new tokens.
    assert_ne!(
        signer.assertion(&alice, "app.example.com", now + LIFETIME - REUSE_MARGIN),
        first
    );
    assert_ne!(signer.assertion(&alice, "wiki.example.com", now), first);
    assert_ne!(
        signer.assertion(&session(2, 0), "app.example.com", now),
        first
    );
    assert_ne!(
        signer.assertion(&session(1, 5), "app.example.com", now),
        first
    );
}

#[test]
fn key_files_first_signs_all_published() {
    let (new, old) = (pem(), pem());
    let keys = Keys::from_pem(format!("{new}{old}").as_bytes()).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(keys.jwks()).unwrap();
    let kids: Vec<&str> = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[0], keys.signing_kid());
    let alone = Keys::from_pem(new.as_bytes()).unwrap();
    assert_eq!(
        alone.signing_kid(),
        kids[0],
        "the kid is the key's thumbprint"
    );
    assert!(format!("{keys:?}").contains(kids[1]));
    assert!(!format!("{keys:?}").contains("PRIVATE"));

    assert!(matches!(Keys::from_pem(b""), Err(KeyError::NoKey)));
    let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256);
    if let Ok(rsa) = rsa {
        assert!(matches!(
            Keys::from_pem(rsa.serialize_pem().as_bytes()),
            Err(KeyError::NotP256(1))
        ));
    }
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    assert!(matches!(
        Keys::from_pem(p384.serialize_pem().as_bytes()),
        Err(KeyError::NotP256(1))
    ));
    let sec1 = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIA==\n-----END EC PRIVATE KEY-----\n";
    assert!(matches!(
        Keys::from_pem(sec1.as_bytes()),
        Err(KeyError::Sec1(1))
    ));
}

//! Reading a JWT's claims without checking its signature, for tokens whose
//! signature was checked when they arrived (the ID token of a login, read
//! again for the session, the debug page and `check --login`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

/// Decodes a JWT's payload as JSON (no verification: the caller verified it).
pub fn jwt_payload(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.is_object().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_payload_object_only() {
        let body = URL_SAFE_NO_PAD.encode(br#"{"sub":"alice"}"#);
        let v = jwt_payload(&format!("e30.{body}.sig")).unwrap();
        assert_eq!(v["sub"], "alice");
        let array = URL_SAFE_NO_PAD.encode(b"[1]");
        assert!(jwt_payload(&format!("e30.{array}.sig")).is_none());
        assert!(jwt_payload("no-dots").is_none());
        assert!(jwt_payload("e30.%%%.sig").is_none());
    }
}

//! One compact JWS, taken apart and checked: the shape (three base64url
//! parts), the protected header (algorithm allow-list, no `crit`; `jku`,
//! `x5u`, `jwk` and `x5c` are never read, so a token cannot choose its own
//! key), the signature against a key of the matching type, and the claims
//! (`exp`, `nbf`, `iat` with leeway, `iss`, `aud`, optional `typ`).
//!
//! Called by `bearer` on a cache miss only; nothing here touches the network.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::Value;

use super::jwks::Key;
use super::BearerError;

/// Largest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A token whose shape and header passed, signature not yet checked.
pub struct Parsed<'t> {
    /// The allow-listed algorithm from the header.
    pub alg: Algorithm,
    /// `kid` from the header.
    pub kid: Option<String>,
    /// `typ` from the header.
    pub typ: Option<String>,
    /// The claims (unverified until [`Parsed::verify_signature`] passes).
    pub claims: Value,
    signing_input: &'t str,
    signature: &'t str,
}

/// Time and audience expectations for [`Parsed::check_claims`].
pub struct Expect<'a> {
    /// Unix seconds now.
    pub now: u64,
    /// Skew tolerated on `exp`, `nbf`, `iat`.
    pub leeway: u64,
    /// Accepted audiences; `aud` must name at least one.
    pub audiences: &'a [String],
    /// Required `typ`, when configured.
    pub typ: Option<&'a str>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<Value>,
}

// === impl Parsed ===

impl<'t> Parsed<'t> {
    /// Splits and decodes `token`; rejects bad shapes and algorithms.
    pub fn parse(token: &'t str) -> Result<Parsed<'t>, BearerError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(BearerError::Malformed("longer than 16 KiB"));
        }
        if !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(BearerError::Malformed("not base64url"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(BearerError::Malformed("not three dot-separated parts"));
        };
        if header.is_empty() || payload.is_empty() {
            return Err(BearerError::Malformed("empty part"));
        }
        let header: RawHeader = decode_json(header, "header")?;
        let alg = allowed_algorithm(&header.alg)?;
        if header.crit.is_some() {
            return Err(BearerError::CriticalHeader);
        }
        if signature.is_empty() {
            return Err(BearerError::Malformed("empty signature"));
        }
        let claims: Value = decode_json(payload, "payload")?;
        if !claims.is_object() {
            return Err(BearerError::Malformed("payload is not a JSON object"));
        }
        Ok(Parsed {
            alg,
            kid: header.kid,
            typ: header.typ,
            claims,
            signing_input: &token[..header_payload_len(token)],
            signature,
        })
    }

    /// `iss` as sent (unverified): picks the key set.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }

    /// Verifies the signature with `key`, which must be of the header
    /// algorithm's type (and, when the JWK names an `alg`, exactly that one).
    pub fn verify_signature(&self, key: &Key) -> Result<(), BearerError> {
        if !key.kind.fits(self.alg) {
            return Err(BearerError::KeyMismatch);
        }
        if key
            .alg
            .as_deref()
            .is_some_and(|a| allowed_algorithm(a).ok() != Some(self.alg))
        {
            return Err(BearerError::KeyMismatch);
        }
        match jsonwebtoken::crypto::verify(
            self.signature,
            self.signing_input.as_bytes(),
            &key.decoding,
            self.alg,
        ) {
            Ok(true) => Ok(()),
            _ => Err(BearerError::Signature),
        }
    }

    /// Checks `exp` (required), `nbf`, `iat`, `aud` and `typ`; returns `exp`.
    pub fn check_claims(&self, expect: &Expect<'_>) -> Result<u64, BearerError> {
        let exp = match self.claims.get("exp") {
            None => return Err(BearerError::Malformed("no exp claim")),
            Some(v) => time(v).ok_or(BearerError::Malformed("exp is not a number"))?,
        };
        if expect.now > exp.saturating_add(expect.leeway) {
            return Err(BearerError::Expired);
        }
        if let Some(v) = self.claims.get("nbf") {
            let nbf = time(v).ok_or(BearerError::Malformed("nbf is not a number"))?;
            if nbf > expect.now.saturating_add(expect.leeway) {
                return Err(BearerError::NotYetValid);
            }
        }
        if let Some(v) = self.claims.get("iat") {
            let iat = time(v).ok_or(BearerError::Malformed("iat is not a number"))?;
            if iat > expect.now.saturating_add(expect.leeway) {
                return Err(BearerError::IssuedInFuture);
            }
        }
        let aud_ok = match self.claims.get("aud") {
            Some(Value::String(a)) => expect.audiences.contains(a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| expect.audiences.iter().any(|x| x == a)),
            _ => false,
        };
        if !aud_ok {
            return Err(BearerError::Audience);
        }
        if let Some(want) = expect.typ {
            let got = self.typ.as_deref().unwrap_or("");
            let got = strip_prefix_ignore_case(got, "application/").unwrap_or(got);
            let want = strip_prefix_ignore_case(want, "application/").unwrap_or(want);
            if !got.eq_ignore_ascii_case(want) {
                return Err(BearerError::Type);
            }
        }
        Ok(exp)
    }
}

/// Maps a header `alg` onto the allow-list: asymmetric algorithms only.
pub fn allowed_algorithm(alg: &str) -> Result<Algorithm, BearerError> {
    Ok(match alg {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        a if a.eq_ignore_ascii_case("none") => return Err(BearerError::Algorithm("none")),
        a if a.to_ascii_uppercase().starts_with("HS") => {
            return Err(BearerError::Algorithm("symmetric (HS*)"))
        }
        _ => return Err(BearerError::Algorithm("not on the allow-list")),
    })
}

fn decode_json<T: serde::de::DeserializeOwned>(
    part: &str,
    what: &'static str,
) -> Result<T, BearerError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| {
        BearerError::Malformed(if what == "header" {
            "header is not base64url"
        } else {
            "payload is not base64url"
        })
    })?;
    serde_json::from_slice(&bytes).map_err(|_| {
        BearerError::Malformed(if what == "header" {
            "header is not a JOSE header"
        } else {
            "payload is not JSON"
        })
    })
}

/// A NumericDate: a non-negative number of seconds (fractions dropped).
fn time(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
                .map(|f| f as u64)
        }),
        _ => None,
    }
}

fn header_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(0)
}

fn strip_prefix_ignore_case<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

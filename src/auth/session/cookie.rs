//! Cookie sealing: the signed session cookie and the encrypted login-flow
//! cookies, with key rotation.
//!
//! Keys are derived (HKDF, the `cookie` crate's `Key::derive_from`) from each
//! configured session secret; the first key signs and encrypts, every key
//! verifies and decrypts. The session cookie's value is
//! `base64(HMAC-SHA256) || base64url(session id)`, the `cookie` crate's
//! signed-jar format, which [`SessionKeys::seal`] produces through the crate.
//! [`SessionKeys::unseal`] is on every request's path, so it verifies the
//! same format itself: one HMAC state per key computed once at start-up and
//! cloned per check, decoding into stack buffers, MACs compared in constant
//! time (`constant_time_eq`, a word at a time: a fifth of `subtle`'s
//! byte-wise cost). Flow cookies use the crate's private jar (AES-256-GCM
//! with the cookie name bound as associated data).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cookie::{Cookie, CookieJar, Key, SameSite};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::SessionId;
use crate::config::SessionConfig;

/// Length of the base64 (standard, padded) HMAC-SHA256 digest that starts a
/// signed value.
const DIGEST_B64_LEN: usize = 44;
/// Length of a base64url (unpadded) 32-byte session id.
const ID_B64_LEN: usize = 43;

/// The derived cookie keys and the attributes every cookie we set carries.
pub struct SessionKeys {
    keys: Vec<Key>,
    /// HMAC state keyed with each key's signing half, in `keys` order.
    macs: Vec<Hmac<Sha256>>,
    name: String,
    domain: Option<String>,
    secure: bool,
    max_age_secs: i64,
}

// === impl SessionKeys ===

impl SessionKeys {
    /// Derives the keys from the configured secrets (each at least 32 bytes,
    /// checked by config validation).
    pub fn new(cfg: &SessionConfig) -> Self {
        let keys = cfg
            .secrets
            .iter()
            .map(|s| Key::derive_from(s.expose()))
            .collect::<Vec<Key>>();
        let macs = keys
            .iter()
            .map(|k| {
                Hmac::<Sha256>::new_from_slice(k.signing()).expect("HMAC takes keys of any length")
            })
            .collect();
        SessionKeys {
            keys,
            macs,
            name: cfg.cookie_name.clone(),
            domain: cfg.cookie_domain.clone(),
            secure: cfg.cookie_secure,
            max_age_secs: i64::try_from(cfg.lifetime.as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &str {
        &self.name
    }

    /// The signed cookie value for a session id.
    pub fn seal(&self, id: &SessionId) -> String {
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.keys[0])
            .add(Cookie::new(self.name.clone(), URL_SAFE_NO_PAD.encode(id.0)));
        jar.get(&self.name)
            .map(|c| c.value().to_owned())
            .unwrap_or_default()
    }

    /// The session id inside a cookie value, if the value verifies under any
    /// key. Tampered, truncated, oversized or foreign values give `None`.
    pub fn unseal(&self, value: impl AsRef<[u8]>) -> Option<SessionId> {
        let bytes = value.as_ref();
        if bytes.len() != DIGEST_B64_LEN + ID_B64_LEN {
            return None;
        }
        let (digest_b64, id_b64) = bytes.split_at(DIGEST_B64_LEN);
        // 43 characters and one `=`: the standard alphabet, padded.
        if digest_b64[43] != b'=' {
            return None;
        }
        let digest = decode_32(digest_b64[..43].try_into().ok()?, &STANDARD_TABLE)?;
        let verified = self.macs.iter().any(|m| {
            let mut mac = m.clone();
            mac.update(id_b64);
            crate::base::secret::constant_time_eq_32(&mac.finalize().into_bytes().into(), &digest)
        });
        if !verified {
            return None;
        }
        let id = decode_32(id_b64.try_into().ok()?, &URL_SAFE_TABLE)?;
        Some(SessionId(id))
    }

    /// `Set-Cookie` value establishing the session.
    pub fn session_cookie(&self, id: &SessionId) -> String {
        self.build(
            self.name.clone(),
            self.seal(id),
            self.max_age_secs,
            "/",
            true,
        )
    }

    /// `Set-Cookie` value removing the session cookie.
    pub fn clear_session_cookie(&self) -> String {
        self.build(self.name.clone(), String::new(), 0, "/", true)
    }

    /// Encrypts `plaintext` as the value of cookie `name`.
    pub fn encrypt(&self, name: &str, plaintext: &str) -> String {
        let mut jar = CookieJar::new();
        jar.private_mut(&self.keys[0])
            .add(Cookie::new(name.to_owned(), plaintext.to_owned()));
        jar.get(name)
            .map(|c| c.value().to_owned())
            .unwrap_or_default()
    }

    /// Decrypts cookie `name`'s value under any key.
    pub fn decrypt(&self, name: &str, value: &str) -> Option<String> {
        if value.len() > 4096 {
            return None;
        }
        let jar = CookieJar::new();
        self.keys.iter().find_map(|key| {
            jar.private(key)
                .decrypt(Cookie::new(name.to_owned(), value.to_owned()))
                .map(|c| c.value().to_owned())
        })
    }

    /// A `Set-Cookie` value with our standard attributes (HttpOnly,
    /// SameSite=Lax, Secure unless disabled). `with_domain` applies the
    /// configured Domain (the session cookie); flow cookies stay host-only.
    pub fn build(
        &self,
        name: String,
        value: String,
        max_age_secs: i64,
        path: &str,
        with_domain: bool,
    ) -> String {
        let mut c = Cookie::build((name, value))
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .path(path.to_owned())
            .max_age(cookie::time::Duration::seconds(max_age_secs));
        if with_domain {
            if let Some(d) = &self.domain {
                c = c.domain(d.clone());
            }
        }
        c.build().to_string()
    }
}

/// Decoding tables for one base64 alphabet, one per position in a group of
/// four characters: `table[k][byte]` is the byte's 6-bit value already
/// shifted to where the k-th character's bits sit in the group's 24 bits, or
/// [`INVALID`] (a bit above those 24) for a byte outside the alphabet. A
/// group then decodes with four loads and three ORs, and errors are
/// collected by OR-ing every group and checked once at the end.
type DecodeTable = [[u32; 256]; 4];

const INVALID: u32 = 1 << 31;
static STANDARD_TABLE: DecodeTable =
    decode_table(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
static URL_SAFE_TABLE: DecodeTable =
    decode_table(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");

const fn decode_table(alphabet: &[u8; 64]) -> DecodeTable {
    let mut t = [[INVALID; 256]; 4];
    let mut k = 0;
    while k < 4 {
        let mut i = 0;
        while i < 64 {
            t[k][alphabet[i] as usize] = (i as u32) << (18 - 6 * k);
            i += 1;
        }
        k += 1;
    }
    t
}

/// Decodes the 43 characters that carry 32 bytes in base64 (padding, if
/// any, already removed). Strict: every character must be in the alphabet,
/// and the encoding canonical (the two bits left over in the last character
/// zero). Both general-purpose crates spend several times as many
/// instructions on these fixed-size values, and this runs twice on every
/// request with a session cookie.
fn decode_32(s: &[u8; 43], t: &DecodeTable) -> Option<[u8; 32]> {
    let at = |k: usize, c: u8| t[k][usize::from(c)];
    let mut out = [0u8; 32];
    let mut bad = 0u32;
    for (chars, bytes) in s[..40].chunks_exact(4).zip(out.chunks_exact_mut(3)) {
        let n = at(0, chars[0]) | at(1, chars[1]) | at(2, chars[2]) | at(3, chars[3]);
        bad |= n;
        bytes.copy_from_slice(&n.to_be_bytes()[1..]);
    }
    // The last three characters carry 18 bits: two bytes and two spare bits,
    // which land in the group's low byte and must be zero.
    let n = at(0, s[40]) | at(1, s[41]) | at(2, s[42]);
    if (bad | n) & INVALID != 0 || n & 0xff != 0 {
        return None;
    }
    let [_, b30, b31, _] = n.to_be_bytes();
    out[30] = b30;
    out[31] = b31;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::secret::Secret;
    use crate::config::StoreKind;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    use proptest::prelude::*;

    #[test]
    fn decode_32_agrees_with_the_base64_crate_and_is_strict() {
        for seed in 0u8..=255 {
            let bytes: [u8; 32] = std::array::from_fn(|i| {
                seed.wrapping_mul(31)
                    .wrapping_add((i as u8).wrapping_mul(97))
            });
            for (engine, table) in [
                (&STANDARD, &STANDARD_TABLE),
                (&URL_SAFE_NO_PAD, &URL_SAFE_TABLE),
            ] {
                let text = engine.encode(bytes);
                let s: [u8; 43] = text.as_bytes()[..43].try_into().unwrap();
                assert_eq!(decode_32(&s, table), Some(bytes));
                // Any character outside the alphabet, anywhere, fails.
                for pos in [0, 17, 39, 40, 42] {
                    for junk in [
                        b'=',
                        b'*',
                        b' ',
                        0xc3,
                        if table == &STANDARD_TABLE { b'-' } else { b'+' },
                    ] {
                        let mut t = s;
                        t[pos] = junk;
                        assert_eq!(decode_32(&t, table), None);
                    }
                }
            }
        }
        // Every byte at every position, against the crate's strict decoders.
        for (engine, table) in [
            (&STANDARD_NO_PAD, &STANDARD_TABLE),
            (&URL_SAFE_NO_PAD, &URL_SAFE_TABLE),
        ] {
            for seed in [0u8, 0x5a, 0xff] {
                let text = engine.encode([seed; 32]);
                let s: [u8; 43] = text.as_bytes().try_into().unwrap();
                for pos in 0..43 {
                    for junk in 0..=255u8 {
                        let mut t = s;
                        t[pos] = junk;
                        let want = engine
                            .decode(t)
                            .ok()
                            .map(|v| <[u8; 32]>::try_from(v).unwrap());
                        assert_eq!(decode_32(&t, table), want, "{pos} {junk}");
                    }
                }
            }
        }
        // Non-canonical: leftover bits in the last character.
        let mut s: [u8; 43] = URL_SAFE_NO_PAD
            .encode([0u8; 32])
            .as_bytes()
            .try_into()
            .unwrap();
        s[42] = b'B';
        assert_eq!(decode_32(&s, &URL_SAFE_TABLE), None);
    }
    use std::time::Duration;

    fn cfg(secrets: &[&[u8]]) -> SessionConfig {
        SessionConfig {
            cookie_name: "_portcullis".into(),
            cookie_domain: Some("example.com".into()),
            cookie_secure: true,
            secrets: secrets.iter().map(|s| Secret::new(s.to_vec())).collect(),
            lifetime: Duration::from_secs(3600),
            idle_timeout: None,
            refresh: false,
            store: StoreKind::Memory,
            redis_urls: vec![],
            redis_ca: None,
            local_cache: true,
        }
    }

    const A: &[u8] = b"0123456789abcdef0123456789abcdef";
    const B: &[u8] = b"fedcba9876543210fedcba9876543210";

    #[test]
    fn round_trip() {
        let k = SessionKeys::new(&cfg(&[A]));
        let id = SessionId::random();
        assert_eq!(k.unseal(k.seal(&id)), Some(id));
    }

    #[test]
    fn tampered_truncated_oversized_and_foreign_values_fail() {
        let k = SessionKeys::new(&cfg(&[A]));
        let id = SessionId::random();
        let sealed = k.seal(&id);
        // flip every character position once
        for i in 0..sealed.len() {
            let mut b = sealed.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let s = String::from_utf8(b).unwrap();
            if s != sealed {
                assert_eq!(k.unseal(&s), None, "flipped byte {i}");
            }
        }
        for n in 0..sealed.len() {
            assert_eq!(k.unseal(&sealed[..n]), None);
        }
        assert_eq!(k.unseal("A".repeat(100_000)), None);
        assert_eq!(k.unseal("é漢字\u{0}"), None);
        let other = SessionKeys::new(&cfg(&[B]));
        assert_eq!(other.unseal(&sealed), None);
    }

    /// Values the `cookie` crate itself signed under our key, but whose
    /// payload is not a session id, never unseal.
    #[test]
    fn signed_values_that_are_not_session_ids_fail() {
        let k = SessionKeys::new(&cfg(&[A]));
        let sign = |v: &str| {
            let mut jar = CookieJar::new();
            jar.signed_mut(&k.keys[0])
                .add(Cookie::new("_portcullis", v.to_owned()));
            jar.get("_portcullis").unwrap().value().to_owned()
        };
        let good = URL_SAFE_NO_PAD.encode([7u8; 32]);
        assert_eq!(k.unseal(sign(&good)), Some(SessionId([7u8; 32])));
        // 31 and 33 bytes, padded, standard alphabet, non-canonical last char
        for v in [
            URL_SAFE_NO_PAD.encode([7u8; 31]),
            URL_SAFE_NO_PAD.encode([7u8; 33]),
            format!("{good}="),
            STANDARD
                .encode([0xffu8; 32])
                .trim_end_matches('=')
                .to_owned(),
            format!("{}B", &good[..42]),
            String::new(),
        ] {
            assert_eq!(k.unseal(sign(&v)), None, "{v:?}");
        }
    }

    fn b64_text(alphabet: &'static [u8], len: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(proptest::sample::select(alphabet.to_vec()), len)
    }

    const STD: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    proptest! {
        /// Any bytes at all, and values shaped exactly like a sealed cookie
        /// (digest in the standard alphabet with its `=`, id in the URL-safe
        /// one), never unseal: only what the key signed does.
        #[test]
        fn prop_unseal_accepts_nothing_it_did_not_sign(
            junk in proptest::collection::vec(any::<u8>(), 0..200),
            digest in b64_text(STD, 43),
            id in b64_text(URL, 43),
        ) {
            let k = SessionKeys::new(&cfg(&[A]));
            prop_assert_eq!(k.unseal(&junk), None);
            let shaped = [&digest[..], b"=", &id[..]].concat();
            prop_assert_eq!(k.unseal(&shaped), None);
        }

        /// Every id comes back from its own sealed value, under the signing
        /// key and any rotation that keeps it; never under another key; and
        /// any change of any byte of the value breaks it.
        #[test]
        fn prop_sealed_ids_unseal_and_nothing_near_them_does(
            id in any::<[u8; 32]>(),
            pos in 0usize..(DIGEST_B64_LEN + ID_B64_LEN),
            byte in any::<u8>(),
        ) {
            let k = SessionKeys::new(&cfg(&[A]));
            let id = SessionId(id);
            let sealed = k.seal(&id).into_bytes();
            prop_assert_eq!(k.unseal(&sealed), Some(id));
            prop_assert_eq!(SessionKeys::new(&cfg(&[B, A])).unseal(&sealed), Some(id));
            prop_assert_eq!(SessionKeys::new(&cfg(&[B])).unseal(&sealed), None);
            let mut changed = sealed.clone();
            prop_assume!(changed[pos] != byte);
            changed[pos] = byte;
            prop_assert_eq!(k.unseal(&changed), None);
        }
    }

    #[test]
    fn rotation_first_signs_all_verify() {
        let old = SessionKeys::new(&cfg(&[A]));
        let rotated = SessionKeys::new(&cfg(&[B, A]));
        let id = SessionId::random();
        assert_eq!(rotated.unseal(old.seal(&id)), Some(id));
        let fresh = rotated.seal(&id);
        assert_eq!(
            old.unseal(&fresh),
            None,
            "new cookies are signed with the first secret"
        );
        assert_eq!(rotated.unseal(&fresh), Some(id));
    }

    #[test]
    fn encrypted_flow_values_are_bound_to_their_name() {
        let k = SessionKeys::new(&cfg(&[A]));
        let v = k.encrypt("flow_a", "secret state");
        assert!(!v.contains("secret"));
        assert_eq!(k.decrypt("flow_a", &v).as_deref(), Some("secret state"));
        assert_eq!(k.decrypt("flow_b", &v), None);
        assert_eq!(k.decrypt("flow_a", &v[..v.len() - 2]), None);
    }

    #[test]
    fn cookie_attributes() {
        let k = SessionKeys::new(&cfg(&[A]));
        let c = k.session_cookie(&SessionId::random());
        for attr in [
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Domain=example.com",
            "Max-Age=3600",
        ] {
            assert!(c.contains(attr), "{c} lacks {attr}");
        }
    }
}

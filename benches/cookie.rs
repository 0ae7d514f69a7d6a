//! Session cookie verification on the request hot path.
//!
//! [`SessionKeys::unseal`] is measured on a valid cookie, a tampered one (one
//! MAC character changed), a foreign one (signed by another deployment's
//! secret), a value that is not a sealed cookie at all, and a valid cookie
//! signed with the second of two rotated secrets; [`SessionKeys::seal`] beside
//! them. Two baselines show what the `cookie` crate's jar costs on top of the
//! cryptography:
//!
//! - `naive_jar`: what a first implementation does per request — parse the
//!   whole `Cookie` header into a `CookieJar` and ask its signed view for the
//!   session cookie;
//! - `direct_hmac`: the same HMAC-SHA256 check written directly (decode the
//!   MAC into a stack buffer, key the MAC, compare in constant time), with no
//!   jar and no allocation — once keying per call, once cloning a MAC keyed
//!   at start-up. This is the floor the real structure can reach.

use std::hint::black_box;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use hmac::{Hmac, Mac};
use portcullis::auth::session::{SessionId, SessionKeys};
use portcullis::base::secret::Secret;
use portcullis::config::{SessionConfig, StoreKind};
use sha2::Sha256;

const SECRET: &[u8] = b"a-benchmark-session-secret-that-is-long-enough";
const OTHER: &[u8] = b"another-deployment-secret-that-is-long-enough!!";
const NAME: &str = "_portcullis";

fn cfg(secrets: &[&[u8]]) -> SessionConfig {
    SessionConfig {
        cookie_name: NAME.into(),
        cookie_domain: None,
        cookie_secure: true,
        secrets: secrets.iter().map(|s| Secret::new(s.to_vec())).collect(),
        lifetime: Duration::from_secs(12 * 3600),
        idle_timeout: None,
        refresh: false,
        store: StoreKind::Memory,
        redis_urls: vec![],
        redis_ca: None,
        local_cache: true,
    }
}

/// Length of the base64 (standard, padded) HMAC-SHA256 prefix of a sealed value.
const MAC_B64_LEN: usize = 44;

/// The HMAC check of a sealed value written out directly.
struct Direct {
    key: [u8; 32],
    keyed: Hmac<Sha256>,
}

impl Direct {
    fn new(secret: &[u8]) -> Direct {
        let derived = cookie::Key::derive_from(secret);
        let mut key = [0u8; 32];
        key.copy_from_slice(derived.signing());
        let keyed = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
        Direct { key, keyed }
    }

    fn open(&self, value: &str, mac: Hmac<Sha256>) -> Option<SessionId> {
        if value.len() > 256 || !value.is_char_boundary(MAC_B64_LEN) {
            return None;
        }
        let (tag, id_b64) = value.split_at(MAC_B64_LEN);
        let mut tag_bytes = [0u8; 33];
        let n = STANDARD.decode_slice(tag, &mut tag_bytes).ok()?;
        let mut mac = mac;
        mac.update(id_b64.as_bytes());
        mac.verify_slice(&tag_bytes[..n]).ok()?;
        let mut id = [0u8; 32];
        let n = URL_SAFE_NO_PAD.decode_slice(id_b64, &mut id).ok()?;
        (n == 32).then_some(SessionId(id))
    }

    /// Keys the MAC on every call, as the `cookie` crate does.
    fn unseal(&self, value: &str) -> Option<SessionId> {
        let mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        self.open(value, mac)
    }

    /// Clones a MAC keyed once (the inner and outer pads already hashed).
    fn unseal_prekeyed(&self, value: &str) -> Option<SessionId> {
        self.open(value, self.keyed.clone())
    }
}

/// The naive approach: the whole header into a jar, then the signed view.
fn naive_jar(key: &cookie::Key, header: &str) -> Option<SessionId> {
    let mut jar = cookie::CookieJar::new();
    for c in cookie::Cookie::split_parse(header.to_owned()).flatten() {
        jar.add_original(c.into_owned());
    }
    let c = jar.signed(key).get(NAME)?;
    let bytes = URL_SAFE_NO_PAD.decode(c.value()).ok()?;
    let id: [u8; 32] = bytes.try_into().ok()?;
    Some(SessionId(id))
}

fn tamper(value: &str) -> String {
    let mut b = value.as_bytes().to_vec();
    b[10] = if b[10] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).expect("ascii")
}

fn cookies(c: &mut Criterion) {
    let keys = SessionKeys::new(&cfg(&[SECRET]));
    let rotated = SessionKeys::new(&cfg(&[OTHER, SECRET]));
    let foreign_keys = SessionKeys::new(&cfg(&[OTHER]));
    let id = SessionId::random();
    let valid = keys.seal(&id);
    let tampered = tamper(&valid);
    let foreign = foreign_keys.seal(&id);
    let junk = "GA1.2.1234567890.1234567890-not-a-sealed-session-cookie-value-at-all";
    let direct = Direct::new(SECRET);
    let key = cookie::Key::derive_from(SECRET);
    let header = format!("_ga=GA1.2.1234567890.1234567890; theme=dark; {NAME}={valid}; lang=en");

    assert_eq!(keys.unseal(&valid), Some(id));
    assert_eq!(keys.unseal(&tampered), None);
    assert_eq!(keys.unseal(&foreign), None);
    assert_eq!(keys.unseal(junk), None);
    assert_eq!(rotated.unseal(&valid), Some(id));
    assert_eq!(direct.unseal(&valid), Some(id));
    assert_eq!(direct.unseal_prekeyed(&valid), Some(id));
    assert_eq!(direct.unseal(&tampered), None);
    assert_eq!(direct.unseal(&foreign), None);
    assert_eq!(naive_jar(&key, &header), Some(id));

    let mut g = c.benchmark_group("unseal");
    for (case, value) in [
        ("valid", valid.as_str()),
        ("tampered", tampered.as_str()),
        ("foreign", foreign.as_str()),
        ("junk", junk),
    ] {
        g.bench_function(format!("{case}/session_keys"), |b| {
            b.iter(|| black_box(&keys).unseal(black_box(value)))
        });
        g.bench_function(format!("{case}/direct_hmac"), |b| {
            b.iter(|| black_box(&direct).unseal(black_box(value)))
        });
        g.bench_function(format!("{case}/direct_hmac_prekeyed"), |b| {
            b.iter(|| black_box(&direct).unseal_prekeyed(black_box(value)))
        });
    }
    g.bench_function("valid_second_of_two_keys/session_keys", |b| {
        b.iter(|| black_box(&rotated).unseal(black_box(&valid)))
    });
    g.bench_function("valid_from_header/naive_jar", |b| {
        b.iter(|| naive_jar(black_box(&key), black_box(&header)))
    });
    g.finish();

    let mut g = c.benchmark_group("seal");
    g.bench_function("session_keys", |b| {
        b.iter(|| black_box(&keys).seal(black_box(&id)))
    });
    g.finish();
}

criterion_group!(benches, cookies);
criterion_main!(benches);

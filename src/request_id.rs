//! Request ids: every request gets one, returned to the client and passed
//! to the upstream as `X-Request-Id`, and named on the request's log lines
//! (`request.id`) and in its access log line.
//!
//! An `X-Request-Id` from a peer in `server.trusted_proxies` is kept when it
//! is 1 to 128 bytes of visible ASCII; anyone else's, or a malformed one, is
//! replaced, so a client cannot pick the id its requests are logged under.
//!
//! Generated ids are a random per-process prefix and a counter
//! (`3f9c01a2-000000000000002a`): unique within the process, unique across
//! instances with overwhelming probability, formatted on the stack; the
//! only allocation is the header value itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The header's name.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest id accepted from a trusted peer.
pub const MAX_LEN: usize = 128;

/// The random prefix of this process's ids, as hex.
static PREFIX: LazyLock<[u8; 8]> = LazyLock::new(|| hex8(rand::random::<u32>() as u64));

/// The count of ids generated so far.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The id of a request with headers `headers`, from a peer that is `trusted`
/// or not; `None` means keep the request's own (valid, trusted) header.
pub fn of(headers: &HeaderMap, trusted: bool) -> Option<HeaderValue> {
    if trusted {
        let mut all = headers.get_all(&X_REQUEST_ID).iter();
        if let (Some(v), None) = (all.next(), all.next()) {
            if is_valid(v.as_bytes()) {
                return None;
            }
        }
    }
    Some(generate())
}

/// True for 1 to [`MAX_LEN`] bytes of visible ASCII (no spaces, no controls).
pub fn is_valid(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.iter().all(|b| b.is_ascii_graphic())
}

/// A fresh id: the process prefix, `-`, the counter as 16 hex digits.
pub fn generate() -> HeaderValue {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; 25];
    buf[..8].copy_from_slice(&*PREFIX);
    buf[8] = b'-';
    buf[9..17].copy_from_slice(&hex8(n >> 32));
    buf[17..].copy_from_slice(&hex8(n));
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The low 32 bits of `n` as 8 lower-case hex digits.
fn hex8(n: u64) -> [u8; 8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 8];
    for (i, o) in out.iter_mut().enumerate() {
        *o = DIGITS[((n >> (28 - 4 * i)) & 0xf) as usize];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_distinct_and_share_the_prefix() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(is_valid(a.as_bytes()) && a.len() == 25, "{a:?}");
        assert_eq!(a.as_bytes()[..9], b.as_bytes()[..9]);
        assert_eq!(a.as_bytes()[8], b'-');
    }

    #[test]
    fn hex_digits() {
        assert_eq!(&hex8(0x2a), b"0000002a");
        assert_eq!(&hex8(0xdead_beef_0000_0001), b"00000001");
        assert_eq!(&hex8(0xdead_beef_0000_0001 >> 32), b"deadbeef");
    }

    #[test]
    fn validation() {
        assert!(is_valid(b"abc-123_XYZ.~:/"));
        assert!(is_valid(&[b'a'; MAX_LEN]));
        assert!(!is_valid(&[b'a'; MAX_LEN + 1]));
        assert!(!is_valid(b""));
        assert!(!is_valid(b"has space"));
        assert!(!is_valid(b"tab\there"));
        assert!(!is_valid("caf\u{e9}".as_bytes()));
        assert!(!is_valid(b"nul\0"));
    }

    #[test]
    fn only_a_trusted_peers_valid_single_id_is_kept() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("from-the-proxy"));
        assert!(of(&h, true).is_none());
        assert!(
            of(&h, false).is_some(),
            "an untrusted peer's id is replaced"
        );
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("two words"));
        assert!(of(&h, true).is_some(), "a malformed id is replaced");
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("a"));
        h.append(&X_REQUEST_ID, HeaderValue::from_static("b"));
        assert!(of(&h, true).is_some(), "two ids are replaced by one");
        assert!(of(&HeaderMap::new(), true).is_some());
    }
}

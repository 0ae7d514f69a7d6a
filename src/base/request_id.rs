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
//! instances with overwhelming probability. Each thread takes a block of
//! counter values at a time and renders them into one buffer; an id is a
//! reference-counted slice of it, so handing one out allocates nothing.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use bytes::Bytes;
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

/// The span of a request's log lines, naming its id.
pub fn span(id: &HeaderValue) -> tracing::Span {
    tracing::info_span!("request", request.id = id.to_str().unwrap_or("-"))
}

/// Enters the request's span for a log line about to be written, unless the
/// line is already in it (a forward-auth check runs without a span unless
/// debug logging is on: a span per check costs more than the check).
pub fn enter_span(id: &HeaderValue) -> Option<tracing::span::EnteredSpan> {
    let current = tracing::Span::current();
    let inside = current.metadata().is_some_and(|m| m.name() == "request");
    (!inside).then(|| span(id).entered())
}

/// True for 1 to [`MAX_LEN`] bytes of visible ASCII (no spaces, no controls).
pub fn is_valid(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.iter().all(|b| b.is_ascii_graphic())
}

/// Length of a generated id.
const ID_LEN: usize = 25;

/// Ids a thread renders at a time.
const BLOCK: usize = 64;

/// A fresh id: the process prefix, `-`, the counter as 16 hex digits.
pub fn generate() -> HeaderValue {
    thread_local! {
        /// This thread's rendered ids and how many of them are handed out.
        static IDS: RefCell<(Bytes, usize)> = const { RefCell::new((Bytes::new(), BLOCK)) };
    }
    IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        if ids.1 >= BLOCK {
            *ids = (render_block(), 0);
        }
        let at = ids.1 * ID_LEN;
        ids.1 += 1;
        HeaderValue::from_maybe_shared(ids.0.slice(at..at + ID_LEN))
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
    })
}

/// The next [`BLOCK`] ids, back to back.
fn render_block() -> Bytes {
    let first = COUNTER.fetch_add(BLOCK as u64, Ordering::Relaxed);
    let mut buf = Vec::with_capacity(BLOCK * ID_LEN);
    for n in first..first + BLOCK as u64 {
        buf.extend_from_slice(&*PREFIX);
        buf.push(b'-');
        buf.extend_from_slice(&hex8(n >> 32));
        buf.extend_from_slice(&hex8(n));
    }
    Bytes::from(buf)
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
        let many: std::collections::HashSet<_> = (0..3 * BLOCK).map(|_| generate()).collect();
        assert_eq!(many.len(), 3 * BLOCK, "ids across blocks are distinct");
        assert!(many
            .iter()
            .all(|id| is_valid(id.as_bytes()) && id.len() == ID_LEN));
        let other = std::thread::spawn(generate).join().unwrap();
        assert!(!many.contains(&other), "another thread's block is disjoint");
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

//! Request-path normalisation: the one place that decides which path a rule sees.
//!
//! Owns [`split_target`] (the path part of a request-target) and [`normalize`]
//! (SPEC "Paths are matched after normalisation"). Called once per request by
//! whoever builds [`RequestFacts`](crate::auth::rules::RequestFacts) (`forward_auth`,
//! `proxy`), and by [`RuleSet::compile`](crate::auth::rules::RuleSet::compile) to check
//! that rule paths are themselves normal. An `Err` here is answered with 400 and
//! the request never reaches an upstream.
//!
//! What normalisation does, in order:
//!
//! 1. rejects what must never be forwarded: an encoded slash or backslash
//!    (`%2f`, `%5c`), a raw backslash, NUL (raw or `%00`), any other ASCII control
//!    character raw or percent-encoded, malformed percent-encoding, a raw `?` or
//!    `#` (the caller passed a query or fragment), a double-encoded dot, slash,
//!    backslash or NUL (`%252e`, `%252f`, `%255c`, `%2500`), and a path that does
//!    not start with `/`;
//! 2. decodes percent-encoded unreserved characters (ALPHA DIGIT `-._~`, either
//!    hex case), so `%2e%2e` is a dot-segment and `/%61dmin` is `/admin`; other
//!    percent-encodings stay encoded with upper-case hex (`%c3%a9` → `%C3%A9`);
//!    raw bytes that a URI path cannot hold (non-ASCII, space, `"<>^`{|}[]`) are
//!    percent-encoded the same way, so `/café` and `/caf%C3%A9` are one path;
//! 3. removes dot-segments (RFC 3986 §5.2.4) and merges repeated slashes, keeping
//!    a trailing slash (`/a/./b/` → `/a/b/`, `/a/..` → `/`); climbing above the
//!    root (`/../x`, `/a/../../x`) is an error;
//! 4. rejects segments whose name before a `;` is empty or a dot-segment
//!    (`/..;/admin`, `/.;x/admin`, `/;x/admin`): servlet containers strip
//!    `;params` before resolving dot-segments, so these would resolve differently
//!    upstream than here.
//!
//! Matrix parameters: a `;` inside a segment is kept in the normalised path, and
//! rule matching ignores everything from the first `;` to the end of each
//! segment (see [`crate::auth::rules`]), so `/admin;jsessionid=x` is matched as
//! `/admin`, which is what Tomcat and Spring route it to.
//!
//! Matching stays case-sensitive: `/ADMIN` is not `/admin`. An upstream that
//! routes case-insensitively needs a rule for each spelling or a deny default.
//!
//! The common case, an already-normal path, is returned borrowed without
//! allocating.

use std::borrow::Cow;

/// Why a request path was refused (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/` (e.g. `*`, or a relative reference).
    #[error("path does not start with '/'")]
    NotAbsolute,
    /// `%2f` in any case: the upstream may decode it into a separator the rules never saw.
    #[error("path contains an encoded slash")]
    EncodedSlash,
    /// `%5c` in any case: some upstreams treat it as a separator.
    #[error("path contains an encoded backslash")]
    EncodedBackslash,
    /// A raw `\`: some upstreams (IIS, some Windows servers) treat it as `/`.
    #[error("path contains a backslash")]
    Backslash,
    /// A raw NUL or `%00`: truncates the path in C-based upstreams.
    #[error("path contains a nul character")]
    Nul,
    /// A raw ASCII control character other than NUL (tab, CR, LF, DEL, ...).
    #[error("path contains a control character")]
    ControlChar,
    /// A percent-encoded ASCII control character other than NUL (`%0a`, `%7f`, ...).
    #[error("path contains an encoded control character")]
    EncodedControlChar,
    /// `%` not followed by two hex digits (`%zz`, `%4`).
    #[error("path contains malformed percent-encoding")]
    MalformedPercent,
    /// `%25` followed by an encoded dot, slash, backslash or NUL (`%252e`):
    /// an upstream that decodes twice would see a different path.
    #[error("path contains double percent-encoding of a dot, slash, backslash or nul")]
    DoubleEncoded,
    /// A raw `?` or `#`: the caller passed a query or fragment as part of the path.
    #[error("path contains a raw '?' or '#'")]
    Delimiter,
    /// Dot-segments climb above the root (`/../x`, `/a/../../x`).
    #[error("path climbs above the root")]
    AboveRoot,
    /// A segment whose name before `;` is empty, `.` or `..` (`/..;/x`): servlet
    /// containers would resolve it as a dot-segment or an empty segment.
    #[error("path has a segment that is empty or a dot-segment before its ';' parameters")]
    ParamSegment,
}

/// The path part of a request-target: everything before the first `?` or `#`.
///
/// An absolute-form target (`http://host/p?q`) yields its path (`/p`); an empty
/// path yields `/`. The result is not normalised: pass it to [`normalize`].
pub fn split_target(target: &str) -> &str {
    let rest = match absolute_form_path(target) {
        Some(rest) => rest,
        None => target,
    };
    let end = rest
        .bytes()
        .position(|b| b == b'?' || b == b'#')
        .unwrap_or(rest.len());
    match &rest[..end] {
        "" => "/",
        path => path,
    }
}

/// For `scheme://authority/path...`, the part from the path on; `None` otherwise.
fn absolute_form_path(target: &str) -> Option<&str> {
    if target.starts_with('/') {
        return None; // origin form, the common case
    }
    let colon = target.find(':')?;
    let scheme = &target[..colon];
    let mut chars = scheme.bytes();
    let first_alpha = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let scheme_ok = first_alpha && chars.all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c));
    let after = target[colon..].strip_prefix("://")?;
    if !scheme_ok {
        return None;
    }
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    Some(&after[authority_end..])
}

/// Normalises a request path per SPEC; see the module documentation.
///
/// Returns `Cow::Borrowed` when `path` is already normal.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if is_plainly_normal(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    normalize_scanned(path)
}

/// The full normalisation, for every path the fast path did not accept.
fn normalize_scanned(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let normal = if scan(path.as_bytes())? {
        Cow::Owned(rewrite(path)?)
    } else {
        Cow::Borrowed(path)
    };
    check_params(&normal)?;
    Ok(normal)
}

/// How [`is_plainly_normal`] treats each byte.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Plain {
    /// Needs a closer look: `%`, `;`, controls, non-ASCII, and every byte
    /// that is refused or re-encoded.
    No,
    /// A byte that normalisation neither rejects, decodes nor re-encodes.
    Yes,
    /// `/` or `.`: plain unless it follows a `/` (`//`, or a segment that
    /// starts with a dot and may be a dot-segment).
    AfterNonSlash,
}

static PLAIN: [Plain; 256] = plain_table();

const fn plain_table() -> [Plain; 256] {
    let mut t = [Plain::No; 256];
    let mut c = 0x21; // visible ASCII only: no space, controls or DEL
    while c < 0x7f {
        t[c] = Plain::Yes;
        c += 1;
    }
    let special = b"%;\\?#\"<>^`{|}[]";
    let mut i = 0;
    while i < special.len() {
        t[special[i] as usize] = Plain::No;
        i += 1;
    }
    t[b'/' as usize] = Plain::AfterNonSlash;
    t[b'.' as usize] = Plain::AfterNonSlash;
    t
}

/// Fast path for the common already-normal path: true when `b` starts with
/// `/` and holds only bytes that [`scan`] lets through untouched, no `//`,
/// and no segment starting with `.`. That skips the per-byte checks of
/// [`scan`] and [`check_params`], which is safe because such a path has
/// nothing they act on: no `%`, no `;`, no refused or re-encoded byte, no
/// repeated slash and no dot-segment (only a segment starting with `.` can
/// be one). Everything else, `/.well-known` included, takes the full path.
fn is_plainly_normal(b: &[u8]) -> bool {
    let [b'/', rest @ ..] = b else {
        return false;
    };
    let mut prev = b'/';
    for &c in rest {
        match PLAIN[usize::from(c)] {
            Plain::Yes => {}
            Plain::AfterNonSlash if prev != b'/' => {}
            _ => return false,
        }
        prev = c;
    }
    true
}

/// Byte-level validation. `Ok(true)` when the path needs rewriting (decoding,
/// re-encoding, dot-segments, repeated slashes), `Ok(false)` when it is normal.
fn scan(b: &[u8]) -> Result<bool, PathError> {
    let mut dirty = false;
    let mut seg_start = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'%' => {
                let v = decode_at(b, i)?;
                check_decoded(b, i, v)?;
                dirty |= is_unreserved(v)
                    || b[i + 1].is_ascii_lowercase()
                    || b[i + 2].is_ascii_lowercase();
                i += 3;
                continue;
            }
            b'/' => {
                dirty |= (i > 0 && i == seg_start) || is_dot_segment(&b[seg_start..i]);
                seg_start = i + 1;
            }
            _ => {
                check_raw(c)?;
                dirty |= needs_encoding(c);
            }
        }
        i += 1;
    }
    Ok(dirty || is_dot_segment(&b[seg_start..]))
}

/// The byte encoded by the `%XX` at `b[i]`.
fn decode_at(b: &[u8], i: usize) -> Result<u8, PathError> {
    let hi = b.get(i + 1).and_then(|&c| hex_value(c));
    let lo = b.get(i + 2).and_then(|&c| hex_value(c));
    match (hi, lo) {
        (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
        _ => Err(PathError::MalformedPercent),
    }
}

/// Rejects encoded bytes that must never be forwarded; `i` is the `%`.
fn check_decoded(b: &[u8], i: usize, v: u8) -> Result<(), PathError> {
    match v {
        0 => Err(PathError::Nul),
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::EncodedBackslash),
        c if c.is_ascii_control() => Err(PathError::EncodedControlChar),
        b'%' => match (
            b.get(i + 3).and_then(|&c| hex_value(c)),
            b.get(i + 4).and_then(|&c| hex_value(c)),
        ) {
            (Some(hi), Some(lo)) if matches!(hi << 4 | lo, 0 | b'.' | b'/' | b'\\') => {
                Err(PathError::DoubleEncoded)
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Rejects raw bytes that must never be forwarded.
fn check_raw(c: u8) -> Result<(), PathError> {
    match c {
        0 => Err(PathError::Nul),
        b'\\' => Err(PathError::Backslash),
        b'?' | b'#' => Err(PathError::Delimiter),
        c if c.is_ascii_control() => Err(PathError::ControlChar),
        _ => Ok(()),
    }
}

/// Builds the normal form of a path that [`scan`] accepted but found dirty.
fn rewrite(path: &str) -> Result<String, PathError> {
    let canonical = canonical_bytes(path)?;
    // Decoding can complete an escape the raw text spelled in pieces
    // (`%25%32e` becomes `%252e`, a double-encoded dot): check the decoded
    // text too, before dot-segments could remove the evidence.
    scan(canonical.as_bytes())?;
    let mut out = String::with_capacity(canonical.len());
    let mut depth = 0usize;
    let mut ends_as_dir = false;
    for seg in canonical[1..].split('/') {
        ends_as_dir = true;
        match seg {
            "" | "." => {}
            ".." => {
                depth = depth.checked_sub(1).ok_or(PathError::AboveRoot)?;
                let cut = out.rfind('/').unwrap_or(0);
                out.truncate(cut);
            }
            _ => {
                depth += 1;
                out.push('/');
                out.push_str(seg);
                ends_as_dir = false;
            }
        }
    }
    if out.is_empty() || ends_as_dir {
        out.push('/');
    }
    Ok(out)
}

/// Decodes unreserved `%XX`, upper-cases the other escapes and encodes raw bytes
/// a path cannot hold. The input was validated by [`scan`].
fn canonical_bytes(path: &str) -> Result<String, PathError> {
    let b = path.as_bytes();
    let mut out = String::with_capacity(b.len() + 8);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let v = decode_at(b, i)?;
            if is_unreserved(v) {
                out.push(char::from(v));
            } else {
                push_escape(&mut out, v);
            }
            i += 3;
        } else {
            if needs_encoding(c) {
                push_escape(&mut out, c);
            } else {
                out.push(char::from(c));
            }
            i += 1;
        }
    }
    Ok(out)
}

/// Rejects `;`-parameter segments whose name is empty or a dot-segment.
fn check_params(path: &str) -> Result<(), PathError> {
    if !path.contains(';') {
        return Ok(());
    }
    for seg in path.split('/').filter(|s| s.contains(';')) {
        let name = seg.split(';').next().unwrap_or("");
        if matches!(name, "" | "." | "..") {
            return Err(PathError::ParamSegment);
        }
    }
    Ok(())
}

fn push_escape(out: &mut String, v: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(v >> 4)]));
    out.push(char::from(HEX[usize::from(v & 0xf)]));
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 unreserved: ALPHA DIGIT `-._~`.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

/// Bytes that are not `pchar` / `/` / `%` and so are re-encoded.
fn needs_encoding(c: u8) -> bool {
    !c.is_ascii()
        || matches!(
            c,
            b' ' | b'"' | b'<' | b'>' | b'^' | b'`' | b'{' | b'|' | b'}' | b'[' | b']'
        )
}

fn is_dot_segment(seg: &[u8]) -> bool {
    seg == b"." || seg == b".."
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> String {
        match normalize(input) {
            Ok(p) => p.into_owned(),
            Err(e) => panic!("{input:?} was rejected: {e}"),
        }
    }

    fn err(input: &str) -> PathError {
        match normalize(input) {
            Ok(p) => panic!("{input:?} was accepted as {p:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for p in [
            "/",
            "/admin",
            "/admin/",
            "/a/b/c.txt",
            "/a%20b",
            "/caf%C3%A9",
            "/x;jsessionid=1",
            "/a/.b/..c/...",
            "/api/v1/users:search",
            "/~user/-_.!$&'()*+,=:@",
        ] {
            assert!(
                matches!(normalize(p), Ok(Cow::Borrowed(_))),
                "{p:?} allocated"
            );
            assert_eq!(ok(p), p);
        }
    }

    /// The fast path only accepts what the full normalisation returns
    /// unchanged, over every path of up to five bytes from an alphabet of the
    /// bytes that matter (and every visible ASCII byte after `/a`).
    #[test]
    fn fast_path_agrees_with_the_full_normalisation() {
        let alphabet = b"/.a%2f;\\?#~ \t\x7f";
        let mut accepted = 0;
        let mut check = |p: &[u8]| {
            let Ok(text) = std::str::from_utf8(p) else {
                return;
            };
            if is_plainly_normal(p) {
                accepted += 1;
                assert_eq!(normalize_scanned(text), Ok(Cow::Borrowed(text)), "{text:?}");
            }
            assert_eq!(normalize(text), normalize_scanned(text), "{text:?}");
        };
        let mut p = Vec::new();
        for len in 0..=5u32 {
            for mut n in 0..alphabet.len().pow(len) {
                p.clear();
                for _ in 0..len {
                    p.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                check(&p);
            }
        }
        for c in 0..=255u8 {
            check(&[b'/', b'a', c]);
            check(&[b'/', c, b'/']);
            check(&[b'/', b'a', b'/', c]);
        }
        check("/caf\u{e9}".as_bytes());
        check("/\u{6f22}/x".as_bytes());
        assert!(accepted > 1000, "{accepted}");
        for p in ["/admin/users", "/a/b.c/d.", "/a./b..", "/x-y_z~/1:2@3", "/"] {
            assert!(is_plainly_normal(p.as_bytes()), "{p:?}");
        }
        for p in [
            "/.well-known",
            "/a./..b",
            "/a//b",
            "/a/.",
            "/a;b",
            "/a%41",
            "/a b",
            "a",
            "",
        ] {
            assert!(!is_plainly_normal(p.as_bytes()), "{p:?}");
        }
    }

    #[test]
    fn rewrites() {
        let cases = [
            ("/a/./b/", "/a/b/"),
            ("/a/..", "/"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/.", "/"),
            ("//", "/"),
            ("//admin", "/admin"),
            ("/./admin", "/admin"),
            ("/admin/../admin", "/admin"),
            ("/a//b///c", "/a/b/c"),
            ("/a//", "/a/"),
            ("/%61dmin", "/admin"),
            ("/%41%42%7e%7E%2d%5f", "/AB~~-_"),
            ("/x/%2e%2e/admin", "/admin"),
            ("/a/%2E/b", "/a/b"),
            ("/a/%2e%2E", "/"),
            ("/%c3%a9", "/%C3%A9"),
            ("/a%3bb", "/a%3Bb"),
            ("/café", "/caf%C3%A9"),
            ("/a b", "/a%20b"),
            ("/{x}", "/%7Bx%7D"),
            ("/admin;x/../y", "/y"),
        ];
        for (input, want) in cases {
            assert_eq!(ok(input), want, "{input:?}");
        }
    }

    #[test]
    fn rejections() {
        use PathError::*;
        let cases = [
            ("", NotAbsolute),
            ("admin", NotAbsolute),
            ("*", NotAbsolute),
            ("%2fadmin", NotAbsolute),
            ("/admin%2f..", EncodedSlash),
            ("/admin%2F", EncodedSlash),
            ("/admin%5c", EncodedBackslash),
            ("/admin%5C..", EncodedBackslash),
            ("/admin\\x", Backslash),
            ("/\\", Backslash),
            ("/%00", Nul),
            ("/a\0b", Nul),
            ("/a\tb", ControlChar),
            ("/a\r\nb", ControlChar),
            ("/a\x7f", ControlChar),
            ("/a%0d%0aSet-Cookie:x", EncodedControlChar),
            ("/a%09", EncodedControlChar),
            ("/a%7F", EncodedControlChar),
            ("/%zz", MalformedPercent),
            ("/%4", MalformedPercent),
            ("/%", MalformedPercent),
            ("/%g0", MalformedPercent),
            ("/%252e%252e/admin", DoubleEncoded),
            ("/a%252fb", DoubleEncoded),
            ("/a%255C", DoubleEncoded),
            ("/a%2500", DoubleEncoded),
            ("/a?b", Delimiter),
            ("/a#b", Delimiter),
            ("/..", AboveRoot),
            ("/../x", AboveRoot),
            ("/a/../../etc", AboveRoot),
            ("/%2e%2e/admin", AboveRoot),
            ("/a/%2e%2e/%2E%2E/x", AboveRoot),
            ("/..;/admin", ParamSegment),
            ("/public/..;/admin", ParamSegment),
            ("/public/%2e%2e;x/admin", ParamSegment),
            ("/.;/admin", ParamSegment),
            ("/;x/admin", ParamSegment),
        ];
        for (input, want) in cases {
            assert_eq!(err(input), want, "{input:?}");
        }
    }

    /// Found by `prop_encoded_unreserved_bytes_mean_themselves`: a
    /// double-encoded dot, slash, backslash or NUL whose hex digits are
    /// themselves percent-encoded (`%25%32e`) decodes to `%252e`, which an
    /// upstream decoding twice reads as `.`; it was accepted as `/%252e`.
    #[test]
    fn double_encoding_with_encoded_hex_digits_is_refused() {
        for p in [
            "/%25%32e",
            "/%25%32e%25%32e/admin",
            "/x/%25%32%45%25%32%65/admin",
            "/a%25%32f",
            "/a%25%32F",
            "/a%252%66",
            "/a%25%35%63",
            "/a%25%30%30",
            "/0%25%32e/..",
        ] {
            assert_eq!(err(p), PathError::DoubleEncoded, "{p:?}");
        }
        // An encoded percent before other encoded digits stays a literal `%`.
        assert_eq!(ok("/%25%34%31"), "/%2541");
    }

    #[test]
    fn percent_25_alone_is_kept() {
        assert_eq!(ok("/100%25"), "/100%25");
        assert_eq!(ok("/100%25x"), "/100%25x");
        assert_eq!(ok("/%2541"), "/%2541");
    }

    #[test]
    fn split_target_cuts_query_fragment_and_authority() {
        let cases = [
            ("/p?q=1", "/p"),
            ("/p#f", "/p"),
            ("/p?q#f", "/p"),
            ("/p", "/p"),
            ("", "/"),
            ("?q", "/"),
            ("http://h/p?q", "/p"),
            ("https://h:8443/a/b#x", "/a/b"),
            ("http://h", "/"),
            ("http://h?x", "/"),
            ("/a?b://c/d", "/a"),
            ("/a:b/c", "/a:b/c"),
            ("*", "*"),
        ];
        for (input, want) in cases {
            assert_eq!(split_target(input), want, "{input:?}");
        }
    }

    /// Bounded property check: every accepted output is a fixed point, starts
    /// with `/`, holds no dot-segment, `//`, backslash or control byte.
    #[test]
    fn output_is_a_fixed_point() {
        let alphabet = [
            "/", ".", "..", "a", "%2e", "%2E", "%41", "%20", ";", "x;y", "%c3", "é", " ", "//",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut p = String::from("/");
            for _ in 0..(seed % 7) {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                p.push_str(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let Ok(n) = normalize(&p) else { continue };
            assert!(n.starts_with('/'), "{p:?} -> {n:?}");
            assert!(!n.contains("//"), "{p:?} -> {n:?}");
            assert!(
                n.split('/').all(|s| s != "." && s != ".."),
                "{p:?} -> {n:?}"
            );
            assert!(n.bytes().all(|c| c.is_ascii_graphic()), "{p:?} -> {n:?}");
            let again = normalize(&n).unwrap_or_else(|e| panic!("{n:?} from {p:?}: {e}"));
            assert!(
                matches!(again, Cow::Borrowed(_)),
                "{n:?} from {p:?} not a fixed point: {again:?}"
            );
        }
    }

    /// Property tests: arbitrary text and near-miss paths. Case count from
    /// `PROPTEST_CASES` (default 256).
    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Paths built from the pieces normalisation acts on.
        fn path_text() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                4 => "[a-zA-Z0-9_~-]{1,4}",
                4 => prop::sample::select(vec!["/", "/", ".", "..", "/.", "/..", "//", ";", ";x"]).prop_map(String::from),
                2 => prop::sample::select(vec![
                    "%2e", "%2E", "%2e%2e", "%41", "%7e", "%2d", "%5f", "%20", "%c3%a9",
                    "%C3%A9", "%25", "%252e", "%252f", "%2500", "%3b", "%3B",
                ]).prop_map(String::from),
                1 => prop::sample::select(vec![
                    "%2f", "%2F", "%5c", "%5C", "\\", "%00", "\0", "%0a", "%7f", "\t",
                    "\u{7f}", "%", "%4", "%zz", "?", "#", " ", "\u{e9}", "\u{6f22}",
                    "{", "|", "\"", "[",
                ]).prop_map(String::from),
            ];
            let body = prop::collection::vec(piece, 0..10).prop_map(|v| v.concat());
            (prop::bool::weighted(0.9), body)
                .prop_map(|(slash, b)| if slash { format!("/{b}") } else { b })
        }

        fn any_path() -> impl Strategy<Value = String> {
            prop_oneof![4 => path_text(), 1 => "\\PC{0,24}", 1 => "/[ -~]{0,24}"]
        }

        /// An accepted path starts with `/`, holds no `.` or `..` segment,
        /// no `//`, only visible ASCII, no backslash, `?` or `#`, no escape
        /// of an unreserved, control or separator byte and no lower-case
        /// hex; normalising it again returns it unchanged, borrowed.
        #[test]
        fn prop_normalised_path_is_canonical() {
            proptest!(|(raw in any_path())| {
                let Ok(p) = normalize(&raw) else { return Ok(()) };
                prop_assert!(p.starts_with('/'), "{raw:?} -> {p:?}");
                prop_assert!(!p.contains("//"), "{raw:?} -> {p:?}");
                prop_assert!(p.split('/').all(|s| s != "." && s != ".."), "{raw:?} -> {p:?}");
                prop_assert!(
                    p.bytes().all(|c| c.is_ascii_graphic() && !b"\\?#".contains(&c)),
                    "{raw:?} -> {p:?}"
                );
                for (i, _) in p.match_indices('%') {
                    let b = p.as_bytes();
                    let v = decode_at(b, i).map_err(|e| TestCaseError::fail(format!("{raw:?} -> {p:?}: {e}")))?;
                    prop_assert!(!is_unreserved(v) && !v.is_ascii_control() && v != b'/' && v != b'\\', "{raw:?} -> {p:?}");
                    prop_assert!(!b[i + 1].is_ascii_lowercase() && !b[i + 2].is_ascii_lowercase(), "{raw:?} -> {p:?}");
                }
                let again = normalize(&p);
                prop_assert!(matches!(&again, Ok(Cow::Borrowed(q)) if *q == p), "{raw:?} -> {p:?} -> {again:?}");
            });
        }

        /// What must never be forwarded is refused wherever it appears: an
        /// encoded slash or backslash, a backslash, NUL raw or encoded, a
        /// control byte raw or encoded, a raw `?` or `#`.
        #[test]
        fn prop_forbidden_bytes_are_refused_anywhere() {
            let bad = prop::sample::select(vec![
                "%2f", "%2F", "%5c", "%5C", "\\", "%00", "\0", "%0a", "%0D", "%7f", "%09", "\t",
                "\n", "\u{7f}", "?", "#", "%252f", "%252E", "%255c", "%2500",
            ]);
            proptest!(|(raw in path_text(), at in any::<prop::sample::Index>(), bad in bad)| {
                // Insert at a byte that does not split a UTF-8 character or an escape.
                let b = raw.as_bytes();
                let ok_at = |i: usize| raw.is_char_boundary(i) && !(1..=2).any(|k| i >= k && b[i - k] == b'%');
                let i = at.index(raw.len() + 1);
                let i = (0..=i).rev().find(|&i| ok_at(i)).unwrap_or(0);
                let mut p = raw.clone();
                p.insert_str(i, bad);
                prop_assert!(normalize(&p).is_err(), "{p:?} accepted");
            });
        }

        /// Dot-segments climbing above the root are refused in every
        /// spelling, and a dot-segment or empty name before `;` is refused.
        #[test]
        fn prop_climbing_and_param_dot_segments_are_refused() {
            let dot = prop::sample::select(vec![".", "%2e", "%2E"]);
            let dots = (dot.clone(), dot).prop_map(|(a, b)| format!("{a}{b}"));
            let name = prop::sample::select(vec!["", ".", "..", "%2e", "%2e%2e", ".%2E"]);
            proptest!(|(
                depth in 0usize..4,
                dots in dots,
                extra in 1usize..3,
                tail in "(/[a-z]{1,3}){0,3}",
                name in name,
                param in "[a-z=]{0,4}",
            )| {
                let climb = "/a".repeat(depth) + &format!("/{dots}").repeat(depth + extra) + &tail;
                prop_assert_eq!(normalize(&climb), Err(PathError::AboveRoot), "{}", climb);
                let p = format!("/x/{name};{param}/admin");
                prop_assert_eq!(normalize(&p), Err(PathError::ParamSegment), "{}", p);
            });
        }

        /// Percent-encoding an unreserved byte (either hex case) changes
        /// nothing: `%61dmin` is `admin`, `%2e%2e` is `..`, `%25%32e` is
        /// the refused `%252e`.
        #[test]
        fn prop_encoded_unreserved_bytes_mean_themselves() {
            proptest!(|(raw in path_text(), at in any::<prop::sample::Index>(), lower in any::<bool>())| {
                let b = raw.as_bytes();
                let in_escape = |i: usize| (0..=2).any(|k| i >= k && b[i - k] == b'%');
                let Some(i) = (0..b.len())
                    .map(|k| (at.index(b.len()) + k) % b.len())
                    .find(|&i| is_unreserved(b[i]) && !in_escape(i))
                else {
                    return Ok(());
                };
                let hex = format!("%{:02X}", b[i]);
                let hex = if lower { hex.to_ascii_lowercase() } else { hex };
                let encoded = format!("{}{hex}{}", &raw[..i], &raw[i + 1..]);
                // Both refused (perhaps for different reasons) or both the same path.
                prop_assert_eq!(normalize(&encoded).ok(), normalize(&raw).ok(), "{} vs {}", encoded, raw);
            });
        }

        /// The path of any request-target holds no query or fragment, and
        /// an origin-form target keeps its leading `/`.
        #[test]
        fn prop_split_target_cuts_query_and_fragment() {
            proptest!(|(t in prop_oneof![any_path(), "(https?://[a-z.:@]{0,8})?[/?#a-z.]{0,12}"])| {
                let p = split_target(&t);
                prop_assert!(!p.contains(['?', '#']), "{t:?} -> {p:?}");
                prop_assert!(!p.is_empty());
                prop_assert!(!t.starts_with('/') || p.starts_with('/'), "{t:?} -> {p:?}");
                prop_assert!(t.contains(p) || p == "/", "{t:?} -> {p:?}");
            });
        }
    }
}

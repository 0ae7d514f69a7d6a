//! Host normalisation: turns a `Host` / `X-Forwarded-Host` value into the form
//! rules compare against (SPEC: hosts are compared lower-cased, without port or
//! trailing dot).
//!
//! Called once per request by whoever builds
//! [`RequestFacts`](crate::auth::rules::RequestFacts) (`forward_auth`, `proxy`), by
//! [`RuleSet::compile`](crate::auth::rules::RuleSet::compile) to check rule hosts, and
//! by `redirect` for the host of an absolute `rd` URL. For
//! `X-Forwarded-Host` with several comma-separated values the caller passes the
//! first. An `Err` is answered with 400.
//!
//! Names are restricted to `[a-z0-9._-]` (after lower-casing) with no empty
//! label; internationalised names must arrive as punycode. Bracketed IPv6
//! literals are accepted and written in their canonical form (`[0:0::1]` →
//! `[::1]`); zone identifiers are refused. An already-normal host is returned
//! borrowed, without allocating.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::Ipv6Addr;

use crate::base::http_util::StackStr;

/// Longest host name accepted (RFC 1035: 253 characters without the trailing dot).
const MAX_NAME_LEN: usize = 253;

/// Why a host value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Nothing left after trimming and dropping the port and trailing dot.
    #[error("host is empty")]
    Empty,
    /// A space or tab inside the value.
    #[error("host contains a space")]
    Space,
    /// A `/`: a path or URL was passed where a host belongs.
    #[error("host contains '/'")]
    Slash,
    /// An `@`: userinfo smuggled into the host.
    #[error("host contains '@'")]
    At,
    /// A `\`: some parsers treat it as `/`.
    #[error("host contains a backslash")]
    Backslash,
    /// An ASCII control character.
    #[error("host contains a control character")]
    ControlChar,
    /// Any other character outside `[A-Za-z0-9._-]`, including `%` and non-ASCII.
    #[error("host contains the character {0:?}, which is not allowed in a host name")]
    InvalidChar(char),
    /// A leading dot, two dots in a row, or two trailing dots.
    #[error("host has an empty label")]
    EmptyLabel,
    /// Longer than 253 characters.
    #[error("host is longer than 253 characters")]
    TooLong,
    /// The text after `:` is not a port number.
    #[error("host has an invalid port")]
    InvalidPort,
    /// A bracketed value that is not an IPv6 address (or carries a zone id).
    #[error("host is not a valid bracketed ipv6 address")]
    InvalidIpv6,
}

/// Normalises a `Host` / `X-Forwarded-Host` value: trims spaces and tabs, drops
/// the port and one trailing dot, lower-cases. See the module documentation.
pub fn normalize_host(raw: &str) -> Result<Cow<'_, str>, HostError> {
    if is_plainly_normal(raw.as_bytes()) {
        return Ok(Cow::Borrowed(raw));
    }
    normalize_checked(raw)
}

/// Fast path for the common already-normal name: lower-case letters,
/// digits, `-`, `_` and dots between non-empty labels, at most 253 bytes.
/// It skips trimming, the port and trailing-dot handling and the separate
/// character check, which is safe because such a value has no space, `:`,
/// `[`, upper-case letter, empty label or trailing dot for them to act on:
/// the full path would return it unchanged.
fn is_plainly_normal(b: &[u8]) -> bool {
    if b.len() > MAX_NAME_LEN {
        return false;
    }
    // A leading dot is an empty label, as is a dot after a dot.
    let mut prev = DOT;
    for &c in b {
        let class = HOST_CLASS[usize::from(c)];
        if class == OTHER || class & prev == DOT {
            return false;
        }
        prev = class;
    }
    // Empty, or a trailing dot to drop: the full path decides.
    prev == LABEL
}

/// [`HOST_CLASS`] values: a byte of a label, a dot, anything else.
const LABEL: u8 = 1;
const DOT: u8 = 2;
const OTHER: u8 = 0;

/// The class of every byte for [`is_plainly_normal`]: one load per byte
/// instead of a chain of range tests.
static HOST_CLASS: [u8; 256] = {
    let mut t = [OTHER; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' {
            t[c] = LABEL;
        }
        c += 1;
    }
    t[b'.' as usize] = DOT;
    t
};

/// The full normalisation, for every value the fast path did not accept.
fn normalize_checked(raw: &str) -> Result<Cow<'_, str>, HostError> {
    let s = raw.trim_matches([' ', '\t']);
    if s.is_empty() {
        return Err(HostError::Empty);
    }
    if s.starts_with('[') {
        return ipv6(s);
    }
    let name = match s.bytes().position(|b| b == b':') {
        Some(i) => {
            check_port(&s[i + 1..])?;
            &s[..i]
        }
        None => s,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if check_name(name)? {
        Ok(Cow::Owned(name.to_ascii_lowercase()))
    } else {
        Ok(Cow::Borrowed(name))
    }
}

/// `[addr]` or `[addr]:port`.
fn ipv6(s: &str) -> Result<Cow<'_, str>, HostError> {
    let close = s.find(']').ok_or(HostError::InvalidIpv6)?;
    match &s[close + 1..] {
        "" => {}
        rest => check_port(rest.strip_prefix(':').ok_or(HostError::InvalidPort)?)?,
    }
    let inner = &s[1..close];
    let addr: Ipv6Addr = inner.parse().map_err(|_| HostError::InvalidIpv6)?;
    let mut canonical = StackStr::default();
    write!(canonical, "[{addr}]").map_err(|_| HostError::InvalidIpv6)?;
    if canonical.as_str() == &s[..=close] {
        Ok(Cow::Borrowed(&s[..=close]))
    } else {
        Ok(Cow::Owned(canonical.as_str().to_owned()))
    }
}

/// Empty (RFC 3986 allows `host:`) or up to five digits.
fn check_port(port: &str) -> Result<(), HostError> {
    if port.len() <= 5 && port.bytes().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(HostError::InvalidPort)
    }
}

/// Checks a host name's characters and labels in one pass over its bytes;
/// says whether it holds upper-case letters. The error path walks the
/// characters again to name the offending one.
fn check_name(name: &str) -> Result<bool, HostError> {
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(HostError::TooLong);
    }
    let bytes = name.as_bytes();
    let mut upper = false;
    let mut prev_dot = true; // a leading dot is an empty label
    let mut empty_label = false;
    for &b in bytes {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => prev_dot = false,
            b'A'..=b'Z' => {
                upper = true;
                prev_dot = false;
            }
            b'.' => {
                empty_label |= prev_dot;
                prev_dot = true;
            }
            _ => return Err(invalid_char(name)),
        }
    }
    if empty_label || prev_dot {
        return Err(HostError::EmptyLabel);
    }
    Ok(upper)
}

/// The error for the first character a host name may not contain.
fn invalid_char(name: &str) -> HostError {
    for c in name.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => {}
            ' ' | '\t' => return HostError::Space,
            '/' => return HostError::Slash,
            '@' => return HostError::At,
            '\\' => return HostError::Backslash,
            c if c.is_ascii_control() => return HostError::ControlChar,
            c => return HostError::InvalidChar(c),
        }
    }
    HostError::EmptyLabel
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_hosts_are_borrowed() {
        for h in [
            "example.com",
            "a-b_c.example.com",
            "localhost",
            "10.0.0.1",
            "[::1]",
            "[2001:db8::1]",
        ] {
            assert!(
                matches!(normalize_host(h), Ok(Cow::Borrowed(x)) if x == h),
                "{h:?}"
            );
        }
        // Dropping the port, trailing dot or spaces borrows a sub-slice.
        for (h, want) in [
            ("example.com:8080", "example.com"),
            ("example.com.", "example.com"),
            (" a.b ", "a.b"),
            ("[::1]:8080", "[::1]"),
        ] {
            assert!(
                matches!(normalize_host(h), Ok(Cow::Borrowed(x)) if x == want),
                "{h:?}"
            );
        }
    }

    /// The fast path only accepts what the full normalisation returns
    /// unchanged, over every value of up to five bytes from an alphabet of the
    /// bytes that matter.
    #[test]
    fn fast_path_agrees_with_the_full_normalisation() {
        let alphabet = b"a.Z0-_:[] \t@/";
        let mut accepted = 0;
        let mut v = Vec::new();
        for len in 0..=5u32 {
            for mut n in 0..alphabet.len().pow(len) {
                v.clear();
                for _ in 0..len {
                    v.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                let text = std::str::from_utf8(&v).unwrap();
                if is_plainly_normal(&v) {
                    accepted += 1;
                    assert_eq!(normalize_checked(text), Ok(Cow::Borrowed(text)), "{text:?}");
                }
                assert_eq!(normalize_host(text), normalize_checked(text), "{text:?}");
            }
        }
        assert!(accepted > 1000, "{accepted}");
        for c in 0..=255u8 {
            let v = [b'a', c, b'b'];
            if let Ok(text) = std::str::from_utf8(&v) {
                assert_eq!(normalize_host(text), normalize_checked(text), "{text:?}");
            }
        }
        assert!(is_plainly_normal(b"app7.bench.test"));
        assert!(is_plainly_normal("a".repeat(253).as_bytes()));
        assert!(!is_plainly_normal("a".repeat(254).as_bytes()));
        for h in [
            "App7.bench.test",
            "app7.bench.test.",
            "app7.bench.test:443",
            " a",
            "",
        ] {
            assert!(!is_plainly_normal(h.as_bytes()), "{h:?}");
        }
    }

    #[test]
    fn rewrites() {
        let cases = [
            ("Example.COM", "example.com"),
            ("GRAFANA.example.com.:443", "grafana.example.com"),
            ("example.com:", "example.com"),
            ("\tHost.Example\t", "host.example"),
            ("[0:0:0:0:0:0:0:1]:8080", "[::1]"),
            ("[2001:DB8::1]", "[2001:db8::1]"),
            ("[::ffff:1.2.3.4]", "[::ffff:1.2.3.4]"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_host(input).as_deref(), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn rejections() {
        use HostError::*;
        let cases = [
            ("", Empty),
            ("  ", Empty),
            (".", Empty),
            (":80", Empty),
            ("a b", Space),
            ("evil.com/x", Slash),
            ("good.com@evil.com", At),
            ("evil.com\\good.com", Backslash),
            ("a\r\nb", ControlChar),
            ("a\0b", ControlChar),
            ("%65vil.com", InvalidChar('%')),
            ("exa*mple.com", InvalidChar('*')),
            ("bücher.example", InvalidChar('ü')),
            ("a,b", InvalidChar(',')),
            (".example.com", EmptyLabel),
            ("a..b", EmptyLabel),
            ("example.com..", EmptyLabel),
            ("example.com:http", InvalidPort),
            ("example.com:123456", InvalidPort),
            ("example.com:80:80", InvalidPort),
            ("::1", InvalidPort),
            ("[::1", InvalidIpv6),
            ("[zz::1]", InvalidIpv6),
            ("[fe80::1%25eth0]", InvalidIpv6),
            ("[1.2.3.4]", InvalidIpv6),
            ("[::1]x", InvalidPort),
            ("[::1]:x", InvalidPort),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_host(input), Err(want), "{input:?}");
        }
        assert_eq!(normalize_host(&"a".repeat(254)), Err(TooLong));
        assert!(normalize_host(&"a".repeat(253)).is_ok());
    }

    /// Property tests: arbitrary text and near-miss hosts. Case count from
    /// `PROPTEST_CASES` (default 256).
    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Near-miss hosts: names, IP literals, ports, dots, padding and
        /// the bytes that turn a host into something else.
        fn host_text() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                6 => "[a-zA-Z0-9_-]{1,5}",
                2 => prop::sample::select(vec![".", ":", ":80", ":443", ":99999", "[", "]"]).prop_map(String::from),
                1 => prop::sample::select(vec![
                    "::1", "[::1]", "[0:0::1]", "[2001:DB8::1]", "[::ffff:1.2.3.4]",
                    "%25eth0", "%2e", "@", "/", "\\", " ", "\t", "\r\n", "\0", ",",
                    "*", "\u{e9}", "\u{ff0e}", "\u{3002}",
                ]).prop_map(String::from),
            ];
            prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
        }

        fn any_host() -> impl Strategy<Value = String> {
            prop_oneof![3 => host_text(), 1 => "\\PC{0,20}", 1 => "[a-z.]{250,258}"]
        }

        /// An accepted host is a lower-case name of `[a-z0-9._-]` labels
        /// (no empty label, no trailing dot, at most 253 bytes) or a
        /// canonical bracketed IPv6 literal, and normalising it again
        /// returns it unchanged, borrowed.
        #[test]
        fn prop_normalised_host_is_canonical() {
            proptest!(|(raw in any_host())| {
                let Ok(host) = normalize_host(&raw) else { return Ok(()) };
                prop_assert!(!host.bytes().any(|b| b.is_ascii_uppercase()), "{raw:?} -> {host:?}");
                match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                    Some(inner) => {
                        let addr: Ipv6Addr = inner.parse().map_err(|_| {
                            TestCaseError::fail(format!("{raw:?} -> {host:?}"))
                        })?;
                        prop_assert_eq!(inner, addr.to_string());
                    }
                    None => {
                        prop_assert!(host.len() <= MAX_NAME_LEN, "{raw:?}");
                        prop_assert!(
                            host.split('.').all(|l| !l.is_empty() && l.bytes().all(
                                |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                            )),
                            "{raw:?} -> {host:?}"
                        );
                    }
                }
                let again = normalize_host(&host);
                prop_assert!(matches!(again, Ok(Cow::Borrowed(h)) if h == host), "{raw:?} -> {host:?} -> {again:?}");
            });
        }

        /// A byte outside `[A-Za-z0-9._-]`, `:`, `[`, `]` and the outer
        /// spaces and tabs is always refused, wherever it is.
        #[test]
        fn prop_foreign_bytes_are_refused() {
            let foreign = prop_oneof![
                prop::sample::select(vec![
                    '@', '/', '\\', '%', ',', '*', '?', '#', '\0', '\r', '\n', '\u{7f}', '\u{e9}',
                    '\u{ff0e}'
                ]),
                any::<char>().prop_filter("not a host character", |c| {
                    !(c.is_ascii_alphanumeric() || ".-_:[] \t".contains(*c))
                }),
            ];
            proptest!(|(raw in host_text(), at in any::<prop::sample::Index>(), c in foreign)| {
                let mut raw = raw;
                let i = at.index(raw.len() + 1);
                let i = (0..=i).rev().find(|&i| raw.is_char_boundary(i)).unwrap_or(0);
                raw.insert(i, c);
                prop_assert!(normalize_host(&raw).is_err(), "{raw:?} accepted");
                let inner = format!("a{c}b");
                prop_assert!(normalize_host(&inner).is_err(), "{inner:?} accepted");
            });
        }

        /// Case never matters, and neither do a port or one trailing dot
        /// after a valid name.
        #[test]
        fn prop_case_port_and_dot_do_not_change_the_host() {
            let name = "[a-zA-Z0-9_-]{1,8}(\\.[a-zA-Z0-9_-]{1,8}){0,3}";
            let port = "(:[0-9]{0,5})?";
            proptest!(|(raw in any_host(), name in name, dot in any::<bool>(), port in port)| {
                let upper = normalize_host(&raw.to_ascii_uppercase()).ok().map(Cow::into_owned);
                let lower = normalize_host(&raw.to_ascii_lowercase()).ok().map(Cow::into_owned);
                prop_assert_eq!(upper, lower, "{:?}", raw);
                let plain = normalize_host(&name).map_err(|e| TestCaseError::fail(format!("{name:?}: {e}")))?;
                let dressed = format!("{name}{}{port}", if dot { "." } else { "" });
                prop_assert_eq!(normalize_host(&dressed), Ok(plain));
            });
        }
    }
}

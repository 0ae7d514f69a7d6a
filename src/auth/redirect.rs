//! Where the browser may be sent after login and logout: the `rd` parameter
//! check (SPEC `access.allowed_redirect_domains`).
//!
//! Owns [`RedirectPolicy`], built once from the validated config, and its
//! [`RedirectPolicy::check`]. Called by `oidc` (`/oauth2/start`, the callback)
//! and by sign-out; an `Err` means "send the browser to `/` instead", and the
//! caller logs the reason at info. Nothing here decodes the query string: the
//! caller passes the already-decoded `rd` value.
//!
//! Accepted: a path on the current host (starts with `/`, not `//` or `/\`), or
//! an absolute `http`/`https` URL whose host is on the allow-list or is the host
//! the request itself arrived on. Everything else is refused, with care for the
//! tricks that have turned other gateways into open redirectors:
//!
//! - the raw string is checked *before* any URL parsing, because WHATWG parsers
//!   (browsers and the `url` crate) silently drop tabs and newlines and treat
//!   `\` as `/`: any backslash, ASCII control character, space or non-ASCII
//!   character is refused, as are percent-encoded control characters;
//! - scheme-relative forms (`//evil.com`, `/\evil.com`, `\\evil.com`) and paths
//!   that start with an encoded slash, backslash, percent or whitespace
//!   (`/%2F%2Fevil.com`, `/%5Cevil.com`), which a decoding hop would turn into one;
//! - every scheme but `http` and `https` (`javascript:`, `data:`, `ftp:`), and
//!   `https:evil.com` / `https:/evil.com`, which browsers complete to a host;
//! - userinfo (`https://good.com@evil.com`), percent-encoded or otherwise
//!   invalid host characters, and hosts the URL parser would rewrite (numeric
//!   IPv4 forms such as `http://2130706433/`), so the host checked is the host
//!   the browser visits;
//! - domains matched on label boundaries only: `.example.com` covers
//!   `example.com` and `a.b.example.com`, never `notexample.com` or
//!   `example.com.evil.org`. Internationalised names must be written as
//!   punycode; a raw Unicode host is refused.
//!
//! `%20` and other encoded printable characters are allowed inside a path: they
//! stay encoded in the `Location` header and cannot change where it points.

use url::Url;

use crate::auth::rules::host::{normalize_host, HostError};

/// The compiled `access.allowed_redirect_domains` list.
#[derive(Debug, Clone, Default)]
pub struct RedirectPolicy {
    /// Hosts allowed exactly (`app.example.com`, and the apex of each suffix entry).
    exact: Vec<String>,
    /// Suffixes with their leading dot (`.example.com`).
    suffixes: Vec<String>,
}

/// Why an `rd` value was refused. The browser is sent to `/` instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    /// `rd` was present but empty.
    #[error("redirect target is empty")]
    Empty,
    /// `//host`, `/\host` or `\\host`: a browser treats these as another host.
    #[error("redirect target is scheme-relative")]
    SchemeRelative,
    /// A backslash anywhere: browsers treat it as `/` in special URLs.
    #[error("redirect target contains a backslash")]
    Backslash,
    /// A raw control character, tab, CR, LF or space: URL parsers strip some of
    /// these silently, so the checked and the visited URL could differ.
    #[error("redirect target contains a control character or space")]
    ControlOrSpace,
    /// A raw non-ASCII character (Unicode look-alikes, full-width dots and slashes).
    #[error("redirect target contains a non-ascii character")]
    NonAscii,
    /// `%` not followed by two hex digits.
    #[error("redirect target contains malformed percent-encoding")]
    MalformedPercent,
    /// A percent-encoded control character (`%0d%0a`, `%09`, `%00`).
    #[error("redirect target contains an encoded control character")]
    EncodedControl,
    /// A path starting with an encoded `/`, `\`, `%` or whitespace (`/%2F%2Fevil.com`):
    /// one decoding step would make it scheme-relative.
    #[error("redirect target path starts with an encoded separator")]
    EncodedSeparatorAtStart,
    /// Neither a path starting with `/` nor `scheme:...`.
    #[error("redirect target is neither a path nor an absolute url")]
    NotAUrl,
    /// A scheme other than `http` or `https` (`javascript:`, `data:`, `ftp:`).
    #[error("redirect target has a scheme other than http or https")]
    DisallowedScheme,
    /// `https:` not followed by `//` (`https:evil.com`), which browsers complete to a host.
    #[error("redirect target has no '//' after its scheme")]
    MissingAuthority,
    /// `user@host` in the authority.
    #[error("redirect target contains userinfo")]
    Userinfo,
    /// The host is empty or contains characters a host name cannot hold.
    #[error("redirect target has an invalid host")]
    InvalidHost(#[source] HostError),
    /// The `url` crate refused the URL.
    #[error("redirect target is not a valid url")]
    Malformed(#[source] url::ParseError),
    /// The URL parser would visit a different host than the one written
    /// (e.g. `http://2130706433/` becomes `127.0.0.1`).
    #[error("redirect target host is ambiguous")]
    AmbiguousHost,
    /// The host is not on `allowed_redirect_domains` and is not the request's own host.
    #[error("redirect host {host:?} is not in allowed_redirect_domains")]
    NotAllowed {
        /// The normalised host (only `[a-z0-9._-]` or an IPv6 literal).
        host: String,
    },
}

// === impl RedirectPolicy ===

impl RedirectPolicy {
    /// Builds the policy from `allowed_redirect_domains`: `.example.com` allows the
    /// domain and every subdomain, `app.example.com` exactly that host. Entries
    /// are lower-cased; `*.example.com` is read as `.example.com`; empty entries
    /// are ignored.
    pub fn new<S: AsRef<str>>(allowed: &[S]) -> RedirectPolicy {
        let mut policy = RedirectPolicy::default();
        for entry in allowed {
            let entry = entry.as_ref().trim().to_ascii_lowercase();
            let entry = entry.strip_prefix('*').unwrap_or(&entry);
            match entry.strip_prefix('.') {
                Some("") => {}
                Some(apex) => {
                    policy.exact.push(apex.to_owned());
                    policy.suffixes.push(entry.to_owned());
                }
                None if entry.is_empty() => {}
                None => policy.exact.push(entry.to_owned()),
            }
        }
        policy
    }

    /// Returns `rd` unchanged when the browser may be sent there; see the module
    /// documentation. `own_host` is the host the request arrived on (any case,
    /// port allowed); an absolute URL to that host is accepted.
    pub fn check<'a>(&self, rd: &'a str, own_host: Option<&str>) -> Result<&'a str, RedirectError> {
        check_start(rd)?;
        check_raw(rd)?;
        if rd.starts_with('/') {
            return check_relative(rd);
        }
        let host = self.check_absolute(rd)?;
        let own = own_host.and_then(|h| normalize_host(h).ok());
        if own.as_deref() == Some(host.as_str()) || self.is_allowed_host(&host) {
            Ok(rd)
        } else {
            Err(RedirectError::NotAllowed { host })
        }
    }

    /// True when a normalised host (lower-case, no port) is on the allow-list.
    /// IP literals only ever match exact entries.
    pub fn is_allowed_host(&self, host: &str) -> bool {
        if self.exact.iter().any(|e| e == host) {
            return true;
        }
        let is_name =
            !host.starts_with('[') && !host.bytes().all(|c| c.is_ascii_digit() || c == b'.');
        is_name && self.suffixes.iter().any(|s| host.ends_with(s.as_str()))
    }

    /// Checks scheme, authority and host of an absolute URL; returns the normalised host.
    fn check_absolute(&self, rd: &str) -> Result<String, RedirectError> {
        let colon = rd.find(':').ok_or(RedirectError::NotAUrl)?;
        let scheme = &rd[..colon];
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
        {
            return Err(RedirectError::NotAUrl);
        }
        if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
            return Err(RedirectError::DisallowedScheme);
        }
        let after = rd[colon + 1..]
            .strip_prefix("//")
            .ok_or(RedirectError::MissingAuthority)?;
        let authority = &after[..after.find(['/', '?', '#']).unwrap_or(after.len())];
        if authority.contains('@') {
            return Err(RedirectError::Userinfo);
        }
        let host = normalize_host(authority).map_err(RedirectError::InvalidHost)?;
        let url = Url::parse(rd).map_err(RedirectError::Malformed)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RedirectError::DisallowedScheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RedirectError::Userinfo);
        }
        let parsed = url.host_str().map(|h| h.strip_suffix('.').unwrap_or(h));
        if parsed != Some(host.as_ref()) {
            return Err(RedirectError::AmbiguousHost);
        }
        Ok(host.into_owned())
    }
}

/// Refuses empty and scheme-relative starts.
fn check_start(rd: &str) -> Result<(), RedirectError> {
    match rd.as_bytes() {
        [] => Err(RedirectError::Empty),
        [b'/', b'/' | b'\\', ..] | [b'\\', ..] => Err(RedirectError::SchemeRelative),
        _ => Ok(()),
    }
}

/// Refuses raw backslashes, controls, spaces, non-ASCII, malformed or
/// control-encoding percent escapes anywhere in the string.
fn check_raw(rd: &str) -> Result<(), RedirectError> {
    let b = rd.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\\' => return Err(RedirectError::Backslash),
            c if c <= b' ' || c == 0x7f => return Err(RedirectError::ControlOrSpace),
            c if !c.is_ascii() => return Err(RedirectError::NonAscii),
            b'%' => {
                let v = decode_at(b, i).ok_or(RedirectError::MalformedPercent)?;
                if v < b' ' || v == 0x7f {
                    return Err(RedirectError::EncodedControl);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A path on the current host; refuses `/%2F...`, `/%5C...`, `/%25...`, `/%20...`.
fn check_relative(rd: &str) -> Result<&str, RedirectError> {
    if let Some(v) = decode_at(rd.as_bytes(), 1) {
        if matches!(v, b'/' | b'\\' | b'%') || v <= b' ' || v == 0x7f {
            return Err(RedirectError::EncodedSeparatorAtStart);
        }
    }
    Ok(rd)
}

/// The byte encoded by a `%XX` at `b[i]`, if there is one.
fn decode_at(b: &[u8], i: usize) -> Option<u8> {
    if b.get(i) != Some(&b'%') {
        return None;
    }
    let hex = |c: u8| char::from(c).to_digit(16);
    let hi = hex(*b.get(i + 1)?)?;
    let lo = hex(*b.get(i + 2)?)?;
    u8::try_from(hi << 4 | lo).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RedirectPolicy {
        RedirectPolicy::new(&[".example.com", "app.partner.org", "[::1]", "10.0.0.5"])
    }

    #[test]
    fn good_values_pass_unchanged() {
        let p = policy();
        let good = [
            "/",
            "/dashboard",
            "/a/b?x=1&y=2#frag",
            "/wiki/My%20Page",
            "/search?q=%2F%2Fevil.com",
            "/caf%C3%A9",
            "/a//b",
            "/.//x",
            "/@evil.com",
            "/?next=https://evil.com",
            "https://example.com",
            "https://example.com/",
            "https://grafana.example.com/d/abc?orgId=1",
            "http://a.b.c.example.com:8443/x",
            "HTTPS://App.Example.COM/",
            "https://example.com./x",
            "https://app.partner.org/",
            "https://xn--e1awd7f.example.com/",
            "https://[::1]:8443/",
            "http://10.0.0.5/",
            "https://a_b.example.com/",
            "https://example.com#@evil.com",
            "https://example.com?@evil.com",
        ];
        for rd in good {
            assert_eq!(p.check(rd, None), Ok(rd), "{rd:?}");
        }
    }

    #[test]
    fn own_host_is_allowed() {
        let p = RedirectPolicy::new::<&str>(&[]);
        assert_eq!(
            p.check("https://app.local/x", Some("APP.local:8443")),
            Ok("https://app.local/x")
        );
        assert_eq!(
            p.check("https://app.local.:9/x", Some("app.local")),
            Ok("https://app.local.:9/x")
        );
        assert!(p.check("https://other.local/x", Some("app.local")).is_err());
        assert!(p.check("https://app.local/x", None).is_err());
        assert!(p.check("https://app.local/x", Some("bad host")).is_err());
        assert_eq!(p.check("/x", None), Ok("/x"));
    }

    #[test]
    fn hostile_values_are_rejected() {
        use RedirectError::*;
        let not_allowed = |h: &str| NotAllowed { host: h.to_owned() };
        let p = policy();
        let hostile: Vec<(&str, RedirectError)> = vec![
            ("", Empty),
            ("//evil.com", SchemeRelative),
            ("//evil.com/", SchemeRelative),
            ("///evil.com", SchemeRelative),
            ("////evil.com", SchemeRelative),
            ("/\\evil.com", SchemeRelative),
            ("\\\\evil.com", SchemeRelative),
            ("\\/evil.com", SchemeRelative),
            ("/x\\y", Backslash),
            ("https://evil.com\\@example.com", Backslash),
            ("https:\\\\evil.com", Backslash),
            ("http:/\\/evil.com", Backslash),
            ("https://example.com\\.evil.com", Backslash),
            ("/\t/evil.com", ControlOrSpace),
            ("/\n/evil.com", ControlOrSpace),
            ("/\r\n/evil.com", ControlOrSpace),
            ("/ /evil.com", ControlOrSpace),
            (" //evil.com", ControlOrSpace),
            ("\t//evil.com", ControlOrSpace),
            ("java\tscript:alert(1)", ControlOrSpace),
            ("https://exa\nmple.com.evil.com", ControlOrSpace),
            ("https://example.com/\r\nSet-Cookie:x=1", ControlOrSpace),
            ("\x00/x", ControlOrSpace),
            ("/x\x7f", ControlOrSpace),
            ("\x0b//evil.com", ControlOrSpace),
            ("https://ex\u{0430}mple.com", NonAscii),
            ("https://evil.com\u{ff0f}.example.com", NonAscii),
            ("https://evil\u{3002}com", NonAscii),
            ("/\u{ff0f}evil.com", NonAscii),
            ("https://bücher.example.com", NonAscii),
            ("/%zz", MalformedPercent),
            ("/x%4", MalformedPercent),
            ("/%0d%0aSet-Cookie:x", EncodedControl),
            ("/x%09", EncodedControl),
            ("/%00", EncodedControl),
            ("https://example.com/%0A", EncodedControl),
            ("/%2F%2Fevil.com", EncodedSeparatorAtStart),
            ("/%2f/evil.com", EncodedSeparatorAtStart),
            ("/%5Cevil.com", EncodedSeparatorAtStart),
            ("/%5c%5cevil.com", EncodedSeparatorAtStart),
            ("/%252F%252Fevil.com", EncodedSeparatorAtStart),
            ("/%20//evil.com", EncodedSeparatorAtStart),
            ("evil.com", NotAUrl),
            ("evil.com/x", NotAUrl),
            ("dashboard", NotAUrl),
            ("%2F%2Fevil.com", NotAUrl),
            ("?rd=//evil.com", NotAUrl),
            ("#x", NotAUrl),
            ("./x", NotAUrl),
            ("../evil", NotAUrl),
            (":evil.com", NotAUrl),
            ("javascript:alert(1)", DisallowedScheme),
            ("JavaScript:alert(1)", DisallowedScheme),
            ("javascript://example.com/%0aalert(1)", EncodedControl),
            ("javascript://example.com/x", DisallowedScheme),
            ("data:text/html,<script>alert(1)</script>", DisallowedScheme),
            ("data:text/html;base64,PHNjcmlwdD4=", DisallowedScheme),
            ("vbscript:msgbox", DisallowedScheme),
            ("ftp://example.com/", DisallowedScheme),
            ("file:///etc/passwd", DisallowedScheme),
            ("ws://example.com/", DisallowedScheme),
            ("blob:https://example.com/x", DisallowedScheme),
            ("https:evil.com", MissingAuthority),
            ("https:/evil.com", MissingAuthority),
            ("http:example.com", MissingAuthority),
            ("https://example.com@evil.com", Userinfo),
            ("https://user:pass@example.com/", Userinfo),
            (
                "https://example.com%40evil.com",
                InvalidHost(HostError::InvalidChar('%')),
            ),
            (
                "https://evil.com%2f.example.com",
                InvalidHost(HostError::InvalidChar('%')),
            ),
            (
                "https://%65xample.com",
                InvalidHost(HostError::InvalidChar('%')),
            ),
            ("https:///evil.com", InvalidHost(HostError::Empty)),
            ("https://", InvalidHost(HostError::Empty)),
            ("https://:443/", InvalidHost(HostError::Empty)),
            ("https://.example.com/", InvalidHost(HostError::EmptyLabel)),
            (
                "https://evil.com..example.com/",
                InvalidHost(HostError::EmptyLabel),
            ),
            (
                "https://evil.com:.example.com",
                InvalidHost(HostError::InvalidPort),
            ),
            (
                "https://evil.com;.example.com",
                InvalidHost(HostError::InvalidChar(';')),
            ),
            (
                "https://evil.com&.example.com",
                InvalidHost(HostError::InvalidChar('&')),
            ),
            (
                "https://*.example.com/",
                InvalidHost(HostError::InvalidChar('*')),
            ),
            ("https://[::1%25eth0]/", InvalidHost(HostError::InvalidIpv6)),
            ("http://2130706433/", AmbiguousHost),
            ("http://0x0a.0.0.5/", AmbiguousHost),
            ("http://10.5/", AmbiguousHost),
            ("http://012.0.0.5/", AmbiguousHost),
            (
                "https://xn--.example.com/",
                Malformed(url::ParseError::IdnaError),
            ),
            ("https://evil.com", not_allowed("evil.com")),
            (
                "https://evil.com/https://example.com",
                not_allowed("evil.com"),
            ),
            ("https://evil.com#.example.com", not_allowed("evil.com")),
            ("https://evil.com?.example.com", not_allowed("evil.com")),
            ("https://evil.com/.example.com", not_allowed("evil.com")),
            ("https://notexample.com", not_allowed("notexample.com")),
            (
                "https://example.com.evil.com",
                not_allowed("example.com.evil.com"),
            ),
            (
                "https://evil.com.example.org",
                not_allowed("evil.com.example.org"),
            ),
            ("https://example.co", not_allowed("example.co")),
            ("https://xample.com", not_allowed("xample.com")),
            ("https://partner.org", not_allowed("partner.org")),
            (
                "https://x.app.partner.org",
                not_allowed("x.app.partner.org"),
            ),
            (
                "https://xn--exmple-cua.com/",
                not_allowed("xn--exmple-cua.com"),
            ),
            (
                "https://example.com.xn--p1ai/",
                not_allowed("example.com.xn--p1ai"),
            ),
            ("https://[::2]/", not_allowed("[::2]")),
            ("http://10.0.0.6/", not_allowed("10.0.0.6")),
            ("http://127.0.0.1/", not_allowed("127.0.0.1")),
            ("https://localhost/", not_allowed("localhost")),
        ];
        for (rd, want) in hostile {
            assert_eq!(p.check(rd, Some("auth.internal")), Err(want), "{rd:?}");
        }
    }

    #[test]
    fn suffix_entries_never_match_ip_literals() {
        let p = RedirectPolicy::new(&[".0.0.1", ".example.com", "", "."]);
        assert!(!p.is_allowed_host("127.0.0.1"));
        assert!(p.is_allowed_host("example.com"));
        assert!(!p.is_allowed_host(""));
        assert!(!p.is_allowed_host("com"));
    }

    #[test]
    fn wildcard_spelling_is_accepted_in_entries() {
        let p = RedirectPolicy::new(&["*.Example.com"]);
        assert!(p.is_allowed_host("a.example.com"));
        assert!(p.is_allowed_host("example.com"));
    }

    /// Bounded property check: any accepted value that a WHATWG parser resolves
    /// against our own origin lands on an allowed host or our own host.
    #[test]
    fn accepted_values_resolve_to_allowed_hosts() {
        let parts = [
            "/",
            "\\",
            "//",
            "evil.com",
            "example.com",
            ".",
            "@",
            "%2f",
            "%5c",
            ":",
            "https:",
            "http://",
            "#",
            "?",
            "%09",
            "a",
        ];
        let p = RedirectPolicy::new(&[".example.com"]);
        let base = Url::parse("https://own.test/start").unwrap_or_else(|e| panic!("{e}"));
        let mut seed: u64 = 7;
        for _ in 0..50_000 {
            let mut rd = String::new();
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            for _ in 0..(1 + (seed >> 60)) {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                rd.push_str(parts[(seed >> 33) as usize % parts.len()]);
            }
            let Ok(ok) = p.check(&rd, Some("own.test")) else {
                continue;
            };
            let Ok(resolved) = base.join(ok) else {
                continue;
            };
            let host = resolved.host_str().unwrap_or("").trim_end_matches('.');
            assert!(
                host == "own.test" || host == "example.com" || host.ends_with(".example.com"),
                "{rd:?} resolves to {resolved}"
            );
        }
    }

    /// Property tests: arbitrary text and near-miss redirect targets. Case
    /// count from `PROPTEST_CASES` (default 256).
    mod properties {
        use super::*;
        use proptest::prelude::*;

        const OWN: &str = "own.test";

        fn policy() -> RedirectPolicy {
            RedirectPolicy::new(&[".good.com", "app.partner.org"])
        }

        /// True for the hosts [`policy`] and [`OWN`] allow.
        fn is_allowed(host: &str) -> bool {
            let host = host.strip_suffix('.').unwrap_or(host);
            host == OWN
                || host == "good.com"
                || host.ends_with(".good.com")
                || host == "app.partner.org"
        }

        /// Near-miss `rd` values: scheme-relative starts, disguised hosts,
        /// userinfo, fragments, encoded separators, whitespace, odd schemes.
        fn rd_text() -> impl Strategy<Value = String> {
            let start = prop::sample::select(vec![
                "https://",
                "https://",
                "https://",
                "http://",
                "/",
                "/",
                "",
                "//",
                "///",
                "/\\",
                "\\\\",
                "\\/",
                "/%2f",
                "/%2F%2F",
                "/%5c",
                "/%25",
                "/%20",
                "https:",
                "https:/",
                "https://",
                "http://",
                "HTTPS://",
                "hTTp://",
                "https:\\\\",
                "http:/\\",
                "javascript:",
                "JavaScript://",
                "data:",
                "ftp://",
                "//\\",
                "\t//",
                " /",
            ]);
            let host = prop::sample::select(vec![
                "good.com",
                "a.good.com",
                "GOOD.com",
                "good.com.",
                "evil.com",
                "good.com.evil.com",
                "evilgood.com",
                "evil.com\\@good.com",
                "evil.com#@good.com",
                "evil.com?@good.com",
                "user@good.com",
                "good.com@evil.com",
                "user:pw@good.com",
                "evil.com%2f.good.com",
                "%65vil.com",
                "good.com:443",
                "good.com:",
                "good.com:x",
                "[::1]",
                "2130706433",
                "own.test",
                "OWN.test:8443",
                "app.partner.org",
                "x.app.partner.org",
                "evil.com/.good.com",
                "evil\u{3002}com",
                "ex\u{430}mple.good.com",
                "",
                "evil.com\t.good.com",
            ]);
            let tail = prop::sample::select(vec![
                "",
                "",
                "/",
                "/",
                "/x",
                "/x?y=1#z",
                "/a//b",
                "?next=//evil.com",
                "#@evil.com",
                "/%2e%2e/x",
                "/%0d%0a",
                "/%09",
                "/\\evil.com",
                "%40evil.com",
                "/%zz",
                "\n",
                "\r\nSet-Cookie:x",
            ]);
            let shaped = (start, host, tail).prop_map(|(a, h, t)| format!("{a}{h}{t}"));
            prop_oneof![4 => shaped, 1 => "\\PC{0,30}", 1 => "[ -~]{0,30}"]
        }

        /// Any value: no panic; an accepted value comes back unchanged and is
        /// either a path starting with a single `/` (not `//`, not `/\`)
        /// or an absolute http(s) URL without userinfo whose host is
        /// allowed; a browser resolving it from our own origin lands on an
        /// allowed host.
        #[test]
        fn prop_accepted_redirects_stay_on_allowed_hosts() {
            let own = prop::option::of(prop::sample::select(vec![
                OWN,
                "OWN.test:8443",
                "bad host",
                "evil.com.",
            ]));
            proptest!(|(rd in rd_text(), own in own)| {
                let p = policy();
                let Ok(ok) = p.check(&rd, own) else { return Ok(()) };
                prop_assert_eq!(ok, rd.as_str());
                prop_assert!(ok.bytes().all(|b| b.is_ascii_graphic() && b != b'\\'), "{rd:?}");
                let base = Url::parse(&format!("https://{}/start", own.map_or("gw.test", |o| o))).ok();
                if ok.starts_with('/') {
                    prop_assert!(!ok.starts_with("//"), "{rd:?}");
                    if let Some(base) = base {
                        let resolved = base.join(ok).map_err(|e| TestCaseError::fail(format!("{rd:?}: {e}")))?;
                        prop_assert_eq!(resolved.host_str(), base.host_str(), "{:?}", rd);
                    }
                    return Ok(());
                }
                let url = Url::parse(ok).map_err(|e| TestCaseError::fail(format!("{rd:?}: {e}")))?;
                prop_assert!(matches!(url.scheme(), "http" | "https"), "{rd:?}");
                prop_assert!(url.username().is_empty() && url.password().is_none(), "{rd:?}");
                let host = url.host_str().unwrap_or("");
                let own_host = own.and_then(|o| normalize_host(o).ok());
                prop_assert!(
                    is_allowed(host) || own_host.as_deref() == Some(host.trim_end_matches('.')),
                    "{rd:?} -> {url} with own host {own:?}"
                );
                let written = ok.split_once("://").map(|(_, r)| r).unwrap_or("");
                let written = &written[..written.find(['/', '?', '#']).unwrap_or(written.len())];
                let written = normalize_host(written).ok();
                prop_assert_eq!(written.as_deref(), Some(host.trim_end_matches('.')));
            });
        }

        /// A tab, newline, carriage return, space, backslash, NUL or
        /// non-ASCII character anywhere is refused: URL parsers would drop
        /// or reinterpret it.
        #[test]
        fn prop_whitespace_backslash_and_non_ascii_are_refused_anywhere() {
            let bad = prop::sample::select(vec![
                '\t', '\n', '\r', ' ', '\\', '\0', '\u{7f}', '\u{a0}', '\u{ff0f}', '\u{3002}',
            ]);
            proptest!(|(rd in rd_text(), at in any::<prop::sample::Index>(), c in bad)| {
                let mut rd = rd;
                let i = at.index(rd.len() + 1);
                let i = (0..=i).rev().find(|&i| rd.is_char_boundary(i)).unwrap_or(0);
                rd.insert(i, c);
                prop_assert!(policy().check(&rd, Some(OWN)).is_err(), "{rd:?} accepted");
            });
        }

        /// A host outside the allow-list is refused however the URL around
        /// it is written, and an allowed host written plainly is accepted.
        #[test]
        fn prop_hosts_are_matched_on_label_boundaries() {
            // Not `xn--`: invalid punycode is refused whatever the domain.
            let name = "[a-wyz][a-z0-9-]{0,5}[a-z]";
            let suffix = prop::sample::select(vec![
                "good.com",
                "good.com.evil.com",
                "evilgood.com",
                "good.co",
                "good.com.",
                "goodcom",
                "xgood.com",
            ]);
            let scheme = prop::sample::select(vec!["http", "https", "HTTPS"]);
            let tail = prop::sample::select(vec!["", "/", "/x?y=1", "#f", "?a=https://good.com/"]);
            proptest!(|(label in name, suffix in suffix, sub in any::<bool>(), scheme in scheme, tail in tail, port in prop::option::of(1u16..))| {
                let host = if sub { format!("{label}.{suffix}") } else { suffix.to_owned() };
                let port = port.map(|p| format!(":{p}")).unwrap_or_default();
                let rd = format!("{scheme}://{host}{port}{tail}");
                let got = policy().check(&rd, None);
                prop_assert_eq!(got.is_ok(), is_allowed(&host), "{} -> {:?}", rd, got);
            });
        }
    }
}

//! Pure checks on single values: host names and patterns, rule paths, HTTP
//! methods, cookie names, URLs.
//!
//! Each returns the normalised value or the reason it is wrong, phrased to
//! follow the quoted value (`"a..b" is not a valid host name: ...`); the
//! section checks in `validate` add the key path. No I/O.

use http::Method;
use url::{Host, Url};

use crate::config::HostPattern;

/// Methods a rule may name: RFC 9110, PATCH, and WebDAV's (used by file-sync apps).
const METHODS: [&str; 19] = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "CONNECT",
    "OPTIONS",
    "TRACE",
    "PATCH",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "REPORT",
    "MKCALENDAR",
    "SEARCH",
];

/// Checks a DNS name (already lower-cased): labels of `a-z 0-9 - _`, 1 to 63
/// characters, not starting or ending with `-`, 253 characters at most.
pub(super) fn domain(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 253 {
        return Err("it is longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("it has an empty label");
        }
        if label.len() > 63 {
            return Err("it has a label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err("it may contain only letters, digits, '-' and '_' (write international names in their xn-- form)");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label starts or ends with '-'");
        }
    }
    Ok(())
}

/// `rule.host`: an exact host or `*.suffix`, lower-cased, one trailing dot dropped.
pub(super) fn host_pattern(text: &str) -> Result<HostPattern, &'static str> {
    let lower = text.to_ascii_lowercase();
    let host = lower.strip_suffix('.').unwrap_or(&lower);
    if host.contains(':') {
        return Err("remove the port: hosts are matched without it");
    }
    if host == "*" {
        return Err("\"*\" alone would match every host; omit `host` instead");
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        if suffix.contains('*') {
            return Err("a wildcard may only be the whole leftmost label, as in \"*.example.com\"");
        }
        domain(suffix)?;
        return Ok(HostPattern::Suffix(format!(".{suffix}")));
    }
    if host.contains('*') {
        return Err("a wildcard may only be the whole leftmost label, as in \"*.example.com\"");
    }
    domain(host)?;
    Ok(HostPattern::Exact(host.to_owned()))
}

/// `rule.path`: starts with `/`; percent-escapes of unreserved characters are
/// decoded, other escapes upper-cased, characters a path cannot carry raw are
/// percent-encoded; repeated slashes and `.` segments are removed, and so is a
/// trailing `/` (except for the root). `..`, encoded slashes or backslashes,
/// backslashes, NUL, query and fragment are refused.
pub(super) fn rule_path(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err("must start with \"/\"".to_owned());
    }
    if text.contains('\\') {
        return Err("must not contain a backslash".to_owned());
    }
    if text.contains(['?', '#']) {
        return Err(
            "must not contain '?' or '#': rules match the path only, never the query".to_owned(),
        );
    }
    let decoded = decode_path(text)?;
    let mut segments = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err("must not contain \"..\" segments".to_owned()),
            s => segments.push(s),
        }
    }
    Ok(format!("/{}", segments.join("/")))
}

/// Decodes escapes of unreserved characters, normalises the rest, encodes
/// what cannot appear raw.
fn decode_path(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let value = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| "has a '%' that does not start a valid percent-escape".to_owned())?;
            match value {
                b'/' | b'\\' => {
                    return Err("must not contain an encoded slash or backslash (%2F, %5C): such requests are refused with 400".to_owned())
                }
                0 => return Err("must not contain NUL (%00)".to_owned()),
                v if is_unreserved(v) => out.push(char::from(v)),
                v => out.push_str(&format!("%{v:02X}")),
            }
            i += 3;
        } else if b.is_ascii_control() {
            return Err("must not contain control characters".to_owned());
        } else if is_unreserved(b) || b"!$&'()*+,;=:@/".contains(&b) {
            out.push(char::from(b));
            i += 1;
        } else {
            out.push_str(&format!("%{b:02X}"));
            i += 1;
        }
    }
    Ok(out)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `rule.methods[i]`: a known method, any case.
pub(super) fn method(text: &str) -> Option<Method> {
    let upper = text.to_ascii_uppercase();
    if METHODS.contains(&upper.as_str()) {
        Method::from_bytes(upper.as_bytes()).ok()
    } else {
        None
    }
}

/// RFC 6265 cookie-name: an RFC 2616 token.
pub(super) fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// True for `localhost`, `*.localhost`, 127.0.0.0/8 and `::1`.
pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// An absolute `http://` or `https://` URL with a host, no credentials, no
/// query and no fragment. The error names the value unless it carries a password.
pub(super) fn http_url(text: &str) -> Result<Url, String> {
    let shown = format!("{text:?}");
    let url = Url::parse(text).map_err(|_| format!("{shown} is not an absolute URL"))?;
    if !url.password().unwrap_or("").is_empty() || !url.username().is_empty() {
        return Err("the URL (not shown) must not contain a user name or password".to_owned());
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{shown} must use http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{shown} has no host"));
    }
    if url.query().is_some() {
        return Err(format!("{shown} must not have a query string"));
    }
    if url.fragment().is_some() {
        return Err(format!("{shown} must not have a fragment"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        assert_eq!(
            host_pattern("Grafana.Example.com."),
            Ok(HostPattern::Exact("grafana.example.com".into()))
        );
        assert_eq!(
            host_pattern("*.example.com"),
            Ok(HostPattern::Suffix(".example.com".into()))
        );
        for bad in [
            "*",
            "a.*.com",
            "*.example..com",
            "example.com:443",
            "*.*.com",
            "ex ample.com",
            "",
            "-a.com",
        ] {
            assert!(host_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths() {
        assert_eq!(rule_path("/").as_deref(), Ok("/"));
        assert_eq!(rule_path("/admin/").as_deref(), Ok("/admin"));
        assert_eq!(rule_path("//a/./b//").as_deref(), Ok("/a/b"));
        assert_eq!(rule_path("/%7euser/%41").as_deref(), Ok("/~user/A"));
        assert_eq!(rule_path("/a%3ab").as_deref(), Ok("/a%3Ab"));
        assert_eq!(rule_path("/caf\u{e9} x").as_deref(), Ok("/caf%C3%A9%20x"));
        for bad in [
            "admin",
            "/a/../b",
            "/a/%2e%2e/b",
            "/a%2fb",
            "/a%5Cb",
            "/a\\b",
            "/a?x=1",
            "/a#f",
            "/%zz",
            "/%00",
            "/a\tb",
        ] {
            assert!(rule_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn methods() {
        assert_eq!(method("get"), Some(Method::GET));
        assert_eq!(
            method("PROPFIND").map(|m| m.to_string()).as_deref(),
            Some("PROPFIND")
        );
        assert_eq!(method("GTE"), None);
    }

    #[test]
    fn cookie_names() {
        assert!(is_cookie_name("_portcullis"));
        assert!(is_cookie_name("__Host-session"));
        assert!(!is_cookie_name("a b"));
        assert!(!is_cookie_name("a=b"));
        assert!(!is_cookie_name(""));
    }

    #[test]
    fn urls() {
        assert!(http_url("https://a.example.com/x").is_ok());
        assert!(http_url("ftp://a.example.com").is_err());
        assert!(http_url("https://a.example.com/?q").is_err());
        assert!(http_url("https://a.example.com/#f").is_err());
        assert!(http_url("/relative").is_err());
        let e = http_url("https://u:pw123@a.example.com").unwrap_err();
        assert!(!e.contains("pw123"), "{e}");
    }
}

//! Unit tests of reading the original request from forward-auth headers.

use super::*;
use http::HeaderValue;

fn map(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v).unwrap(),
        );
    }
    h
}

/// The one-pass scan gives exactly what `HeaderMap::get` would.
#[test]
fn forwarding_scan_matches_get() {
    let h = map(&[
        ("X-Forwarded-Uri", b"/first"),
        ("x-forwarded-uri", b"/second"),
        ("X-Forwarded-Host", b"\xffbad"),
        ("x-forwarded-host", b"good.example"),
        ("X-Forwarded-Hostname", b"ignored"),
        ("x-original-url", b"https://a.example/x"),
        ("accept", b"*/*"),
    ]);
    let f = Forwarding::scan(&h);
    for (got, name) in [
        (f.uri, "x-forwarded-uri"),
        (f.host, "x-forwarded-host"),
        (f.original_url, "x-original-url"),
        (f.method, "x-forwarded-method"),
        (f.proto, "x-forwarded-proto"),
        (f.original_method, "x-original-method"),
    ] {
        assert_eq!(got, h.get(name).map(|v| v.to_str().ok()), "{name}");
    }
    assert!(f.any());
    assert!(!Forwarding::scan(&map(&[("x-forwarded-for", b"1.2.3.4")])).any());
}

/// `Original::from_request` for a trusted peer, with text header values.
fn read(pairs: &[(&str, &str)]) -> Result<(String, String, String, Option<Method>, bool), String> {
    let bytes: Vec<(&str, &[u8])> = pairs.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    let h = map(&bytes);
    Original::from_request(&h, "/oauth2/auth", false, true, false)
        .map(|o| {
            (
                o.proto.to_owned(),
                o.host_raw.into_owned(),
                o.target.into_owned(),
                o.method,
                o.nginx,
            )
        })
        .map_err(|e| e.to_string())
}

fn disagree(field: &'static str) -> Result<(String, String, String, Option<Method>, bool), String> {
    Err(OriginalError::Disagree(field).to_string())
}

/// Traefik's and Caddy's headers: X-Forwarded-Method/-Proto/-Host/-Uri.
const TRAEFIK: [(&str, &str); 4] = [
    ("X-Forwarded-Method", "POST"),
    ("X-Forwarded-Proto", "http"),
    ("X-Forwarded-Host", "app.example.com:8081"),
    ("X-Forwarded-Uri", "/staff/x?a=1"),
];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v = TRAEFIK.to_vec();
    v.extend_from_slice(extra);
    v
}

/// What the nginx example sends: both families, the same request.
#[test]
fn nginx_example_headers_agree() {
    let got = read(&with(&[
        ("X-Original-URL", "http://app.example.com:8081/staff/x?a=1"),
        ("X-Original-Method", "POST"),
    ]));
    assert_eq!(
        got,
        Ok((
            "http".into(),
            "app.example.com:8081".into(),
            "/staff/x?a=1".into(),
            Some(Method::POST),
            true
        ))
    );
}

/// ingress-nginx and hand-written snippets: X-Forwarded-Host from `$host`
/// (lower-case, no port) beside `$http_host` in the URL; a TLS hop in front
/// makes the URL say http while X-Forwarded-Proto says https.
#[test]
fn host_spellings_agree_and_https_wins() {
    let got = read(&[
        ("X-Original-URL", "http://App.Example.com.:8081/staff/x?a=1"),
        ("X-Original-Method", "GET"),
        ("X-Forwarded-Host", "app.example.com"),
        ("X-Forwarded-Proto", "https"),
    ]);
    assert_eq!(
        got,
        Ok((
            "https".into(),
            "app.example.com.:8081".into(),
            "/staff/x?a=1".into(),
            Some(Method::GET),
            true
        ))
    );
    // https in the URL wins over http in X-Forwarded-Proto too.
    let got = read(&with(&[(
        "X-Original-URL",
        "https://app.example.com:8081/staff/x?a=1",
    )]));
    assert_eq!(got.map(|o| o.0), Ok("https".into()));
    // Both http: http.
    let got = read(&with(&[(
        "X-Original-URL",
        "http://app.example.com:8081/staff/x?a=1",
    )]));
    assert_eq!(got.map(|o| o.0), Ok("http".into()));
}

/// issue 14: a client-sent X-Original-URL naming another host (whose rule
/// for the same path may be public) is refused, not judged.
#[test]
fn foreign_host_is_refused() {
    for foreign in [
        "https://other.example.com/staff/x?a=1",
        "http://other.example.com:8081/staff/x?a=1",
        "http://app.example.com.evil/staff/x?a=1",
        "http://[::1]:8081/staff/x?a=1",
        "http://127.0.0.1:8081/staff/x?a=1",
    ] {
        assert_eq!(
            read(&with(&[("X-Original-URL", foreign)])),
            disagree("host"),
            "{foreign}"
        );
    }
}

#[test]
fn foreign_path_or_query_is_refused() {
    for foreign in [
        "http://app.example.com:8081/health",
        "http://app.example.com:8081/staff/x",
        "http://app.example.com:8081/staff/x?a=2",
        "http://app.example.com:8081/staff/%78?a=1",
        "http://app.example.com:8081/staff/x?a=1#f",
        "http://app.example.com:8081",
    ] {
        assert_eq!(
            read(&with(&[("X-Original-URL", foreign)])),
            disagree("path and query"),
            "{foreign}"
        );
    }
}

/// A client-sent X-Original-Method cannot turn Traefik's POST into a GET.
#[test]
fn foreign_method_is_refused() {
    let got = read(&with(&[
        ("X-Original-URL", "http://app.example.com:8081/staff/x?a=1"),
        ("X-Original-Method", "GET"),
    ]));
    assert_eq!(got, disagree("method"));
    // Methods are case-sensitive tokens: "post" is not POST.
    let got = read(&with(&[
        ("X-Original-URL", "http://app.example.com:8081/staff/x?a=1"),
        ("X-Original-Method", "post"),
    ]));
    assert_eq!(got, disagree("method"));
}

/// A forwarded field that is present but not readable text cannot agree
/// with the URL; it is not ignored (which would let the URL alone decide).
#[test]
fn unreadable_forwarded_fields_disagree() {
    for (name, field) in [
        ("X-Forwarded-Host", "host"),
        ("X-Forwarded-Uri", "path and query"),
    ] {
        let h = map(&[
            (name, b"/st\xffaff"),
            ("X-Original-URL", b"http://app.example.com/staff"),
        ]);
        let got = Original::from_request(&h, "/", false, true, false).map(|_| ());
        assert_eq!(
            got.map_err(|e| e.to_string()),
            Err(OriginalError::Disagree(field).to_string()),
            "{name}"
        );
    }
    let h = map(&[("X-Original-URL", b"http://app.example.com/st\xffaff")]);
    assert!(matches!(
        Original::from_request(&h, "/", false, true, false),
        Err(OriginalError::BadOriginalUrl(_))
    ));
    let h = map(&[
        ("X-Original-URL", b"http://app.example.com/staff"),
        ("X-Original-Method", b"G\xffT"),
    ]);
    assert!(matches!(
        Original::from_request(&h, "/", false, true, false),
        Err(OriginalError::BadMethod)
    ));
}

/// Without X-Original-Method the method is the forwarded one, or unknown.
#[test]
fn method_falls_back_to_forwarded_or_unknown() {
    let got = read(&[
        ("X-Original-URL", "http://app.example.com/staff"),
        ("X-Forwarded-Method", "DELETE"),
    ]);
    assert_eq!(got.map(|o| o.3), Ok(Some(Method::DELETE)));
    let got = read(&[("X-Original-URL", "http://app.example.com/staff")]);
    assert_eq!(got.map(|o| o.3), Ok(None));
    let got = read(&[
        ("X-Forwarded-Host", "app.example.com"),
        ("X-Forwarded-Uri", "/staff"),
    ]);
    assert_eq!(got.map(|o| o.3), Ok(None));
}

/// Values a naive `scheme://` slice would mis-read (or panic on): refused.
#[test]
fn ambiguous_or_malformed_urls_are_refused() {
    for bad in [
        "http:a",
        "https:host/path",
        "http:/\\a",
        "http:\\\\a/x",
        "http://a@b/",
        "http://a:b@app.example.com/",
        "http://app.example.com\\@evil.example/",
        "http://evil.example\\app.example.com/",
        "http://%61pp.example.com/",
        "http://0x7f.1/",
        "http://127.1/",
        "http:///app.example.com/",
        "http://",
        "http://app.example.com:99999/",
        "http://app.example.com#x/",
        "ftp://app.example.com/",
        "javascript://app.example.com/",
        " http://app.example.com/",
        "//app.example.com/",
        "/staff",
        "",
    ] {
        let got = read(&[("X-Original-URL", bad)]);
        assert!(
            matches!(&got, Err(e) if e.starts_with("X-Original-URL rejected")),
            "{bad:?} -> {got:?}"
        );
    }
}

/// The host comes from the parsed authority; the target stays raw.
#[test]
fn url_parts() {
    let p = |t| OriginalUrl::parse(t).map_err(|e| e.to_string());
    let ok = |https, host: &str, target| {
        Ok(OriginalUrl {
            https,
            host: host.to_owned(),
            target,
        })
    };
    assert_eq!(p("HTTPS://App.Test/a"), ok(true, "app.test", "/a"));
    assert_eq!(p("http://app.test"), ok(false, "app.test", "/"));
    assert_eq!(p("http://app.test?x=1"), ok(false, "app.test", "?x=1"));
    assert_eq!(p("http://app.test:80/a"), ok(false, "app.test", "/a"));
    assert_eq!(
        p("https://app.test:8443/a"),
        ok(true, "app.test:8443", "/a")
    );
    assert_eq!(p("http://[::1]:8080/x"), ok(false, "[::1]:8080", "/x"));
    assert_eq!(p("http://[0:0::1]/x"), ok(false, "[::1]", "/x"));
    assert_eq!(
        p("http://app.test/./%2e%2e/a//b\\c?q=/../"),
        ok(false, "app.test", "/./%2e%2e/a//b\\c?q=/../")
    );
}

/// Forwarded headers from an untrusted peer are never read.
#[test]
fn untrusted_peer_is_judged_on_its_own_request() {
    let h = map(&[
        ("Host", b"gw.example.com"),
        ("X-Original-URL", b"https://other.example.com/health"),
        ("X-Forwarded-Host", b"other.example.com"),
        ("X-Forwarded-Uri", b"/health"),
    ]);
    let o = Original::from_request(&h, "/oauth2/auth?x", false, false, false).unwrap();
    assert_eq!(
        (o.proto, &*o.host_raw, &*o.target, o.nginx),
        ("http", "gw.example.com", "/oauth2/auth?x", false)
    );
}

/// Property tests: arbitrary header bytes and near-miss requests. Case
/// count from `PROPTEST_CASES` (default 256).
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// The six headers the check reads, in a fixed order.
    const NAMES: [&str; 6] = [
        "X-Original-URL",
        "X-Original-Method",
        "X-Forwarded-Host",
        "X-Forwarded-Uri",
        "X-Forwarded-Method",
        "X-Forwarded-Proto",
    ];

    /// Bytes a header value can hold (no CR, LF, NUL or other controls but
    /// tab), weighted towards the ones that matter to URLs and hosts.
    fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => prop::sample::select(b"/:.@\\%?#[]-_ aA1,\t".to_vec()),
            2 => 0x20u8..0x7f,
            1 => 0x80u8..=0xff,
        ];
        prop::collection::vec(byte, 0..40)
    }

    /// A host name in mixed case; its last label starts with a letter, so
    /// no URL parser reads it as a number.
    fn clean_name() -> impl Strategy<Value = String> {
        let label = "[a-zA-Z][a-zA-Z0-9]{0,3}(-[a-zA-Z0-9]{1,2})?";
        prop::collection::vec(label, 1..4).prop_map(|labels| labels.join("."))
    }

    /// What may follow a host name without changing the host: a trailing
    /// dot, a port.
    fn host_suffix() -> impl Strategy<Value = String> {
        let dot = prop::sample::select(vec!["", "."]);
        let port = prop::sample::select(vec!["", ":80", ":443", ":8080", ":"]);
        (dot, port).prop_map(|(d, p)| format!("{d}{p}"))
    }

    fn clean_host() -> impl Strategy<Value = String> {
        (clean_name(), host_suffix()).prop_map(|(n, s)| n + &s)
    }

    /// Hosts that are malformed, ambiguous, or normal hosts in disguise.
    fn odd_host() -> impl Strategy<Value = String> {
        prop_oneof![
            clean_host(),
            prop::sample::select(vec![
                "[::1]",
                "[0:0::1]:8080",
                "127.0.0.1",
                "127.1",
                "0x7f.0.0.1",
                "2130706433",
                "[fe80::1%25eth0]",
                "a..b",
                ".a",
                "a b",
                "a@b",
                "a\\b",
                "%61pp.test",
                "app.test:99999",
                "app.test:x",
                "xn--e1awd7f.test",
                "app.test,evil.test",
                "",
            ])
            .prop_map(String::from),
        ]
    }

    /// A raw request target: path, optional query, near-miss bytes included.
    fn target() -> impl Strategy<Value = String> {
        "(/[a-zA-Z0-9.%;~]{0,5}){1,3}(\\?[a-z0-9=&/.%]{0,6})?"
    }

    fn method() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["GET", "POST", "DELETE", "get", "PATCH"])
    }

    /// Normalised form of the first comma-separated value, as the check reads it.
    fn norm(h: &str) -> Option<String> {
        normalize_host(first_value(h)).ok().map(Cow::into_owned)
    }

    /// Any bytes in any of the six headers, trusted or not: no panic; an
    /// untrusted peer is judged on its own request whatever the headers
    /// say; an accepted forwarded check has scheme http or https and a
    /// target one of the headers carried.
    #[test]
    fn prop_any_forwarding_headers_never_panic() {
        let values = prop::collection::vec(prop::option::of(header_bytes()), NAMES.len());
        proptest!(|(values in values, tls in any::<bool>(), trusted in any::<bool>())| {
            let pairs: Vec<(&str, &[u8])> = NAMES
                .iter()
                .zip(&values)
                .filter_map(|(n, v)| Some((*n, v.as_deref()?)))
                .collect();
            let h = map(&pairs);
            let got = Original::from_request(&h, "/own", tls, trusted, false);
            if !trusted {
                let o = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(o.proto, if tls { "https" } else { "http" });
                prop_assert_eq!(&*o.target, "/own");
                prop_assert_eq!(&*o.host_raw, "");
                return Ok(());
            }
            if let Ok(o) = got {
                let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
                let t = &*o.target;
                prop_assert!(
                    header("x-forwarded-uri") == Some(t)
                        || header("x-original-url").is_some_and(|u| u.ends_with(t) || t == "/"),
                    "target {t:?} from {pairs:?}"
                );
                prop_assert!(o.proto == "http" || o.proto == "https");
            }
        });
    }

    /// Any text as `X-Original-URL`: no panic; an accepted URL has a host
    /// that normalises to what its raw authority normalises to, and a raw
    /// target that is the text's tail, starting with `/` or `?`.
    #[test]
    fn prop_original_url_parse_reads_the_written_authority() {
        let scheme = prop::sample::select(vec![
            "http", "https", "HTTP", "hTTpS", "ftp", "http:", "", "https:/",
        ]);
        let sep = prop::sample::select(vec!["://", ":", ":/", ":\\\\", ":/\\", "//", ":///", ""]);
        let auth = prop_oneof![odd_host(), "[a-zA-Z0-9.:@%\\[\\]\\\\_-]{0,12}"];
        let tail = "[/?#a-z%.\\\\@]{0,8}";
        let shaped = (scheme, sep, auth, tail).prop_map(|(s, p, a, t)| format!("{s}{p}{a}{t}"));
        proptest!(|(text in prop_oneof![3 => shaped, 1 => "\\PC{0,30}"])| {
            let Ok(u) = OriginalUrl::parse(&text) else { return Ok(()) };
            prop_assert!(u.target.starts_with(['/', '?']), "{text:?} -> {u:?}");
            prop_assert!(text.ends_with(u.target) || u.target == "/", "{text:?} -> {u:?}");
            let (scheme, rest) = text.split_once("://").unwrap_or_default();
            prop_assert_eq!(u.https, scheme.eq_ignore_ascii_case("https"));
            let raw = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
            prop_assert!(is_safe_host_raw(raw), "{text:?}");
            let host = normalize_host(&u.host);
            prop_assert!(host.is_ok(), "{text:?} -> {u:?}");
            prop_assert_eq!(normalize_host(raw).ok(), host.ok(), "{}", text);
        });
    }

    /// Both families, each field possibly changed in one of them: accepted
    /// only when they agree, and then the judged host is the normalised
    /// `X-Forwarded-Host` and the URL's authority, the target the raw text
    /// both carry, the method the one both name, and the scheme https when
    /// either side says https.
    #[test]
    fn prop_both_families_must_agree() {
        let proto = prop::option::of(prop::sample::select(vec!["http", "https", "HTTP", "wss"]));
        proptest!(|(
            (host, path, m) in (odd_host(), target(), method()),
            (other_host, other_path, other_m) in (odd_host(), target(), method()),
            change in prop::collection::vec(prop::bool::weighted(0.25), 3),
            https in any::<bool>(),
            proto in proto,
            original_method in any::<bool>(),
        )| {
            let fhost = if change[0] { &other_host } else { &host };
            let fpath = if change[1] { &other_path } else { &path };
            let fm = if change[2] { other_m } else { m };
            let url = format!("{}://{host}{path}", if https { "https" } else { "http" });
            let mut pairs = vec![
                ("X-Original-URL", url.as_bytes()),
                ("X-Forwarded-Host", fhost.as_bytes()),
                ("X-Forwarded-Uri", fpath.as_bytes()),
                ("X-Forwarded-Method", fm.as_bytes()),
            ];
            if original_method {
                pairs.push(("X-Original-Method", m.as_bytes()));
            }
            if let Some(p) = proto {
                pairs.push(("X-Forwarded-Proto", p.as_bytes()));
            }
            let h = map(&pairs);
            let got = Original::from_request(&h, "/", false, true, false);
            if norm(fhost) != norm(&host) || fpath != &path || (original_method && fm != m) {
                prop_assert!(got.is_err(), "{pairs:?} accepted");
            }
            let Ok(o) = got else { return Ok(()) };
            let judged = normalize_host(&o.host_raw).ok().map(Cow::into_owned);
            prop_assert!(judged.is_some());
            prop_assert_eq!(&judged, &norm(fhost));
            prop_assert_eq!(&judged, &norm(&host));
            prop_assert_eq!(&*o.target, fpath.as_str());
            prop_assert_eq!(&*o.target, path.as_str());
            prop_assert_eq!(o.method.as_ref().map(Method::as_str), Some(fm));
            let says_https = https || proto.is_some_and(|p| !p.eq_ignore_ascii_case("http"));
            prop_assert_eq!(o.proto, if says_https { "https" } else { "http" });
            prop_assert!(o.nginx);
        });
    }

    /// The same well-formed request in both families is accepted (the
    /// agreement check refuses only real disagreement).
    #[test]
    fn prop_agreeing_families_are_accepted() {
        let spellings = (clean_name(), host_suffix(), host_suffix(), any::<bool>());
        proptest!(|((name, a, b, upper) in spellings, path in target(), m in method())| {
            // The same host spelled twice: case, trailing dot and port may differ.
            let host = format!("{name}{a}");
            let same = if upper { name.to_ascii_uppercase() } else { name.to_ascii_lowercase() } + &b;
            let url = format!("http://{host}{path}");
            let pairs = [
                ("X-Original-URL", url.as_bytes()),
                ("X-Original-Method", m.as_bytes()),
                ("X-Forwarded-Host", same.as_bytes()),
                ("X-Forwarded-Uri", path.as_bytes()),
                ("X-Forwarded-Method", m.as_bytes()),
            ];
            let h = map(&pairs);
            let got = Original::from_request(&h, "/", false, true, false);
            prop_assert!(got.is_ok(), "{pairs:?}: {got:?}");
        });
    }

    /// `X-Forwarded-*` alone: the scheme is http only when the first
    /// `X-Forwarded-Proto` value says http (or it is absent on a plain
    /// connection), and the host is the first value, as sent.
    #[test]
    fn prop_forwarded_family_alone() {
        let proto = prop::option::of("(http|https|HTTP|ws|)(, ?(http|https))?");
        proptest!(|(proto in proto, host in odd_host(), path in target(), tls in any::<bool>())| {
            let hosts = format!("{host}, other.test");
            let mut pairs = vec![
                ("X-Forwarded-Host", hosts.as_bytes()),
                ("X-Forwarded-Uri", path.as_bytes()),
            ];
            if let Some(p) = &proto {
                pairs.push(("X-Forwarded-Proto", p.as_bytes()));
            }
            let h = map(&pairs);
            let o = Original::from_request(&h, "/", tls, true, false)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let http = match &proto {
                Some(p) => first_value(p).eq_ignore_ascii_case("http"),
                None => !tls,
            };
            prop_assert_eq!(o.proto, if http { "http" } else { "https" });
            prop_assert_eq!(&*o.host_raw, first_value(&hosts));
            prop_assert_eq!(&*o.target, path.as_str());
            prop_assert!(!o.nginx);
        });
    }
}

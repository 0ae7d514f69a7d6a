//! Unit tests of reading the original request from forward-auth headers.

use super::*;

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

//! Small HTTP helpers shared by every endpoint: the response body type,
//! canned responses, request classification (browser or API), query-string
//! lookup and `Cookie` header scanning. Nothing here knows about sessions or rules.

use std::borrow::Cow;
use std::convert::Infallible;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Empty, Full};

/// Body of every response portcullis sends: a fixed buffer, or a streamed
/// upstream body in proxy mode. The streamed one is boxed: it is several
/// times the size of a fixed one, and every response (a forward-auth
/// answer too) is moved a few times on its way to the connection.
pub type Body = Either<Full<Bytes>, Box<crate::base::transport::body::ResponseBody>>;

/// A response with a fixed body and content type.
pub fn fixed(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut res = Response::new(Either::Left(Full::new(body.into())));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// An empty-bodied response.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut res = Response::new(Either::Left(Full::new(Bytes::new())));
    *res.status_mut() = status;
    res
}

/// A 302 to `location`. `location` must already be validated.
pub fn redirect(location: &str) -> Response<Body> {
    let mut res = empty(StatusCode::FOUND);
    match HeaderValue::from_str(location) {
        Ok(v) => {
            res.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => {
            res.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/"));
        }
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Unused marker so `Empty` stays available for upgrade responses.
pub fn no_body() -> Empty<Bytes> {
    Empty::new()
}

/// Converts an infallible result (hyper service signature).
pub fn ok(res: Response<Body>) -> Result<Response<Body>, Infallible> {
    Ok(res)
}

/// True when the client is a browser that should be redirected to a login
/// page: its `Accept` header names `text/html`.
pub fn is_browser(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| contains_ignore_case(v.as_bytes(), b"text/html"))
}

/// The host the client asked for, as sent: HTTP/2 carries it in
/// `:authority` (the request URI), HTTP/1.1 in `Host` (an absolute-form
/// target's authority wins, as RFC 9112 says).
pub fn request_host<B>(req: &http::Request<B>) -> Option<&str> {
    req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
    })
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The first value of query parameter `name`, percent-decoded (`+` is a space).
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<Cow<'a, str>> {
    let query = query?;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            return Some(decode_form(v));
        }
    }
    None
}

/// Decodes one `application/x-www-form-urlencoded` component.
pub fn decode_form(v: &str) -> Cow<'_, str> {
    if !v.contains(['%', '+']) {
        return Cow::Borrowed(v);
    }
    let replaced = v.replace('+', " ");
    Cow::Owned(
        percent_encoding::percent_decode_str(&replaced)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// Percent-encodes a query component.
pub fn encode_component(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// The one reader of the `Cookie` header: every place that finds, strips
/// or clears portcullis's cookies splits it here, on the header's bytes.
///
/// A header is split at `;` into pieces; a piece's name is the text before
/// its first `=`, its value what follows, both without surrounding spaces or
/// tabs, and a value in double quotes loses them. Nothing is checked as text:
/// a byte that is not ASCII in one cookie (`z=café`, set by any app under the
/// cookie domain) never hides the others, so the session lookup, the cut
/// before proxying and sign-out all see the same cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookiePiece<'a> {
    /// The piece as sent, without surrounding spaces or tabs.
    raw: &'a [u8],
    /// Position of the first `=` in `raw`.
    eq: Option<usize>,
}

/// The pieces of one `Cookie` header value, in order; see [`CookiePiece`].
#[derive(Debug, Clone)]
pub struct CookiePieces<'a> {
    rest: Option<&'a [u8]>,
}

/// Splits one `Cookie` header value into its pieces, empty ones included.
pub fn cookie_pieces(value: &[u8]) -> CookiePieces<'_> {
    CookiePieces { rest: Some(value) }
}

/// Every `name=value` pair of every `Cookie` header, in order. Pieces
/// without `=` are skipped, never an error: a bad cookie means "no cookie".
pub fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| cookie_pieces(v.as_bytes()))
        .filter_map(|p| Some((p.name(), p.value()?)))
}

/// The value of cookie `name` (the first one wins), as the bytes sent: the
/// decoder of that cookie judges them.
pub fn cookie_bytes<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    let name = name.as_bytes();
    headers
        .get_all(header::COOKIE)
        .iter()
        .find_map(|v| cookie_pieces(v.as_bytes()).find_map(|p| p.value_of(name)))
}

// === impl CookiePieces ===

impl<'a> Iterator for CookiePieces<'a> {
    type Item = CookiePiece<'a>;

    fn next(&mut self) -> Option<CookiePiece<'a>> {
        let rest = self.rest?;
        // memchr for the long session value; the name before `=` is short,
        // where a plain byte scan wins.
        let piece = match memchr::memchr(b';', rest) {
            Some(i) => {
                self.rest = Some(&rest[i + 1..]);
                &rest[..i]
            }
            None => {
                self.rest = None;
                rest
            }
        };
        let raw = piece.trim_ascii();
        let eq = raw.iter().position(|&b| b == b'=');
        Some(CookiePiece { raw, eq })
    }
}

// === impl CookiePiece ===

impl<'a> CookiePiece<'a> {
    /// The piece as sent, without surrounding spaces or tabs.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The name: the text before the first `=`, trimmed; the whole piece when it has no `=`.
    pub fn name(&self) -> &'a [u8] {
        match self.eq {
            Some(eq) => self.raw[..eq].trim_ascii_end(),
            None => self.raw,
        }
    }

    /// The value after the first `=`, trimmed and unquoted; `None` without `=`.
    pub fn value(&self) -> Option<&'a [u8]> {
        let v = self.raw[self.eq? + 1..].trim_ascii_start();
        let unquoted = v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\""));
        Some(unquoted.unwrap_or(v))
    }

    /// The value when this piece is a `name=value` pair named `name`.
    fn value_of(&self, name: &[u8]) -> Option<&'a [u8]> {
        if self.name() == name {
            self.value()
        } else {
            None
        }
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> Cow<'_, str> {
    if !s.contains(['<', '>', '&', '"', '\'']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Lower-cases a header name and maps every separator (`_`, `.` and any
/// other character that is not a letter or digit) to `-`: CGI, PHP and
/// other stacks fold them alike (`X.Auth.User` arrives as `HTTP_X_AUTH_USER`).
pub fn canonical(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b if b.is_ascii_alphanumeric() => b.to_ascii_lowercase() as char,
            _ => '-',
        })
        .collect()
}

/// A fixed-size string buffer for short formatted values (IP addresses,
/// a bracketed IPv6 host), so formatting them on a request's path does not
/// allocate. A write that does not fit fails with `fmt::Error`.
pub struct StackStr {
    buf: [u8; 64],
    len: usize,
}

impl Default for StackStr {
    fn default() -> Self {
        StackStr {
            buf: [0; 64],
            len: 0,
        }
    }
}

impl StackStr {
    /// The text written so far.
    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are ever appended, so the prefix is valid UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cookie_headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn request_host_reads_the_http2_authority_and_the_host_header() {
        // HTTP/2: the host is in `:authority`, there is no Host header.
        let h2 = http::Request::get("https://localhost:8443/oauth2/start")
            .version(http::Version::HTTP_2)
            .body(())
            .unwrap();
        assert_eq!(request_host(&h2), Some("localhost:8443"));
        // HTTP/1.1 origin form: the Host header.
        let h1 = http::Request::get("/oauth2/start")
            .header(header::HOST, "app.example.com:8080")
            .body(())
            .unwrap();
        assert_eq!(request_host(&h1), Some("app.example.com:8080"));
        let none = http::Request::get("/").body(()).unwrap();
        assert_eq!(request_host(&none), None);
    }

    #[test]
    fn cookie_scanning_tolerates_garbage() {
        let h = cookie_headers(&[
            b"a=1; ;;garbage; b=\"2\"",
            b"c=3",
            b" d = 4 ;e=;f",
            b"g=\"",
            b"=5; h=6",
            b"_portcullis=x=y; _portcullis=second",
        ]);
        for (name, want) in [
            ("a", Some("1")),
            ("b", Some("2")),
            ("c", Some("3")),
            ("d", Some("4")),
            ("e", Some("")),
            ("f", None),
            ("g", Some("\"")),
            ("h", Some("6")),
            ("", Some("5")),
            ("garbage", None),
            ("_portcullis", Some("x=y")),
            ("x", None),
            ("A", None),
        ] {
            assert_eq!(
                cookie_bytes(&h, name),
                want.map(str::as_bytes),
                "cookie {name:?}"
            );
        }
        let pairs: Vec<_> = cookies(&h).collect();
        assert_eq!(pairs.len(), 10, "{pairs:?}");
        assert_eq!(pairs[0], (&b"a"[..], &b"1"[..]));
        assert_eq!(cookie_bytes(&HeaderMap::new(), "s"), None);
    }

    /// Bytes that are not ASCII text anywhere in the header hide nothing:
    /// every reader sees the same cookies, and each value comes back as sent.
    #[test]
    fn cookies_are_read_on_bytes() {
        let h = cookie_headers(&[b"junk=\xff\x80; z=caf\xc3\xa9; s=ok\xc3", b"t=1"]);
        assert_eq!(cookie_bytes(&h, "s"), Some(&b"ok\xc3"[..]));
        assert_eq!(cookie_bytes(&h, "z"), Some("café".as_bytes()));
        assert_eq!(cookie_bytes(&h, "t"), Some(&b"1"[..]));
        let names: Vec<_> = cookies(&h).map(|(k, _)| k).collect();
        assert_eq!(names, [&b"junk"[..], b"z", b"s", b"t"]);
        let raw: Vec<_> = cookie_pieces(b" a = \"q\" ;b;;\tc=\xe9 ")
            .map(|p| (p.raw(), p.name(), p.value()))
            .collect();
        assert_eq!(
            raw,
            [
                (&b"a = \"q\""[..], &b"a"[..], Some(&b"q"[..])),
                (b"b", b"b", None),
                (b"", b"", None),
                (b"c=\xe9", b"c", Some(&b"\xe9"[..])),
            ]
        );
    }

    /// Bytes a header value may hold: visible ASCII, space, tab, and every
    /// byte from 0x80 up (what `HeaderValue::from_bytes` accepts).
    fn header_byte() -> impl Strategy<Value = u8> {
        prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff]
    }

    /// A cookie name: an RFC 6265 token.
    fn cookie_name() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                proptest::sample::select(b"!#$%&'*+-.^_`|~".to_vec()),
                b'0'..=b'9',
                b'A'..=b'Z',
                b'a'..=b'z',
            ],
            1..12,
        )
    }

    /// A cookie value as browsers send what apps set: no `;`, no quotes,
    /// no surrounding white space, any byte from 0x80 up.
    fn cookie_value() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![0x21u8..0x7f, 0x80u8..=0xff]
                .prop_filter("no ; or quote", |b| *b != b';' && *b != b'"'),
            0..24,
        )
    }

    proptest! {
        /// Any header value splits into `;`-free pieces, one more than its
        /// `;`s, each trimmed, with a name free of `=`, and no panic.
        #[test]
        fn prop_any_cookie_header_splits_into_its_pieces(
            v in proptest::collection::vec(header_byte(), 0..200),
        ) {
            let pieces: Vec<_> = cookie_pieces(&v).collect();
            prop_assert_eq!(pieces.len(), v.iter().filter(|&&b| b == b';').count() + 1);
            for p in pieces {
                prop_assert!(!p.raw().contains(&b';'));
                prop_assert_eq!(p.raw().trim_ascii(), p.raw());
                prop_assert!(!p.name().contains(&b'='));
                prop_assert_eq!(p.value().is_some(), p.raw().contains(&b'='));
            }
            let h = cookie_headers(&[&v]);
            let pairs: Vec<_> = cookie_pieces(&v).filter_map(|p| Some((p.name(), p.value()?))).collect();
            prop_assert_eq!(cookies(&h).collect::<Vec<_>>(), pairs);
        }

        /// Pairs written the way browsers write them, spread over several
        /// `Cookie` headers, read back as sent, byte for byte, in order; the
        /// first of a name wins.
        #[test]
        fn prop_written_pairs_read_back_as_sent(
            pairs in proptest::collection::vec((cookie_name(), cookie_value()), 1..10),
            split in 0usize..10,
            pad in proptest::sample::select(vec!["", " ", "  ", "\t"]),
        ) {
            let join = |pairs: &[(Vec<u8>, Vec<u8>)]| {
                let mut out = Vec::new();
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b";");
                        out.extend_from_slice(pad.as_bytes());
                    }
                    out.extend_from_slice(k);
                    out.push(b'=');
                    out.extend_from_slice(v);
                }
                out
            };
            let split = split.min(pairs.len());
            let (a, b) = pairs.split_at(split);
            let values: Vec<Vec<u8>> = [a, b].iter().filter(|p| !p.is_empty()).map(|p| join(p)).collect();
            let h = cookie_headers(&values.iter().map(Vec::as_slice).collect::<Vec<_>>());
            let read: Vec<(&[u8], &[u8])> = cookies(&h).collect();
            let sent: Vec<(&[u8], &[u8])> = pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
            prop_assert_eq!(read, sent);
            for (k, _) in &pairs {
                let first = pairs.iter().find(|(n, _)| n == k).map(|(_, v)| &v[..]);
                prop_assert_eq!(cookie_bytes(&h, std::str::from_utf8(k).unwrap()), first);
            }
        }
    }

    #[test]
    fn query() {
        assert_eq!(
            query_param(Some("x=1&rd=%2Fa%3Fb%3D1+2"), "rd").as_deref(),
            Some("/a?b=1 2")
        );
        assert_eq!(query_param(Some("rd"), "rd").as_deref(), Some(""));
        assert_eq!(query_param(None, "rd"), None);
    }

    #[test]
    fn browser_detection() {
        let mut h = HeaderMap::new();
        assert!(!is_browser(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("Text/HTML,*/*"));
        assert!(is_browser(&h));
    }
}

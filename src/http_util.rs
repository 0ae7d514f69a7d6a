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
/// upstream body in proxy mode.
pub type Body = Either<Full<Bytes>, crate::proxy::body::ResponseBody>;

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

/// Iterates over the `name=value` pairs of every `Cookie` header. Malformed
/// pieces are skipped, never an error: a bad cookie means "no cookie".
pub fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(text)
        .flat_map(|v| CookiePairs { rest: v })
}

/// A header value as text: what `HeaderValue::to_str` accepts (visible
/// ASCII, space and tab). A long value (the session cookie) is checked
/// without `to_str`'s early exit, so the compiler tests many bytes per
/// instruction, then through `str::from_utf8`'s ASCII fast path: about half
/// of `to_str`'s byte-at-a-time loop. `from_utf8` costs over a hundred
/// instructions even on a few bytes, so short values keep `to_str`.
pub fn text(v: &HeaderValue) -> Option<&str> {
    let b = v.as_bytes();
    if b.len() < 64 {
        return v.to_str().ok();
    }
    let visible = b.iter().fold(true, |ok, &c| {
        ok & ((0x20..0x7f).contains(&c) || c == b'\t')
    });
    if visible {
        std::str::from_utf8(b).ok()
    } else {
        None
    }
}

/// The pairs of one `Cookie` header value. The value is ASCII (`to_str`), so
/// names are found with byte scans and trimmed as ASCII, cheaper than
/// `split_once`/`trim` on `str`.
struct CookiePairs<'a> {
    rest: &'a str,
}

impl<'a> Iterator for CookiePairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            // `find` runs memchr, best for the long session value; the name
            // before `=` is short, where a plain byte scan wins.
            let (piece, tail) = match self.rest.find(';') {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, ""),
            };
            self.rest = tail;
            let Some(eq) = piece.bytes().position(|b| b == b'=') else {
                continue;
            };
            let v = piece[eq + 1..].trim_ascii();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            return Some((piece[..eq].trim_ascii(), v));
        }
        None
    }
}

/// The value of cookie `name`, if present (the first one wins).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    cookies(headers).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// The raw bytes of cookie `name`'s value (the first one wins), split the
/// way [`cookies`] splits pairs but without checking the header as text:
/// for a value that a strict decoder checks byte by byte anyway (the session
/// cookie), where the text check of the whole header is the dearer part of
/// finding it. Other cookies' bytes are never looked at beyond the split.
pub fn cookie_bytes<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    let name = name.as_bytes();
    headers
        .get_all(header::COOKIE)
        .iter()
        .find_map(|v| find_cookie(v.as_bytes(), name))
}

fn find_cookie<'a>(mut rest: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    loop {
        let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
        let piece = &rest[..end];
        if let Some(eq) = piece.iter().position(|&b| b == b'=') {
            if piece[..eq].trim_ascii() == name {
                let v = piece[eq + 1..].trim_ascii();
                let unquoted = v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\""));
                return Some(unquoted.unwrap_or(v));
            }
        }
        rest = rest.get(end + 1..)?;
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
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; ;;garbage; b=\"2\""),
        );
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(cookie(&h, "a"), Some("1"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "c"), Some("3"));
        assert_eq!(cookie(&h, "garbage"), None);
    }

    #[test]
    fn cookie_bytes_splits_like_cookie() {
        let values = [
            "a=1; ;;garbage; b=\"2\"",
            "c=3",
            " d = 4 ;e=;f",
            "g=\"",
            "=5; h=6",
            "_portcullis=x=y; _portcullis=second",
        ];
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::COOKIE, HeaderValue::from_static(v));
        }
        for name in [
            "a",
            "b",
            "c",
            "d",
            "e",
            "f",
            "g",
            "h",
            "",
            "garbage",
            "_portcullis",
            "x",
            "A",
        ] {
            assert_eq!(
                cookie_bytes(&h, name),
                cookie(&h, name).map(str::as_bytes),
                "cookie {name:?}"
            );
        }
        // Bytes that are not header text elsewhere in the header do not hide
        // the cookie; its own bytes come back unchanged for the decoder to judge.
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_bytes(b"junk=\xff\x80; s=ok\xc3").unwrap(),
        );
        assert_eq!(cookie_bytes(&h, "s"), Some(&b"ok\xc3"[..]));
        assert_eq!(cookie_bytes(&HeaderMap::new(), "s"), None);
    }

    #[test]
    fn text_accepts_what_to_str_accepts() {
        for c in 0..=255u8 {
            for v in [
                vec![c],
                vec![b'a'; 70],
                [vec![b'x'; 37], vec![c]].concat(),
                [vec![b'x'; 99], vec![c]].concat(),
            ] {
                let Ok(v) = HeaderValue::from_bytes(&v) else {
                    continue;
                };
                assert_eq!(text(&v), v.to_str().ok(), "{c}");
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

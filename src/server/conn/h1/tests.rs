//! The server's own HTTP/1.1 path against hyper's server: a request head
//! this path takes must reach the endpoints exactly as hyper would hand it
//! over (method, target, version, fields in order), anything else must be
//! left whole for hyper; and answers must leave as hyper's server writes
//! them. Both sides run over in-memory pipes.

use std::convert::Infallible;
use std::time::Duration;

use http_body_util::{Full, StreamBody};
use hyper::body::{Frame, Incoming};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use http::header::HeaderValue;
use http::{Request, Version};

use super::*;
use crate::base::transport::body::ClientBody;

/// What the endpoints see of a request.
type Seen = (Method, String, Version, Vec<(String, Vec<u8>)>);

fn seen<B>(req: &Request<B>) -> Seen {
    (
        req.method().clone(),
        req.uri().to_string(),
        req.version(),
        req.headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect(),
    )
}

/// What hyper's HTTP/1.1 server hands its service for `raw` (the first
/// request), or `None` when it hands over none.
async fn hyper_sees(raw: &[u8]) -> Option<Seen> {
    let (client, server) = tokio::io::duplex(1 << 20);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let _ = tx.send(seen(&req));
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
    });
    let conn = tokio::spawn(
        hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(server), svc),
    );
    let (mut r, mut w) = tokio::io::split(client);
    let reader = tokio::spawn(async move {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v).await;
    });
    w.write_all(raw).await.unwrap();
    let first = tokio::time::timeout(Duration::from_millis(500), rx.recv())
        .await
        .ok()
        .flatten();
    conn.abort();
    reader.abort();
    first
}

const MAX: usize = 64 * 1024;

/// Requests this path takes, each followed by the start of the next one.
const TAKEN: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
    b"GET /oauth2/auth HTTP/1.1\r\nHost: auth.test\r\nX-Forwarded-Host: app.test\r\nX-Forwarded-Uri: /x?y=1\r\nX-Forwarded-Proto: https\r\nCookie: a=b; c=d\r\nCookie: e=f\r\n\r\n",
    b"HEAD /a/b/../c?q=%2F&x HTTP/1.1\r\nhost: a.test\r\nACCEPT: */*\r\n\r\n",
    b"DELETE //double//slash HTTP/1.1\r\nHost: a.test\r\nX-Empty:\r\nX-Spaces:    padded   \r\n\r\n",
    b"OPTIONS /x HTTP/1.1\r\nHost: a.test\r\nX-Obs: caf\xc3\xa9 \xff\r\nX-Tab: a\tb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive, Close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a.test\r\nContent_Length: 5\r\nX-Forwarded_For: 1.2.3.4\r\n\r\n",
    b"PURGE /cache HTTP/1.1\r\nHost: a.test\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a.test\n\n",
    b"GET /%zz%00 HTTP/1.1\r\nHost: a.test\r\n\r\n",
];

/// Requests left for hyper: bodies, upgrades, expectations, other
/// versions, other targets, HTTP/2, and heads that do not parse.
const HANDED: &[&[u8]] = &[
    b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.1\r\nHost: a.test\r\ncontent-length: 0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a.test\r\nTRANSFER-ENCODING: identity\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: a.test\r\n\r\n",
    b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
    b"CONNECT /a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
    b"GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost a.test\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
    b"GET / HTTP/1.1\r\n Folded: x\r\n\r\n",
    b"G\xc3T / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.2\r\n\r\n",
    b"GET /a b HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a.test\r\nX: y\r\n\r",
];

const NEXT: &[u8] = b"GET /next HTTP/1.1\r\n";

#[tokio::test]
async fn takes_bodiless_http11_requests_and_reads_them_as_hyper_does() {
    for raw in TAKEN {
        let mut buf = BytesMut::from(&raw[..]);
        buf.extend_from_slice(NEXT);
        let Parsed::Request { req, .. } = parse(&mut buf, MAX) else {
            panic!("not taken: {}", String::from_utf8_lossy(raw));
        };
        let hyper = hyper_sees(raw).await;
        assert_eq!(Some(seen(&req)), hyper, "{}", String::from_utf8_lossy(raw));
        assert!(matches!(req.body(), ClientBody::Empty));
        assert_eq!(&buf[..], NEXT, "the head alone is taken");
    }
}

#[tokio::test]
async fn leaves_every_other_request_whole_for_hyper() {
    for raw in HANDED {
        let mut buf = BytesMut::from(&raw[..]);
        let got = parse(&mut buf, MAX);
        // The last entry is a head cut short: more bytes may complete it.
        let partial = raw.ends_with(b"\r\n\r");
        assert!(
            matches!(
                (&got, partial),
                (Parsed::HandOver, false) | (Parsed::Partial, true)
            ),
            "{}: {got:?}",
            String::from_utf8_lossy(raw)
        );
        assert_eq!(&buf[..], &raw[..], "nothing taken");
    }
}

#[tokio::test]
async fn every_byte_in_a_target_or_a_name_is_taken_as_hyper_takes_it_or_left_whole() {
    for b in 0..=255u8 {
        for mut raw in [
            b"GET /a_c HTTP/1.1\r\nHost: a.test\r\n\r\n".to_vec(),
            b"GET / HTTP/1.1\r\nX-a_c: v\r\n\r\n".to_vec(),
            b"GET / HTTP/1.1\r\nX-a: v_w\r\n\r\n".to_vec(),
        ] {
            let at = raw.iter().position(|&c| c == b'_').unwrap();
            raw[at] = b;
            let mut buf = BytesMut::from(&raw[..]);
            match parse(&mut buf, MAX) {
                Parsed::Request { req, .. } => {
                    assert_eq!(Some(seen(&req)), hyper_sees(&raw).await, "{raw:?}")
                }
                _ => assert_eq!(&buf[..], &raw[..], "{raw:?}"),
            }
        }
    }
}

#[test]
fn a_connection_field_naming_close_closes() {
    for (raw, close) in [
        (&b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"[..], true),
        (
            b"GET / HTTP/1.1\r\nconnection:keep-alive ,  CLOSE \r\n\r\n",
            true,
        ),
        (
            b"GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
            true,
        ),
        (b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", false),
        (b"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", false),
        (b"GET / HTTP/1.1\r\nX-Connection: close\r\n\r\n", false),
    ] {
        let mut buf = BytesMut::from(raw);
        match parse(&mut buf, MAX) {
            Parsed::Request { close: c, .. } => {
                assert_eq!(c, close, "{}", String::from_utf8_lossy(raw))
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn heads_are_read_whole_and_limited() {
    let raw = b"GET /a HTTP/1.1\r\nHost: a.test\r\nX-Long: 0123456789\r\n\r\n";
    // Every cut of a head is partial and takes nothing.
    for cut in 1..raw.len() {
        let mut buf = BytesMut::from(&raw[..cut]);
        assert!(matches!(parse(&mut buf, MAX), Parsed::Partial), "{cut}");
        assert_eq!(buf.len(), cut);
    }
    // A head longer than the limit goes to hyper, whole or not.
    let mut buf = BytesMut::from(&raw[..]);
    assert!(matches!(parse(&mut buf, 40), Parsed::HandOver));
    let mut buf = BytesMut::from(&raw[..45]);
    assert!(matches!(parse(&mut buf, 40), Parsed::HandOver));
    assert_eq!(buf.len(), 45);
    // A hundred and one fields: more than hyper takes either.
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..101 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let mut buf = BytesMut::from(&many[..]);
    assert!(matches!(parse(&mut buf, MAX), Parsed::HandOver));
    assert_eq!(buf.len(), many.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// A valid head with one byte changed, or any bytes: taken only when
    /// hyper takes it and reads it the same way, left whole otherwise.
    #[test]
    fn any_changed_head_is_taken_as_hyper_takes_it_or_left_whole(
        pick in 0usize..TAKEN.len(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        noise in prop::collection::vec(any::<u8>(), 0..64),
        use_noise in any::<bool>(),
    ) {
        let raw: Vec<u8> = if use_noise {
            noise
        } else {
            let mut raw = TAKEN[pick].to_vec();
            let i = at.index(raw.len());
            raw[i] = byte;
            raw
        };
        let mut buf = BytesMut::from(&raw[..]);
        match parse(&mut buf, MAX) {
            Parsed::Request { req, .. } => {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                let hyper = rt.block_on(hyper_sees(&raw));
                prop_assert_eq!(Some(seen(&req)), hyper);
            }
            Parsed::HandOver | Parsed::Partial => prop_assert_eq!(&buf[..], &raw[..]),
        }
    }
}

// === answers ===

/// A body of `frames` whose length is unknown in advance.
fn streamed(
    frames: &[&'static [u8]],
) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Unpin> {
    let frames: Vec<_> = frames
        .iter()
        .map(|f| Ok(Frame::data(Bytes::from_static(f))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames))
}

/// The answers compared, by name.
fn answer(case: &str) -> Response<http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>> {
    use http_body_util::BodyExt as _;
    let full = |s: &'static str| Full::new(Bytes::from_static(s.as_bytes())).boxed_unsync();
    let mut res = match case {
        "text" | "head-text" => Response::new(full("hello")),
        "empty" => Response::new(full("")),
        "no-content" => Response::builder().status(204).body(full("")).unwrap(),
        "not-modified" => Response::builder()
            .status(304)
            .header("content-length", "42")
            .header("etag", "\"x\"")
            .body(full(""))
            .unwrap(),
        "head-length" => Response::builder()
            .header("content-length", "42")
            .body(full(""))
            .unwrap(),
        "not-found" => Response::builder()
            .status(404)
            .header("content-type", "text/html; charset=utf-8")
            .header("cache-control", "no-store")
            .body(full("<p>missing</p>"))
            .unwrap(),
        "odd-status" => Response::builder().status(599).body(full("x")).unwrap(),
        "asks-close" => Response::builder()
            .header("connection", "close")
            .body(full("bye"))
            .unwrap(),
        "dated" => Response::builder()
            .header("date", "Tue, 01 Dec 2026 00:00:00 GMT")
            .body(full("x"))
            .unwrap(),
        "cookies" => Response::builder()
            .status(302)
            .header("location", "/x")
            .header("set-cookie", "a=1; HttpOnly")
            .header("x-one", "1")
            .header("set-cookie", "b=2; Secure")
            .body(full(""))
            .unwrap(),
        "chunked" => Response::new(streamed(&[b"abc", b"", b"defgh", b"i"]).boxed_unsync()),
        "upstream-length" => Response::builder()
            .header("content-length", "9")
            .body(streamed(&[b"abc", b"defgh", b"i"]).boxed_unsync())
            .unwrap(),
        "head-chunked" => Response::new(streamed(&[b"abc"]).boxed_unsync()),
        other => panic!("{other}"),
    };
    res.headers_mut()
        .append("x-last", HeaderValue::from_static("end"));
    res
}

const ANSWERS: &[&str] = &[
    "text",
    "head-text",
    "empty",
    "no-content",
    "not-modified",
    "head-length",
    "not-found",
    "odd-status",
    "asks-close",
    "dated",
    "cookies",
    "chunked",
    "upstream-length",
    "head-chunked",
];

/// `raw` with the value of its `date` field blanked.
fn undated(raw: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw).into_owned();
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        if line.starts_with("date: ") && !line.contains("2026 00:00:00") {
            out.push_str("date: *\r\n");
        } else {
            out.push_str(line);
        }
    }
    out.into_bytes()
}

/// What hyper's server writes for the answer `case` to a `method` request.
async fn hyper_writes(case: &'static str, method: &str, close: bool) -> Vec<u8> {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let svc = hyper::service::service_fn(move |_req: Request<Incoming>| async move {
        Ok::<_, Infallible>(answer(case))
    });
    let conn = tokio::spawn(
        hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(server), svc),
    );
    let connection = if close { "Connection: close\r\n" } else { "" };
    client
        .write_all(format!("{method} / HTTP/1.1\r\nHost: a.test\r\n{connection}\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    // A keep-alive answer ends where the next would start: read until the
    // bytes stop coming.
    loop {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(200), client.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
        }
    }
    conn.abort();
    out
}

/// What this path writes for the same answer; with whether the
/// connection may carry another request.
async fn we_write(case: &'static str, method: &str, close: bool) -> (Vec<u8>, bool) {
    let (mut client, mut server) = tokio::io::duplex(1 << 20);
    let mut out = Vec::new();
    let keep = write_answer(&mut server, &mut out, answer(case), method == "HEAD", close)
        .await
        .unwrap();
    drop(server);
    let mut raw = Vec::new();
    client.read_to_end(&mut raw).await.unwrap();
    (raw, keep)
}

#[tokio::test]
async fn answers_leave_as_hyper_writes_them() {
    for &case in ANSWERS {
        let method = if case.starts_with("head-") {
            "HEAD"
        } else {
            "GET"
        };
        for close in [false, true] {
            let hyper = hyper_writes(case, method, close).await;
            let (ours, keep) = we_write(case, method, close).await;
            assert_eq!(
                String::from_utf8_lossy(&undated(&ours)),
                String::from_utf8_lossy(&undated(&hyper)),
                "{case} ({method}, close {close})"
            );
            assert_eq!(keep, case != "asks-close", "{case}");
        }
    }
}

#[tokio::test]
async fn answers_carry_the_date() {
    let (raw, _) = we_write("text", "GET", false).await;
    let text = String::from_utf8(raw).unwrap();
    let date = text
        .lines()
        .find_map(|l| l.strip_prefix("date: "))
        .expect("a date field");
    let when = httpdate::parse_http_date(date).unwrap();
    let age = std::time::SystemTime::now()
        .duration_since(when)
        .unwrap_or_default();
    assert!(age < Duration::from_secs(5), "{date}");
}

#[tokio::test]
async fn long_chunks_get_hex_sizes_and_bodies_that_break_their_length_fail() {
    let big: &'static [u8] = Box::leak(vec![b'x'; 20_000].into_boxed_slice());
    let (mut client, mut server) = tokio::io::duplex(1 << 20);
    let mut out = Vec::new();
    let res = Response::new(streamed(&[b"0123456789abcdef", big]));
    assert!(write_answer(&mut server, &mut out, res, false, false)
        .await
        .unwrap());
    drop(server);
    let mut raw = Vec::new();
    client.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    assert!(
        text.contains("\r\n\r\n10\r\n0123456789abcdef\r\n4e20\r\nxxx"),
        "{}",
        &text[..200]
    );
    assert!(text.ends_with("x\r\n0\r\n\r\n"));

    // A body longer or shorter than the length its answer gave: an error,
    // so the connection closes rather than carry a mis-framed answer.
    for frames in [&[&b"abcdef"[..]][..], &[b"ab"]] {
        let (_client, mut server) = tokio::io::duplex(1 << 20);
        let res = Response::builder()
            .header("content-length", "4")
            .body(streamed(frames))
            .unwrap();
        let r = write_answer(&mut server, &mut Vec::new(), res, false, false).await;
        assert!(r.is_err(), "{frames:?}");
    }
}

#[tokio::test]
async fn an_interim_status_from_an_endpoint_becomes_a_500_and_closes() {
    let (mut client, mut server) = tokio::io::duplex(1 << 20);
    let res = Response::builder()
        .status(103)
        .header("link", "</a>")
        .body(Full::new(Bytes::from_static(b"x")))
        .unwrap();
    let keep = write_answer(&mut server, &mut Vec::new(), res, false, false)
        .await
        .unwrap();
    drop(server);
    let mut raw = Vec::new();
    client.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{text}"
    );
    assert!(text.contains("connection: close\r\n") && !text.contains("link"));
    assert!(!keep);
}

#[tokio::test]
async fn a_client_that_does_not_read_holds_no_more_than_a_few_frames() {
    // A fast body of many 16 KiB frames, all ready at once, towards a client
    // that reads nothing: the bytes waiting in the writer stay bounded.
    static FRAME: [u8; 16 * 1024] = [b'x'; 16 * 1024];
    let frames: Vec<&'static [u8]> = vec![&FRAME[..]; 400];
    let (_client, mut server) = tokio::io::duplex(64 * 1024);
    let mut out = Vec::new();
    let res = Response::new(streamed(&frames));
    let r = tokio::time::timeout(
        Duration::from_millis(300),
        write_answer(&mut server, &mut out, res, false, false),
    )
    .await;
    assert!(
        r.is_err(),
        "the writer finished towards a client that reads nothing"
    );
    assert!(
        out.len() <= 2 * COPY_BODY + 64,
        "{} bytes held for the client",
        out.len()
    );
}

//! The writer against hyper's client: the same requests, sent both ways to
//! a hyper server, must arrive the same.

use super::*;

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// What the server received: method, target, fields in order, body.
type Received = (String, String, Vec<(String, Vec<u8>)>, Vec<u8>);

/// A hyper server on loopback that reports every request it reads.
async fn server() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Received>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes().to_vec());
                        let headers = parts
                            .headers
                            .iter()
                            .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
                            .collect();
                        let _ = tx.send((
                            parts.method.to_string(),
                            parts.uri.to_string(),
                            headers,
                            body.unwrap_or_else(|_| b"<body error>".to_vec()),
                        ));
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

/// One request of the comparison.
struct Case {
    name: &'static str,
    method: Method,
    target: &'static str,
    headers: Vec<(&'static str, &'static [u8])>,
    /// The body's pieces; `None` for no body.
    body: Option<Vec<&'static [u8]>>,
    /// Sent as a stream of unknown length (chunked) rather than with its length.
    streamed: bool,
}

fn cases() -> Vec<Case> {
    let case = |name, method, target, headers, body, streamed| Case {
        name,
        method,
        target,
        headers,
        body,
        streamed,
    };
    vec![
        case(
            "get",
            Method::GET,
            "/a/b?c=d&e",
            vec![("host", b"up".as_slice()), ("x-auth-user", b"alice")],
            None,
            false,
        ),
        case(
            "repeated fields keep their order",
            Method::GET,
            "/",
            vec![
                ("host", b"up".as_slice()),
                ("accept", b"a/1"),
                ("x-b", b"2"),
                ("accept", b"b/2"),
            ],
            None,
            false,
        ),
        case(
            "obs-text and spaces in a value",
            Method::GET,
            "/",
            vec![("host", b"up".as_slice()), ("x-name", b"Ren\xc3\xa9e  D")],
            None,
            false,
        ),
        case(
            "head",
            Method::HEAD,
            "/x",
            vec![("host", b"up".as_slice())],
            None,
            false,
        ),
        case(
            "options asterisk",
            Method::OPTIONS,
            "*",
            vec![("host", b"up".as_slice())],
            None,
            false,
        ),
        case(
            "delete without a body",
            Method::DELETE,
            "/item/1",
            vec![("host", b"up".as_slice())],
            None,
            false,
        ),
        case(
            "post without a body",
            Method::POST,
            "/form",
            vec![("host", b"up".as_slice())],
            None,
            false,
        ),
        case(
            "put without a body",
            Method::PUT,
            "/file",
            vec![("host", b"up".as_slice())],
            None,
            false,
        ),
        case(
            "post with a length",
            Method::POST,
            "/form",
            vec![("host", b"up".as_slice()), ("content-type", b"text/plain")],
            Some(vec![b"hello ".as_slice(), b"world"]),
            false,
        ),
        case(
            "put streamed",
            Method::PUT,
            "/file",
            vec![("host", b"up".as_slice())],
            Some(vec![b"one ".as_slice(), b"two ", b"three"]),
            true,
        ),
        case(
            "patch streamed, empty pieces",
            Method::PATCH,
            "/p",
            vec![("host", b"up".as_slice())],
            Some(vec![b"".as_slice(), b"x", b"", b"yz"]),
            true,
        ),
        case(
            "extension method",
            Method::from_bytes(b"PROPFIND").unwrap(),
            "/dav/",
            vec![("host", b"up".as_slice()), ("depth", b"1")],
            Some(vec![b"<propfind/>".as_slice()]),
            false,
        ),
    ]
}

fn header_map(fields: &[(&'static str, &'static [u8])]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in fields {
        h.append(
            header::HeaderName::from_static(k),
            HeaderValue::from_bytes(v).unwrap(),
        );
    }
    h
}

type Chunks =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// Sends `c` with hyper's client.
async fn by_hyper(addr: std::net::SocketAddr, c: &Case) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Either<Full<Bytes>, Chunks>,
    >(hyper_util::rt::TokioIo::new(tcp))
    .await
    .unwrap();
    tokio::spawn(conn);
    let body = match (&c.body, c.streamed) {
        (Some(pieces), true) => {
            let frames: Vec<_> = pieces
                .iter()
                .map(|p| Ok(Frame::data(Bytes::from_static(p))))
                .collect();
            http_body_util::Either::Right(StreamBody::new(futures_util::stream::iter(frames)))
        }
        (Some(pieces), false) => {
            http_body_util::Either::Left(Full::new(Bytes::from(pieces.concat())))
        }
        (None, _) => http_body_util::Either::Left(Full::new(Bytes::new())),
    };
    let mut req = Request::builder()
        .method(c.method.clone())
        .uri(c.target)
        .body(body)
        .unwrap();
    *req.headers_mut() = header_map(&c.headers);
    send.send_request(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
}

/// Sends `c` with the writer, over a raw connection.
async fn by_writer(addr: std::net::SocketAddr, c: &Case, client_length: Option<&'static [u8]>) {
    let mut headers = header_map(&c.headers);
    if let Some(v) = client_length {
        // A client's framing fields, which must not reach the upstream.
        headers.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from_static(std::str::from_utf8(v).unwrap()),
        );
        headers.append(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
    }
    let mut out = Vec::new();
    match (&c.body, c.streamed) {
        (Some(pieces), true) => {
            write_head(
                &mut out,
                &c.method,
                c.target,
                &headers,
                BodyFraming::Chunked,
            );
            for p in pieces {
                write_chunk(&mut out, p);
            }
            write_last_chunk(&mut out);
        }
        (Some(pieces), false) => {
            let body = pieces.concat();
            write_head(
                &mut out,
                &c.method,
                c.target,
                &headers,
                BodyFraming::Length(body.len() as u64),
            );
            out.extend_from_slice(&body);
        }
        (None, _) => write_head(&mut out, &c.method, c.target, &headers, BodyFraming::Empty),
    }
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&out).await.unwrap();
    // The answer's head is enough: the server has read the whole request.
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "{}: the server closed without answering", c.name);
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}: {}",
        c.name,
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn requests_arrive_as_hyper_clients_send_them() {
    let (addr, mut rx) = server().await;
    let mut differ = Vec::new();
    for c in cases() {
        by_hyper(addr, &c).await;
        let theirs = rx.recv().await.unwrap();
        by_writer(addr, &c, None).await;
        let mine = rx.recv().await.unwrap();
        if mine != theirs {
            differ.push(format!(
                "{}:\n  hyper:  {theirs:?}\n  writer: {mine:?}",
                c.name
            ));
        }
        // A client's own framing fields, whatever they say, change nothing.
        by_writer(addr, &c, Some(b"99")).await;
        let lied = rx.recv().await.unwrap();
        if lied != theirs {
            differ.push(format!(
                "{} with the client's framing fields:\n  hyper:  {theirs:?}\n  writer: {lied:?}",
                c.name
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

#[test]
fn framing_fields_come_from_the_body_only() {
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("up"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
    h.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    let head = |method: Method, body| {
        let mut out = Vec::new();
        write_head(&mut out, &method, "/x", &h, body);
        String::from_utf8(out).unwrap()
    };
    for (method, body, want) in [
        (
            Method::POST,
            BodyFraming::Length(3),
            "POST /x HTTP/1.1\r\nhost: up\r\ncontent-length: 3\r\n\r\n",
        ),
        (
            Method::GET,
            BodyFraming::Empty,
            "GET /x HTTP/1.1\r\nhost: up\r\n\r\n",
        ),
        (
            Method::POST,
            BodyFraming::Length(0),
            "POST /x HTTP/1.1\r\nhost: up\r\ncontent-length: 0\r\n\r\n",
        ),
    ] {
        assert_eq!(head(method, body), want);
    }
    let mut out = Vec::new();
    write_head(&mut out, &Method::PUT, "/x", &h, BodyFraming::Chunked);
    write_chunk(&mut out, b"");
    write_chunk(&mut out, &[b'a'; 26]);
    write_last_chunk(&mut out);
    assert_eq!(
        out,
        b"PUT /x HTTP/1.1\r\nhost: up\r\ntransfer-encoding: chunked\r\n\r\n1a\r\naaaaaaaaaaaaaaaaaaaaaaaaaa\r\n0\r\n\r\n"
    );
}

/// Several `Cookie` fields (as an HTTP/2 client sends them) go up as one
/// line, joined by `; ` (RFC 9113 §8.2.3), where hyper's client would write
/// one line each; a single one is written as it is.
#[test]
fn cookies_go_up_on_one_line() {
    let mut h = HeaderMap::new();
    h.append("cookie", HeaderValue::from_static("a=1"));
    h.append("x-a", HeaderValue::from_static("1"));
    h.append("cookie", HeaderValue::from_static("b=2"));
    h.append("cookie", HeaderValue::from_static("c=3"));
    let mut out = Vec::new();
    write_head(&mut out, &Method::GET, "/", &h, BodyFraming::Empty);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches("cookie").count(), 1, "{text}");
    assert!(text.contains("\r\ncookie: a=1; b=2; c=3\r\n"), "{text}");
    assert!(text.contains("\r\nx-a: 1\r\n"), "{text}");

    let mut h = HeaderMap::new();
    h.append("cookie", HeaderValue::from_static("only=1"));
    h.append("content-length", HeaderValue::from_static("3"));
    let mut out = Vec::new();
    write_head(&mut out, &Method::GET, "/", &h, BodyFraming::Empty);
    assert_eq!(out, b"GET / HTTP/1.1\r\ncookie: only=1\r\n\r\n");
}

//! The client through a pool, as the proxy drives it: a hyper server in
//! front (so request bodies are hyper's, as in the proxy) and an upstream
//! on raw sockets that follows a script, to produce what a well-behaved
//! upstream never sends: answers before the upload ends, connections
//! closed just as they are reused, unasked protocol switches, bytes after
//! an answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::super::body::IdleBody;
use super::super::h1_request;
use super::super::pool::{Pool, Use};

/// What the upstream does with the `n`th request it reads (from 0, over all
/// connections), given that request's bytes.
#[derive(Clone, Copy)]
enum Act {
    /// Writes the answer and waits for the next request on the connection.
    Answer(&'static str),
    /// Writes the answer and closes the connection.
    AnswerAndClose(&'static str),
    /// Writes the answer after the head only, then takes whatever comes
    /// as the rest of that body, answering nothing more.
    AnswerEarly(&'static str),
    /// Closes the connection without a word.
    Close,
}

struct Upstream {
    addr: SocketAddr,
    /// Connections accepted.
    accepted: Arc<AtomicUsize>,
    /// Every request read, as received.
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

async fn upstream(script: fn(usize) -> Act) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (acc, s) = (accepted.clone(), seen.clone());
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            acc.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(conn, script, s.clone()));
        }
    });
    Upstream {
        addr,
        accepted,
        seen,
    }
}

async fn serve(mut conn: TcpStream, script: fn(usize) -> Act, seen: Arc<Mutex<Vec<Vec<u8>>>>) {
    let mut buf = Vec::new();
    loop {
        let Some(head_len) = read_until_head(&mut conn, &mut buf).await else {
            return;
        };
        let n = seen.lock().unwrap().len();
        let act = script(n);
        if let Act::AnswerEarly(answer) = act {
            seen.lock().unwrap().push(buf[..head_len].to_vec());
            let _ = conn.write_all(answer.as_bytes()).await;
            let mut sink = [0u8; 65536];
            while matches!(conn.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        }
        let Some(total) = read_body(&mut conn, &mut buf, head_len).await else {
            return;
        };
        seen.lock().unwrap().push(buf.drain(..total).collect());
        match act {
            Act::Answer(answer) => {
                if conn.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
            Act::AnswerAndClose(answer) => {
                let _ = conn.write_all(answer.as_bytes()).await;
                return;
            }
            Act::Close | Act::AnswerEarly(_) => return,
        }
    }
}

/// Reads until `buf` holds a whole request head; its length.
async fn read_until_head(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut chunk = [0u8; 4096];
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads the body after a head of `head_len` bytes (by its length or to
/// the last chunk); the request's whole length.
async fn read_body(conn: &mut TcpStream, buf: &mut Vec<u8>, head_len: usize) -> Option<usize> {
    let head = String::from_utf8_lossy(&buf[..head_len]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|v| v.trim().parse::<usize>().unwrap());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let have = buf.len() - head_len;
        let done = match length {
            Some(n) if have >= n => return Some(head_len + n),
            _ if chunked => buf[head_len..]
                .windows(5)
                .position(|w| w == b"0\r\n\r\n")
                .map(|i| head_len + i + 5),
            None => return Some(head_len),
            Some(_) => None,
        };
        if let Some(total) = done {
            return Some(total);
        }
        let mut chunk = [0u8; 65536];
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A hyper server in front of `pool`: the status and body of each answer,
/// or 502 and the error's text.
async fn front(pool: Arc<Pool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let pool = pool.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let pool = pool.clone();
                async move { Ok::<_, Infallible>(forward(&pool, req).await) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(conn), svc),
            );
        }
    });
    addr
}

async fn forward(pool: &Arc<Pool>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let idle = Duration::from_secs(5);
    let req = req.map(|b| IdleBody::new(b.into(), idle, "request", "test".into()));
    let answer = match pool.request(req, &[], Use::Exchange).await {
        Ok(res) => {
            let (parts, body) = res.into_parts();
            match body.collect().await {
                Ok(b) => Ok(Response::from_parts(parts, Full::new(b.to_bytes()))),
                Err(e) => Err(format!("body: {}", crate::base::error::error_chain(&e))),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    answer.unwrap_or_else(|e| {
        let mut res = Response::new(Full::new(Bytes::from(e)));
        *res.status_mut() = StatusCode::BAD_GATEWAY;
        res
    })
}

async fn setup(script: fn(usize) -> Act) -> (Upstream, SocketAddr) {
    let up = upstream(script).await;
    let url = format!("http://{}/", up.addr).parse().unwrap();
    let pool = Pool::new(&url, None, Duration::from_secs(5)).unwrap();
    let front = front(Arc::new(pool)).await;
    (up, front)
}

/// Sends raw request bytes on a new connection to the front; the answer's
/// status and body.
async fn send(front: SocketAddr, method: &str, path: &str, body: Option<&[u8]>) -> (u16, String) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), format!("http://{front}{path}"));
    if let Some(b) = body {
        req = req.body(b.to_vec());
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test]
async fn sequential_exchanges_share_one_connection_whatever_the_framing() {
    fn script(n: usize) -> Act {
        match n % 3 {
            0 => Act::Answer(OK),
            1 => Act::Answer(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nch\r\n3\r\nunk\r\n0\r\nx-trailer: 1\r\n\r\n",
            ),
            _ => Act::Answer("HTTP/1.1 204 No Content\r\n\r\n"),
        }
    }
    let (up, front) = setup(script).await;
    for _ in 0..3 {
        assert_eq!(send(front, "GET", "/", None).await, (200, "ok".into()));
        assert_eq!(
            send(front, "POST", "/", Some(b"abc")).await,
            (200, "chunk".into())
        );
        assert_eq!(send(front, "GET", "/", None).await, (204, "".into()));
    }
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "one upstream connection"
    );
    let seen = up.seen.lock().unwrap();
    let post = String::from_utf8_lossy(&seen[1]);
    assert!(post.starts_with("POST / HTTP/1.1\r\n"), "{post}");
    assert!(post.contains("content-length: 3\r\n"), "{post}");
    assert!(post.ends_with("\r\n\r\nabc"), "{post}");
}

#[tokio::test]
async fn a_body_read_to_the_close_or_after_conflicting_framing_is_not_reused() {
    fn script(n: usize) -> Act {
        match n {
            0 => Act::Answer("HTTP/1.1 200 OK\r\n\r\nuntil close"),
            1 => Act::Answer(
                "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
            ),
            _ => Act::Answer(OK),
        }
    }
    let (up, front) = setup(script).await;
    // The upstream never closes: the body only ends when it does. The
    // front's client gives up first; the connection must not be reused.
    let slow =
        tokio::time::timeout(Duration::from_millis(500), send(front, "GET", "/", None)).await;
    assert!(
        slow.is_err(),
        "a body read to the close ended early: {slow:?}"
    );
    assert_eq!(send(front, "GET", "/", None).await, (200, "x".into()));
    assert_eq!(send(front, "GET", "/", None).await, (200, "ok".into()));
    assert_eq!(up.accepted.load(Ordering::SeqCst), 3, "none of them reused");
}

#[tokio::test]
async fn an_answer_before_the_upload_ends_is_relayed_and_its_connection_dropped() {
    fn script(n: usize) -> Act {
        match n {
            0 => Act::AnswerEarly("HTTP/1.1 413 Payload Too Large\r\ncontent-length: 3\r\n\r\nbig"),
            _ => Act::Answer(OK),
        }
    }
    let (up, front) = setup(script).await;
    let big = vec![b'x'; 8 * 1024 * 1024];
    assert_eq!(
        send(front, "POST", "/", Some(&big)).await,
        (413, "big".into())
    );
    // On that connection, the next request would be taken for the rest of
    // the upload, and never answered.
    let next = tokio::time::timeout(Duration::from_secs(5), send(front, "GET", "/", None)).await;
    assert_eq!(next.expect("answered"), (200, "ok".into()));
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_safe_request_on_a_connection_closed_as_it_was_reused_goes_again_once() {
    // Every second request on a connection is met with a close: the first
    // request's connection is reused for the second, which finds it closing.
    fn script(n: usize) -> Act {
        if n % 2 == 1 {
            Act::Close
        } else {
            Act::Answer(OK)
        }
    }
    let (up, front) = setup(script).await;
    assert_eq!(send(front, "GET", "/", None).await, (200, "ok".into()));
    assert_eq!(send(front, "GET", "/a", None).await, (200, "ok".into()));
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        2,
        "retried on a new one"
    );
    let seen: Vec<String> = up
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| {
            String::from_utf8_lossy(r)
                .lines()
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        seen,
        ["GET / HTTP/1.1", "GET /a HTTP/1.1", "GET /a HTTP/1.1"]
    );
}

#[tokio::test]
async fn a_request_with_a_body_is_never_sent_twice() {
    fn script(n: usize) -> Act {
        if n % 2 == 1 {
            Act::Close
        } else {
            Act::Answer(OK)
        }
    }
    let (up, front) = setup(script).await;
    assert_eq!(send(front, "GET", "/", None).await, (200, "ok".into()));
    let (status, text) = send(front, "POST", "/pay", Some(b"once")).await;
    assert_eq!(status, 502, "{text}");
    assert!(
        text.contains("closed the connection before answering"),
        "{text}"
    );
    assert_eq!(up.seen.lock().unwrap().len(), 2, "the POST went up once");
}

#[tokio::test]
async fn broken_answers_are_errors_never_relayed() {
    fn script(n: usize) -> Act {
        match n {
            0 => Act::Answer("HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n"),
            1 => Act::Answer("HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab"),
            2 => Act::AnswerAndClose("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"),
            3 => Act::Answer("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"),
            4 => Act::Answer("HTTP/1.1 200 OK\r\nbad header\r\n\r\n"),
            _ => Act::Answer(
                "HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            ),
        }
    }
    let (_up, front) = setup(script).await;
    let (s, t) = send(front, "GET", "/", None).await;
    assert_eq!(
        (s, t.as_str()),
        (502, "the upstream switched protocols unasked")
    );
    let (s, t) = send(front, "GET", "/", None).await;
    assert_eq!(s, 502);
    assert!(t.contains("Content-Length"), "{t}");
    // The head was fine: the status went out, the body then failed.
    let (s, t) = send(front, "GET", "/", None).await;
    assert_eq!(s, 502);
    assert!(
        t.starts_with("body:") && t.contains("closed the connection before the end"),
        "{t}"
    );
    let (s, t) = send(front, "GET", "/", None).await;
    assert_eq!(s, 502);
    assert!(t.contains("chunked body is malformed"), "{t}");
    let (s, t) = send(front, "GET", "/", None).await;
    assert_eq!(s, 502);
    assert!(t.contains("malformed"), "{t}");
    // An interim answer is skipped.
    assert_eq!(send(front, "GET", "/", None).await, (200, "ok".into()));
}

#[tokio::test]
async fn a_body_of_unknown_length_goes_up_chunked_and_whole() {
    fn script(_: usize) -> Act {
        Act::Answer(OK)
    }
    let (up, front) = setup(script).await;
    let mut s = TcpStream::connect(front).await.unwrap();
    s.write_all(
        b"POST /up HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"ok") {
        let mut b = [0u8; 1024];
        let n = s.read(&mut b).await.unwrap();
        assert_ne!(n, 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&b[..n]);
    }
    let seen = up.seen.lock().unwrap();
    let req = String::from_utf8_lossy(&seen[0]).to_ascii_lowercase();
    assert!(req.contains("transfer-encoding: chunked\r\n"), "{req}");
    assert!(!req.contains("content-length"), "{req}");
    let body = &req[req.find("\r\n\r\n").unwrap() + 4..];
    let decoded: String = body
        .split("\r\n")
        .collect::<Vec<_>>()
        .chunks(2)
        .filter_map(|c| c.get(1).copied())
        .collect();
    assert_eq!(decoded, "abcde", "{body:?}");
    assert!(body.ends_with("0\r\n\r\n"), "{body:?}");
}

#[tokio::test]
async fn an_answer_to_head_has_no_body_whatever_its_length_says() {
    fn script(n: usize) -> Act {
        match n {
            0 => Act::Answer("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
            _ => Act::Answer(OK),
        }
    }
    let (up, front) = setup(script).await;
    let client = reqwest::Client::new();
    let res = client
        .head(format!("http://{front}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], "5");
    // Had the reader waited for five bytes, the next answer would be them.
    let next = tokio::time::timeout(Duration::from_secs(5), send(front, "GET", "/", None)).await;
    assert_eq!(next.expect("answered"), (200, "ok".into()));
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        1,
        "reused after the HEAD"
    );
}

/// The end of a chunked body can still wait in the framing buffer after
/// the body itself has ended: until it is written, the request is not
/// done, and an answer that comes meanwhile leaves the connection unfit
/// for another request (which would be written into this one's body).
#[test]
fn a_request_is_done_only_when_its_last_bytes_are_written() {
    let up = |out_at: usize, data: &'static [u8], unflushed: bool, body_done: bool| super::Upload {
        framing: h1_request::BodyFraming::Chunked,
        left: 0,
        out_at,
        data: Bytes::from_static(data),
        wrote: true,
        unflushed,
        in_chunk: true,
        body_done,
        replayable: false,
        answered: false,
        connect: false,
    };
    let last = b"\r\n0\r\n\r\n".len();
    assert!(up(last, b"", false, true).done(last));
    assert!(
        !up(0, b"", false, true).done(last),
        "the last chunk unwritten"
    );
    assert!(
        !up(3, b"", false, true).done(last),
        "the last chunk half written"
    );
    assert!(!up(last, b"x", false, true).done(last), "data unwritten");
    assert!(!up(last, b"", true, true).done(last), "not flushed");
    assert!(!up(last, b"", false, false).done(last), "the body goes on");
}

//! A measurement, not a client to ship: hyper's HTTP/1.1 server in front of a
//! minimal hand-written HTTP/1.1 client behind it, the response head parsed
//! with `httparse` (the parser hyper itself uses). Like `bare_proxy.rs`, no
//! routing, authentication, hygiene, timers or metrics, and one keep-alive
//! upstream connection per client connection.
//!
//! It handles only what the reverse-proxy scenario sends and receives:
//! requests without a body, responses framed by `Content-Length` (or with
//! none); anything else is answered 502. Answers are read by portcullis's
//! own reader (`base::h1_response`, differential-tested against hyper's
//! client), so this floor is what that reader costs in a proxy. Against the bare hyper proxy it shows what a client
//! built on `httparse` could save over hyper's client (its dispatcher, its
//! connection state machine, its header-name allocations) before anyone pays
//! for one with the framing, the differential tests and the fuzzing a real
//! one needs.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portcullis::base::h1_response::{self, Framing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One keep-alive connection to the upstream and what was read past the last answer.
struct Upstream {
    tcp: TcpStream,
    buf: BytesMut,
    /// The request head being written (kept for its capacity).
    out: Vec<u8>,
}

type Slot = Arc<Mutex<Option<Upstream>>>;

/// Binds `addr`, prints `listening <addr>` on stdout, then proxies every
/// request to `upstream` until the process is stopped or `lifetime` has passed.
pub fn run(addr: SocketAddr, upstream: SocketAddr, lifetime: Duration) -> io::Result<()> {
    super::baseline::listen(addr, lifetime, move |stream| async move {
        let slot: Slot = Arc::default();
        let svc = service_fn(move |req| forward(slot.clone(), upstream, req));
        let _ = server::Builder::new()
            .serve_connection(TokioIo::new(stream), svc)
            .await;
    })
}

async fn forward(
    slot: Slot,
    upstream: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let taken = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    let up = match taken {
        Some(up) => Ok(up),
        None => connect(upstream).await,
    };
    let answer = match up {
        Ok(mut up) => match exchange(&mut up, &req).await {
            Ok(res) => {
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(up);
                Ok(res)
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    Ok(answer.unwrap_or_else(|_| {
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::BAD_GATEWAY;
        res
    }))
}

async fn connect(upstream: SocketAddr) -> io::Result<Upstream> {
    let tcp = TcpStream::connect(upstream).await?;
    tcp.set_nodelay(true)?;
    Ok(Upstream {
        tcp,
        buf: BytesMut::with_capacity(4096),
        out: Vec::with_capacity(1024),
    })
}

fn unsupported(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, what.to_owned())
}

/// Writes `req`'s head, reads the response head and its `Content-Length` body.
async fn exchange(up: &mut Upstream, req: &Request<Incoming>) -> io::Result<Response<Full<Bytes>>> {
    if !req.body().is_end_stream() {
        return Err(unsupported("request body"));
    }
    let out = &mut up.out;
    out.clear();
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    up.tcp.write_all(out).await?;

    let head_request = req.method() == Method::HEAD;
    let (mut res, body_len) = loop {
        if let Some(parsed) = parse_head(&mut up.buf, head_request)? {
            break parsed;
        }
        if up.tcp.read_buf(&mut up.buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    };
    while up.buf.len() < body_len {
        if up.tcp.read_buf(&mut up.buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    *res.body_mut() = Full::new(up.buf.split_to(body_len).freeze());
    Ok(res)
}

/// The response head at the start of `buf`, taken off it, and its body length.
fn parse_head(
    buf: &mut BytesMut,
    head_request: bool,
) -> io::Result<Option<(Response<Full<Bytes>>, usize)>> {
    let head = match h1_response::parse_head(buf, head_request) {
        Ok(Some(head)) => head,
        Ok(None) => return Ok(None),
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    };
    if head.is_interim() {
        return Err(unsupported("interim answers"));
    }
    let body_len = match head.framing {
        Framing::Empty => 0,
        Framing::Length(n) if head.reusable => {
            usize::try_from(n).map_err(|_| unsupported("content-length"))?
        }
        _ => return Err(unsupported("framing other than content-length")),
    };
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = head.status;
    *res.headers_mut() = head.headers;
    Ok(Some((res, body_len)))
}

//! A measurement, not a client to ship: hyper's HTTP/1.1 server in front of a
//! minimal HTTP/1.1 client loop behind it, built on portcullis's own
//! HTTP/1.1 pieces (`base::h1_request` writes the request head,
//! `base::h1_response` reads the answer with `httparse`, the parser hyper
//! itself uses; both differential-tested against hyper). Like
//! `bare_proxy.rs`, no routing, authentication, hygiene, timers or metrics,
//! and one keep-alive upstream connection per client connection.
//!
//! It handles only what the reverse-proxy scenario sends and receives:
//! requests without a body, responses framed by `Content-Length` (or with
//! none); anything else is answered 502. Against the bare hyper proxy it
//! shows what a client on these pieces saves over hyper's client (its
//! dispatcher and channel, its connection state machine, its request
//! encoding), which is what replacing hyper's client in the pool would
//! bring.

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
use portcullis::base::h1_request::{self, BodyFraming};
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
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    h1_request::write_head(out, req.method(), target, req.headers(), BodyFraming::Empty);
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

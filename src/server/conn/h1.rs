//! The server's own HTTP/1.1 path for the requests that make up nearly all
//! of a gateway's traffic: HTTP/1.1 requests without a body (forward-auth
//! checks, and the `GET`s a proxied application sees most). Everything
//! else goes to hyper's server, which keeps the connection from there on:
//! a request with a body (`Content-Length` or `Transfer-Encoding`), an
//! `Upgrade` or an `Expect`, `CONNECT`, HTTP/1.0, a request target that is
//! not a path, the HTTP/2 preface, and any head that does not parse or is
//! too large (hyper then answers it with its 400 or 431, as before). The
//! bytes read so far are handed over with the connection
//! ([`Outcome::HandOver`]), so hyper reads the request from its first byte.
//!
//! Taking only bodiless requests keeps the framing questions where a
//! hand-written server is most often wrong (request smuggling) out of this
//! path entirely: the next request always starts right after the head.
//!
//! Answers are written the way hyper's server writes them (lower-case
//! names, a `date` field, `content-length` from the body when known and
//! `transfer-encoding: chunked` otherwise, `connection: close` when the
//! connection will close); the tests compare the two.
//!
//! What it saves per request against hyper's server: the dispatcher's state
//! machine, the boxed service future, the response's move into the
//! dispatcher and the buffered writes' bookkeeping (see BENCHMARKS.md).

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt as _;
use http::header::HeaderMap;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt as _;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};

use crate::base::transport::h1_request::{write_chunk_size, write_last_chunk};
use crate::base::transport::h1_server::{encode_head, parse, EncodeError, Framing, Parsed};
use crate::server::router::{route, Routed};

use super::ConnCtl;

#[cfg(test)]
mod tests;

/// Bodies up to this size are copied after the head, so that head and
/// body leave in one write.
const COPY_BODY: usize = 16 * 1024;

/// How a connection left this path.
pub(super) enum Outcome {
    /// The connection is done (closed by either side, or failed).
    Closed,
    /// A request this path does not take: hyper's server carries on with
    /// the connection, reading these bytes first.
    HandOver(Bytes),
}

/// Serves the connection's requests while they are ones this path takes;
/// see [`Outcome`].
pub(super) async fn serve<S>(io: &mut S, ctl: &Arc<ConnCtl>, peer: SocketAddr, tls: bool) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let shared = &*ctl.shared;
    let max_head = shared.max_head;
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    let mut served = false;
    loop {
        let (req, close) = loop {
            if !buf.is_empty() {
                match parse(&mut buf, max_head) {
                    Parsed::Request { req, close } => break (req, close),
                    Parsed::HandOver if served && buf.starts_with(H2_PREFACE) => {
                        // hyper's server would take the preface for a
                        // switch to HTTP/2, which only a connection's
                        // first bytes may be.
                        return refuse(io, &mut out, peer).await;
                    }
                    Parsed::HandOver => return Outcome::HandOver(buf.freeze()),
                    Parsed::Partial => {}
                }
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(8 * 1024);
            }
            let read = poll_fn(|cx| {
                // Shutting down or idle for too long: with no request in
                // flight, the connection closes now, a head half read or not.
                if ctl.close.load(Ordering::Acquire) {
                    return Poll::Ready(Ok(0));
                }
                tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, &mut buf)
            })
            .await;
            match read {
                Ok(0) => return Outcome::Closed,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(client.addr = %peer, error = %e, "connection read failed");
                    return Outcome::Closed;
                }
            }
        };
        let in_flight = ctl.begin_request();
        let head_request = req.method() == Method::HEAD;
        served = true;
        let res = match route(shared, req, peer, tls) {
            Routed::Now(res) => res,
            Routed::Later(pending) => {
                match unless_gone(io, &mut buf, max_head, pending.serve(shared)).await {
                    Some(res) => res,
                    None => return gone(peer),
                }
            }
            Routed::Proxy(proxied) => {
                match unless_gone(io, &mut buf, max_head, proxied.serve(shared)).await {
                    Some(res) => res,
                    None => return gone(peer),
                }
            }
        };
        let close = close || ctl.close.load(Ordering::Acquire);
        let keep = match write_answer(io, &mut out, res, head_request, close).await {
            Ok(keep) => keep,
            Err(e) => {
                tracing::debug!(client.addr = %peer, error = %e, "answer not written");
                false
            }
        };
        drop(in_flight);
        if !keep || close {
            let _ = io.shutdown().await;
            return Outcome::Closed;
        }
        if out.capacity() > 64 * 1024 {
            out = Vec::with_capacity(1024);
        }
        if !buf.is_empty() {
            // The next head has started (pipelined, or sent while the
            // answer was made): its time counts from now.
            ctl.head_since
                .store(crate::base::clock::mono_ms().max(1), Ordering::Relaxed);
        }
    }
}

fn gone(peer: SocketAddr) -> Outcome {
    tracing::debug!(client.addr = %peer, "client closed the connection before its answer");
    Outcome::Closed
}

/// The start of the HTTP/2 preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Answers 400 and closes: the HTTP/2 preface after HTTP/1.1 requests.
#[cold]
async fn refuse<S: AsyncWrite + Unpin>(io: &mut S, out: &mut Vec<u8>, peer: SocketAddr) -> Outcome {
    tracing::debug!(client.addr = %peer, "closing connection: HTTP/2 preface after HTTP/1.1 requests");
    out.clear();
    let _ = encode_head(
        out,
        StatusCode::BAD_REQUEST,
        &HeaderMap::new(),
        Some(0),
        false,
        true,
    );
    let _ = io.write_all(out).await;
    let _ = io.shutdown().await;
    Outcome::Closed
}

/// Runs `fut` (a request being served) while watching the client, as
/// hyper's server does: `None` when the client closes the connection (or
/// it fails) first, which drops `fut` and so cancels the request upstream.
/// Bytes that arrive meanwhile (the next request) are kept in `buf`; past
/// `limit` of them the client is no longer read until the answer is out.
async fn unless_gone<S, F>(
    io: &mut S,
    buf: &mut BytesMut,
    limit: usize,
    fut: F,
) -> Option<F::Output>
where
    S: AsyncRead + Unpin,
    F: std::future::Future,
{
    let mut fut = std::pin::pin!(fut);
    let mut watching = true;
    poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        while watching {
            if buf.len() >= limit {
                watching = false;
                break;
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(8 * 1024);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(None),
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => break,
            }
        }
        Poll::Pending
    })
    .await
}

/// Why an answer was cut short.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("answer body failed: {0}")]
    Body(Box<dyn std::error::Error + Send + Sync>),
    #[error("answer body longer than its content-length")]
    TooLong,
    #[error("answer body shorter than its content-length")]
    TooShort,
    #[error("answer has an invalid content-length")]
    Length,
}

/// Writes `res` to the client; true when the connection may carry another request.
async fn write_answer<S, B>(
    io: &mut S,
    out: &mut Vec<u8>,
    res: Response<B>,
    head_request: bool,
    close: bool,
) -> Result<bool, WriteError>
where
    S: AsyncWrite + Unpin,
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, mut body) = res.into_parts();
    out.clear();
    if parts.status.is_informational() {
        // hyper's server answers a 1xx from the service as a 500 (no
        // endpoint gives one here: upgrades are hyper's).
        let status = StatusCode::INTERNAL_SERVER_ERROR;
        let _ = encode_head(out, status, &HeaderMap::new(), Some(0), head_request, true);
        io.write_all(out).await?;
        io.flush().await?;
        return Ok(false);
    }
    let body_len = if body.is_end_stream() {
        Some(0)
    } else {
        body.size_hint().exact()
    };
    let (framing, asks_close) = match encode_head(
        out,
        parts.status,
        &parts.headers,
        body_len,
        head_request,
        close,
    ) {
        Ok(v) => v,
        Err(EncodeError::Length) => {
            out.clear();
            let (status, headers) = (StatusCode::INTERNAL_SERVER_ERROR, HeaderMap::new());
            let _ = encode_head(out, status, &headers, Some(0), head_request, true);
            io.write_all(out).await?;
            io.flush().await?;
            return Err(WriteError::Length);
        }
    };
    drop(parts);
    let mut left = match framing {
        Framing::None => {
            drop(body);
            io.write_all(out).await?;
            io.flush().await?;
            return Ok(!asks_close);
        }
        Framing::Length(n) => n,
        Framing::Chunked => u64::MAX,
    };
    let chunked = framing == Framing::Chunked;
    loop {
        // A frame that is ready joins the bytes waiting to go; otherwise
        // those go first, and the frame is awaited.
        let frame = match body.frame().now_or_never() {
            Some(f) => f,
            None => {
                if !out.is_empty() {
                    io.write_all(out).await?;
                    io.flush().await?;
                    out.clear();
                }
                body.frame().await
            }
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => return Err(WriteError::Body(e.into())),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(d) => d,
                // Trailers are not passed on.
                Err(_) => continue,
            },
        };
        if data.is_empty() {
            continue;
        }
        if !chunked {
            if data.len() as u64 > left {
                return Err(WriteError::TooLong);
            }
            left -= data.len() as u64;
        } else {
            write_chunk_size(out, data.len());
        }
        if data.len() <= COPY_BODY {
            out.extend_from_slice(&data);
        } else {
            io.write_all(out).await?;
            out.clear();
            io.write_all(&data).await?;
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        // Frames that keep coming ready go out as they pile up: no more
        // than about two frames wait here, whatever the client reads.
        if out.len() >= COPY_BODY {
            io.write_all(out).await?;
            out.clear();
        }
    }
    if chunked {
        write_last_chunk(out);
    } else if left != 0 {
        io.write_all(out).await?;
        return Err(WriteError::TooShort);
    }
    io.write_all(out).await?;
    io.flush().await?;
    out.clear();
    Ok(!asks_close)
}

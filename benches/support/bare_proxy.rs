//! The floor of a hyper-based reverse proxy: hyper's HTTP/1.1 server in
//! front, hyper's HTTP/1.1 client behind, nothing between them. No routing,
//! no authentication, no header hygiene, no timers, no metrics: each client
//! connection gets one keep-alive upstream connection of its own, and every
//! request is passed on as it came (the `Host` header too) and its answer
//! streamed back as it came.
//!
//! The upstream connection is driven the way `portcullis serve` drives its
//! pooled ones (`src/base/transport/pool.rs`): polled by the request's own
//! task, first until the response head is back, then by the response body
//! as it is read, and handed back for the next request once the body has
//! ended. So the reverse-proxy scenario can tell what hyper in and hyper out
//! cost by themselves (this row against nginx `proxy_pass`) from what
//! portcullis adds on top (its row against this one).

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Empty};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One keep-alive connection to the upstream.
struct Upstream {
    tx: client::SendRequest<Incoming>,
    /// `None` once the connection has ended.
    conn: Option<client::Connection<TokioIo<TcpStream>, Incoming>>,
}

/// Where a client connection keeps its upstream connection between requests.
type Slot = Arc<Mutex<Option<Upstream>>>;

/// What goes back to the client: the upstream's body, or an empty 502.
type Answer = Response<Either<Streamed, Empty<Bytes>>>;

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
) -> Result<Answer, Infallible> {
    let taken = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    let up = match taken {
        Some(up) if up.conn.is_some() => Some(up),
        _ => connect(upstream).await,
    };
    let Some(mut up) = up else {
        return Ok(bad_gateway());
    };
    let res = {
        let mut answer = pin!(up.tx.send_request(req));
        poll_fn(|cx| {
            up.drive(cx);
            // Only the connection, just polled, completes the answer.
            answer
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
        })
        .await
    };
    let Ok(res) = res else {
        return Ok(bad_gateway());
    };
    let (parts, body) = res.into_parts();
    let mut body = Streamed {
        body,
        up: Some(up),
        slot,
    };
    if body.body.is_end_stream() {
        body.done();
    }
    Ok(Response::from_parts(parts, Either::Left(body)))
}

async fn connect(upstream: SocketAddr) -> Option<Upstream> {
    let tcp = TcpStream::connect(upstream).await.ok()?;
    let _ = tcp.set_nodelay(true);
    let (tx, conn) = client::handshake(TokioIo::new(tcp)).await.ok()?;
    Some(Upstream {
        tx,
        conn: Some(conn),
    })
}

fn bad_gateway() -> Answer {
    let mut res = Response::new(Either::Right(Empty::new()));
    *res.status_mut() = StatusCode::BAD_GATEWAY;
    res
}

impl Upstream {
    /// Polls the connection: request bytes go out, response bytes come in.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(conn) = self.conn.as_mut() {
            if Pin::new(conn).poll(cx).is_ready() {
                self.conn = None;
            }
        }
    }
}

/// The upstream's response body: drives the connection while it is read and
/// hands the connection back to its client connection at its end.
pub struct Streamed {
    body: Incoming,
    /// `None` once handed back.
    up: Option<Upstream>,
    slot: Slot,
}

impl Streamed {
    fn done(&mut self) {
        if let Some(mut up) = self.up.take() {
            up.drive(&mut Context::from_waker(Waker::noop()));
            if up.conn.is_some() && up.tx.is_ready() {
                *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(up);
            }
        }
    }
}

impl Body for Streamed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = match this.up.as_mut() {
            Some(up) => {
                up.drive(cx);
                Pin::new(&mut this.body).poll_frame(&mut Context::from_waker(Waker::noop()))
            }
            None => Pin::new(&mut this.body).poll_frame(cx),
        };
        match &frame {
            Poll::Ready(None) => this.done(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.done(),
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

//! The plain hyper server the gateway is measured against: HTTP/1.1 only, no
//! timers, no routing, every request answered 200 with an empty body and three
//! small headers (what a forward-auth "allow" carries). It runs on the same
//! multi-threaded tokio runtime `portcullis serve` uses and sets `TCP_NODELAY`
//! like the gateway does, so the difference between the two is the gateway's
//! own work.
//!
//! With `stack = true` it serves through the same connection stack as the
//! gateway's `server.rs` instead — hyper-util's `auto` builder (HTTP/1.1 and
//! HTTP/2 sniffing), `serve_connection_with_upgrades`, a header-read timeout on
//! a tokio timer, an IO wrapper stamping a clock on every read and write, and a
//! `select!` over the connection, a shutdown watch and an idle tick — still with
//! the trivial handler. Comparing plain, stack and the gateway separates the
//! cost of the connection stack from the cost of the forward-auth check.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

async fn answer(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut res = Response::new(Full::new(Bytes::new()));
    let h = res.headers_mut();
    h.insert("x-auth-user", HeaderValue::from_static("alice"));
    h.insert(
        "x-auth-email",
        HeaderValue::from_static("alice@example.com"),
    );
    h.insert("x-auth-groups", HeaderValue::from_static("admins,staff"));
    Ok(res)
}

/// Binds `addr`, prints `listening <addr>` on stdout, then serves until the
/// process is stopped or `lifetime` has passed.
pub fn run(addr: SocketAddr, lifetime: Duration, stack: bool) -> io::Result<()> {
    listen(addr, lifetime, move |stream| async move {
        if stack {
            gateway_like(stream).await;
        } else {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        }
    })
}

/// The servers of the load harness: binds `addr` on the multi-threaded
/// tokio runtime `portcullis serve` uses, prints `listening <addr>` on
/// stdout, then gives every connection (with `TCP_NODELAY`, as the gateway
/// sets it) to `serve` in a task of its own, until the process is stopped
/// or `lifetime` has passed.
pub fn listen<S, F>(addr: SocketAddr, lifetime: Duration, serve: S) -> io::Result<()>
where
    S: Fn(TcpStream) -> F,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(addr).await?;
        println!("listening {}", listener.local_addr()?);
        let accept = async {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream));
            }
        };
        let _ = tokio::time::timeout(lifetime, accept).await;
        Ok(())
    })
}

/// One connection served the way the gateway's `server.rs` serves it.
async fn gateway_like(stream: TcpStream) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(16 * 1024)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let (_stop_tx, mut stop) = tokio::sync::watch::channel(false);
    let last = Arc::new(AtomicU64::new(now_ms()));
    let io = Stamped {
        inner: stream,
        last: last.clone(),
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service_fn(answer));
    tokio::pin!(conn);
    let idle = Duration::from_secs(90);
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = stop.changed(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tokio::time::sleep(idle / 4), if !closing => {
                if now_ms().saturating_sub(last.load(Ordering::Relaxed)) >= idle.as_millis() as u64 {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Records when the stream last moved bytes (the gateway's idle tracking).
struct Stamped {
    inner: TcpStream,
    last: Arc<AtomicU64>,
}

impl AsyncRead for Stamped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last.store(now_ms(), Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Stamped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.last.store(now_ms(), Ordering::Relaxed);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.last.store(now_ms(), Ordering::Relaxed);
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

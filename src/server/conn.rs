//! One client connection: the optional TLS handshake, the server's own
//! HTTP/1.1 path for requests without a body (`h1`), hyper's HTTP/1.1 and
//! HTTP/2 serving for everything else, and the watchdog that keeps the
//! header-read and idle timeouts and the shutdown drain without a timer on
//! the request path (see [`ConnCtl`]).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{self, Either};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, OwnedSemaphorePermit};

use crate::base::clock;
use crate::base::http_util::Body;
use crate::base::transport::body::ClientBody;

use super::router::{route, Routed};
use super::Shared;

mod h1;

pub(super) async fn connection(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
    client: Option<IpAddr>,
) {
    let ctl = Arc::new(ConnCtl::new(shared.clone(), permit, client));
    // However this task ends (a panic included), the watchdog ends with it
    // and lets go of the connection's slot.
    let _ended = Ended(ctl.clone());
    let _open = OpenConnection::new();
    match &shared.tls {
        None => {
            let io = Tracked::new(stream, ctl.clone());
            drive(io, peer, false, false, ctl, stop).await;
        }
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await;
            match handshake {
                Ok(Ok(tls)) => {
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let io = Tracked::new(tls, ctl.clone());
                    drive(io, peer, true, h2, ctl, stop).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(client.addr = %peer, error = %e, "tls handshake failed")
                }
                Err(_) => tracing::debug!(client.addr = %peer, "tls handshake timed out"),
            }
        }
    }
}

/// What a connection's task, its IO wrapper, its requests and its watchdog
/// share. Times are [`clock::mono_ms`] readings.
///
/// The header-read timeout covers the time from the first byte of a request
/// head (or from the connection's start, for the first request) to the
/// complete head: `head_since` is set by the IO wrapper when bytes arrive
/// while no request is in flight, and cleared when hyper hands a request to
/// the service. A request stays in flight until its response body has been
/// written (see [`InFlight`]), so body bytes never count as a head. HTTP/2
/// connections are exempt, as with hyper's own timer: HTTP/2 frames arrive
/// between requests by design.
struct ConnCtl {
    /// The listener's state. Requests reach it through this per-connection
    /// `Arc`, whose count stays on one core, rather than by cloning the
    /// listener-wide one that every worker thread would contend for.
    shared: Arc<Shared>,
    /// Set by the watchdog: finish in-flight requests, then close.
    close: AtomicBool,
    /// Set by the watchdog: drop the connection now (a head that is too slow).
    kill: AtomicBool,
    /// The connection task, woken when `close` or `kill` is set.
    waker: atomic_waker::AtomicWaker,
    /// Signalled when the connection task ends (see [`Ended`]), so the watchdog ends too.
    done: tokio::sync::Notify,
    /// The idle timeout's reference. HTTP/1.1: when bytes last moved either
    /// way. HTTP/2: when a request last started or ended; frames outside
    /// requests (PINGs, SETTINGS, WINDOW_UPDATE) do not count, so a client
    /// that only pings is idle.
    last: AtomicU64,
    /// When the request head now arriving started; 0 when none is.
    head_since: AtomicU64,
    /// Requests handed to the service whose response is not fully written.
    in_flight: AtomicU32,
    /// The client spoke the HTTP/2 preface.
    h2: AtomicBool,
    /// The connection's place under `max_connections` and in the shutdown
    /// drain. The IO wrapper holds this struct, so after an upgrade the
    /// tunnel keeps the place until it closes.
    _slot: OwnedSemaphorePermit,
    /// The client this connection counts against (none: a trusted proxy);
    /// given back when the last holder of this struct lets go.
    client: Option<IpAddr>,
}

impl ConnCtl {
    fn new(shared: Arc<Shared>, slot: OwnedSemaphorePermit, client: Option<IpAddr>) -> Self {
        let now = clock::mono_ms();
        ConnCtl {
            shared,
            close: AtomicBool::new(false),
            kill: AtomicBool::new(false),
            waker: atomic_waker::AtomicWaker::new(),
            done: tokio::sync::Notify::new(),
            last: AtomicU64::new(now),
            // Waiting for the first request counts as reading its head.
            head_since: AtomicU64::new(now.max(1)),
            in_flight: AtomicU32::new(0),
            h2: AtomicBool::new(false),
            _slot: slot,
            client,
        }
    }

    fn request_close(&self) {
        self.close.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn request_kill(&self) {
        self.kill.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Bytes arrived from the client at `now`.
    fn on_read(&self, now: u64) {
        if self.h2.load(Ordering::Relaxed) {
            return;
        }
        self.last.store(now, Ordering::Relaxed);
        if self.head_since.load(Ordering::Relaxed) == 0
            && self.in_flight.load(Ordering::Relaxed) == 0
        {
            self.head_since.store(now.max(1), Ordering::Relaxed);
        }
    }

    /// Bytes were written to the client at `now`.
    fn on_write(&self, now: u64) {
        if !self.h2.load(Ordering::Relaxed) {
            self.last.store(now, Ordering::Relaxed);
        }
    }

    /// hyper has read a complete request head.
    fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
        self.on_stream_change();
        InFlight(self.clone())
    }

    /// An HTTP/2 request started or ended: the connection is not idle now.
    fn on_stream_change(&self) {
        if self.h2.load(Ordering::Relaxed) {
            self.last.store(clock::mono_ms(), Ordering::Relaxed);
        }
    }

    /// True when the connection has been idle for at least `idle_ms` at
    /// `now`. An HTTP/2 connection with a request open is never idle.
    fn is_idle(&self, now: u64, idle_ms: u64) -> bool {
        if self.h2.load(Ordering::Relaxed) && self.in_flight.load(Ordering::Relaxed) > 0 {
            return false;
        }
        now.saturating_sub(self.last.load(Ordering::Relaxed)) >= idle_ms
    }

    /// The client opened with the HTTP/2 preface.
    fn on_h2(&self) {
        self.h2.store(true, Ordering::Relaxed);
        self.head_since.store(0, Ordering::Relaxed);
    }
}

impl Drop for ConnCtl {
    fn drop(&mut self) {
        if let Some(key) = self.client {
            self.shared.clients.release(key);
        }
    }
}

/// Held by a connection's task for as long as it runs: dropping it (when
/// the task returns, or unwinds from a panic) tells the watchdog to end, so
/// that the watchdog's reference no longer keeps the connection's
/// `max_connections` slot and its place in the shutdown drain.
struct Ended(Arc<ConnCtl>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.done.notify_one();
    }
}

/// Counts a connection in `portcullis_open_connections` until dropped.
struct OpenConnection;

impl OpenConnection {
    fn new() -> Self {
        crate::base::metrics::global().open_connections.inc();
        OpenConnection
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        crate::base::metrics::global().open_connections.dec();
    }
}

/// One request in flight on a connection; carried by its response body, so
/// dropping it (hyper drops the body once written, or the connection ends)
/// ends the request.
struct InFlight(Arc<ConnCtl>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.on_stream_change();
    }
}

/// `res` with its body holding the request's [`InFlight`] mark.
fn mark(res: Response<Body>, in_flight: InFlight) -> Response<Marked> {
    res.map(|inner| Marked {
        inner,
        _in_flight: in_flight,
    })
}

/// A response body that holds its request's [`InFlight`] mark.
struct Marked {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Marked {
    type Data = <Body as hyper::body::Body>::Data;
    type Error = <Body as hyper::body::Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves one connection. The idle timeout and the shutdown signal are
/// watched by a separate small task (the watchdog), so that polling the
/// connection for each request touches no timer and no shared channel: only
/// a flag and the task's waker.
async fn drive<S>(
    io: Tracked<S>,
    peer: SocketAddr,
    tls: bool,
    h2: bool,
    ctl: Arc<ConnCtl>,
    stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = &ctl.shared;
    let svc_ctl = ctl.clone();
    // A request answered at once (see `route`) needs no future of its own:
    // only the slower ones are boxed, and hyper moves a small future into
    // place for each request.
    let svc = service_fn(move |req: Request<Incoming>| {
        let in_flight = svc_ctl.begin_request();
        match route(&in_flight.0.shared, req.map(ClientBody::from), peer, tls) {
            Routed::Now(res) => Either::Left(future::ready(Ok(mark(res, in_flight)))),
            routed => Either::Right(Box::pin(async move {
                let res = routed.answer(&in_flight.0.shared).await;
                Ok::<_, Infallible>(mark(res, in_flight))
            })),
        }
    });
    tokio::spawn(watchdog(
        ctl.clone(),
        shared.idle_timeout,
        shared.header_read_timeout,
        stop,
        peer,
    ));
    let mut io = io;
    // HTTP/1.1 requests without a body are served by the server's own path
    // (see `h1`) until one is not; hyper carries on from there with the
    // bytes read so far. A TLS client that chose HTTP/2 goes to hyper at once.
    let read = if h2 {
        Bytes::new()
    } else {
        match guarded(&ctl, h1::serve(&mut io, &ctl, peer, tls)).await {
            Some(h1::Outcome::Closed) => return,
            Some(h1::Outcome::HandOver(read)) => read,
            None => return head_timed_out(peer),
        }
    };
    let conn = shared
        .builder
        .serve_connection_with_upgrades(TokioIo::new(Rewind::new(read, io)), svc);
    tokio::pin!(conn);
    let mut closing = false;
    let r = std::future::poll_fn(|cx| {
        if ctl.kill.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        if !closing && ctl.close.load(Ordering::Acquire) {
            conn.as_mut().graceful_shutdown();
            closing = true;
        }
        let r = conn.as_mut().poll(cx);
        if r.is_pending() {
            ctl.waker.register(cx.waker());
            // A close or kill requested between the checks above and the registration.
            if ctl.kill.load(Ordering::Acquire) || (!closing && ctl.close.load(Ordering::Acquire)) {
                cx.waker().wake_by_ref();
            }
        }
        r.map(Some)
    })
    .await;
    match r {
        Some(Err(e)) => {
            tracing::debug!(client.addr = %peer, error = %e, "connection ended with an error")
        }
        Some(Ok(())) => {}
        None => head_timed_out(peer),
    }
}

/// Runs `fut` until it ends, or until the watchdog kills the connection
/// (`None`). The connection's waker is registered at every wait, so a
/// close request wakes the task and `fut` sees it.
async fn guarded<F: Future>(ctl: &ConnCtl, fut: F) -> Option<F::Output> {
    tokio::pin!(fut);
    std::future::poll_fn(|cx| {
        if ctl.kill.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        let closing = ctl.close.load(Ordering::Acquire);
        let r = fut.as_mut().poll(cx);
        if r.is_pending() {
            ctl.waker.register(cx.waker());
            // A close or kill requested between the checks above and the
            // registration (once: `fut` sees a close at its next read, and
            // a request in flight is not to be polled in a loop meanwhile).
            if ctl.kill.load(Ordering::Acquire) || (!closing && ctl.close.load(Ordering::Acquire)) {
                cx.waker().wake_by_ref();
            }
        }
        r.map(Some)
    })
    .await
}

fn head_timed_out(peer: SocketAddr) {
    tracing::debug!(
        client.addr = %peer,
        "closing connection: request head not complete within server.header_read_timeout"
    );
}

/// A stream that yields `read` (bytes already taken from `inner`) before
/// reading `inner` again: how hyper's server gets a connection mid-way.
struct Rewind<S> {
    read: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    fn new(read: Bytes, inner: S) -> Self {
        Rewind { read, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Asks the connection to close once it has been idle for `idle`, or when
/// the server shuts down; drops it when a request head takes longer than
/// `head`; ends with the connection.
async fn watchdog(
    ctl: Arc<ConnCtl>,
    idle: Duration,
    head: Duration,
    mut stop: watch::Receiver<bool>,
    peer: SocketAddr,
) {
    let tick = (idle.min(head) / 4).max(Duration::from_millis(250));
    let head_ms = head.as_millis() as u64;
    // Once the connection has been asked to close, a request head that is
    // still coming stays under the header-read timeout.
    let mut closing = false;
    loop {
        tokio::select! {
            _ = ctl.done.notified() => return,
            _ = stop.changed(), if !closing => {
                ctl.request_close();
                closing = true;
            }
            _ = tokio::time::sleep(tick) => {
                let now = clock::mono_ms();
                let head_since = ctl.head_since.load(Ordering::Relaxed);
                if head_since != 0 && now.saturating_sub(head_since) >= head_ms {
                    ctl.request_kill();
                    return;
                }
                if !closing && ctl.is_idle(now, idle.as_millis() as u64) {
                    tracing::debug!(client.addr = %peer, "closing idle connection");
                    ctl.request_close();
                    closing = true;
                }
            }
        }
    }
}
// === idle tracking ===

/// An IO stream that tells its [`ConnCtl`] when bytes move (the idle and
/// header-read timeouts) and whether the client opened with HTTP/2.
struct Tracked<S> {
    inner: S,
    ctl: Arc<ConnCtl>,
    /// Bytes of [`H2_PREFACE_START`] the client has sent so far, in order;
    /// `u8::MAX` once it sent anything else (or the whole of it).
    preface: u8,
}

impl<S> Tracked<S> {
    fn new(inner: S, ctl: Arc<ConnCtl>) -> Self {
        Tracked {
            inner,
            ctl,
            preface: 0,
        }
    }

    /// Follows the start of the client's bytes: an HTTP/2 connection once
    /// the whole of [`H2_PREFACE_START`] has come (a lone `P` is not one).
    fn see_preface(&mut self, got: &[u8]) {
        let seen = usize::from(self.preface);
        let want = &H2_PREFACE_START[seen..];
        let n = got.len().min(want.len());
        if got[..n] != want[..n] {
            self.preface = u8::MAX;
        } else if n == want.len() {
            self.preface = u8::MAX;
            self.ctl.on_h2();
        } else {
            self.preface += n as u8;
        }
    }
}

/// The start of the HTTP/2 client preface (`PRI * HTTP/2.0`).
const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let got = &buf.filled()[before..];
        if !got.is_empty() {
            if self.preface != u8::MAX {
                self.see_preface(got);
            }
            self.ctl.on_read(clock::mono_ms());
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.ctl.on_write(clock::mono_ms());
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
            self.ctl.on_write(clock::mono_ms());
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

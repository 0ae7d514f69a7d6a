//! Keep-alive connections to one upstream.
//!
//! Each upstream of reverse-proxy mode owns its pools, so a request
//! finds its connections without hashing a key: HTTP/1.1 connections wait in
//! a short list and are taken most recently used first; an HTTP/2 connection
//! (chosen by ALPN over TLS) is shared by every request while it stays open.
//!
//! An HTTP/1.1 connection has no task of its own: the request that took it
//! runs its exchange itself with the proxy's own client ([`h1_client`]),
//! first while the request goes up and the response head comes back
//! ([`Pool::request`]), then, as the response body is read, through that
//! body, which owns the connection until its end. Everything a proxied
//! request does thus happens in the task of the client's connection: no
//! channel hop to a connection task and back, no wake-up of a second task
//! for every request. The body gives the connection back to its pool once it
//! has been read to the end; a body dropped early takes its connection with
//! it. A WebSocket upgrade hands its connection to hyper's client, in a task
//! of its own, as it never comes back.
//!
//! A connection taken from the pool is polled once first, which notices an
//! upstream that closed it while it waited. A request that the upstream
//! closed its reused connection on is retried once on a fresh connection
//! when nothing of it was written, or when it has no body, a safe method
//! (`GET`, `HEAD`, `OPTIONS`, `TRACE`) and got no byte of answer (the
//! upstream closed the idle connection just as it was reused). Connections
//! idle for longer than [`IDLE`] are closed.
//!
//! [`h1_client`]: super::h1_client
//!
//! `proxy.connect_timeout` covers the TCP connect and, for `https://`
//! upstreams, the TLS handshake.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2, TrySendError};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::Url;

use super::body::{PooledBody, RequestBody};
use super::h1_client::{self, Conn, ExchangeError};
use crate::base::clock;

/// Idle connections older than this are closed.
pub const IDLE: Duration = Duration::from_secs(30);

/// Idle lists per pool. A thread that runs its own event loop (a worker of
/// the thread-per-core mode) keeps the connections it opened in a list of
/// its own, so that their readiness is always its own loop's to report: a
/// connection polled by another thread's task would be woken across
/// threads. Threads of the shared runtime use lane 0.
const LANES: usize = 16;

thread_local! {
    static LANE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Puts the pooled connections of the `n`th worker thread in a lane of
/// their own (lanes 1 to 15; with more workers, several share one).
pub fn set_lane(n: usize) {
    LANE.set(1 + n % (LANES - 1));
}

fn lane() -> usize {
    LANE.get()
}

/// At most this many idle HTTP/1.1 connections are kept per pool (and lane).
const MAX_IDLE: usize = 256;

/// Connections to one upstream.
pub struct Pool {
    /// Where to connect.
    host: Host,
    port: u16,
    /// TLS for `https://` upstreams.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// `scheme://authority` for the pseudo-headers of HTTP/2 requests.
    scheme: Scheme,
    authority: Authority,
    connect_timeout: Duration,
    /// Idle HTTP/1.1 connections, most recently used last, one list per
    /// lane (see [`set_lane`]).
    idle: [Mutex<Vec<Idle>>; LANES],
    /// The shared HTTP/2 connection, once ALPN picked h2.
    h2: Mutex<Option<http2::SendRequest<RequestBody>>>,
    /// A task closes expired idle connections (started with the first one).
    reaping: AtomicBool,
    /// ALPN may choose HTTP/2 on this pool's connections.
    h2_offered: bool,
}

/// Why a request got no response from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// TCP connect and TLS handshake took longer than `proxy.connect_timeout`.
    #[error("connecting to the upstream timed out")]
    ConnectTimeout,
    /// TCP connect refused or unreachable, or the name did not resolve.
    #[error("connecting to the upstream failed: {0}")]
    Connect(#[source] io::Error),
    /// The TLS handshake failed: an untrusted certificate, the wrong name,
    /// or an upstream that does not speak TLS.
    #[error("connecting to the upstream failed: TLS: {}", crate::base::error::error_chain(.0))]
    Tls(#[source] io::Error),
    /// The HTTP/1.1 or HTTP/2 handshake on a new connection failed.
    #[error("connecting to the upstream failed: {}", crate::base::error::error_chain(.0))]
    Handshake(#[source] hyper::Error),
    /// The connection failed while the request or response head was in
    /// transit (HTTP/2 and upgrades).
    #[error("{}", crate::base::error::error_chain(.0))]
    Request(#[source] hyper::Error),
    /// The same over HTTP/1.1, or the answer's head could not be read.
    #[error("{}", crate::base::error::error_chain(.0))]
    Exchange(#[source] ExchangeError),
    /// Header lines were given for a request that hyper's client sends (a
    /// bug in the caller: the lines would be lost).
    #[error("header lines cannot go over HTTP/2 or with an upgrade")]
    Lines,
}

enum Host {
    Name(String),
    Ip(IpAddr),
}

/// The byte stream under an HTTP/1.1 connection.
pub(super) enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

struct Idle {
    conn: Conn,
    since_ms: u64,
}

enum Sender {
    H1(Conn),
    H2(http2::SendRequest<RequestBody>),
}

/// What a request wants of its connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Use {
    /// An ordinary exchange; the connection can be reused after it.
    Exchange,
    /// A protocol upgrade (WebSocket): HTTP/1.1, and the connection is gone
    /// for good if the upstream switches protocols.
    Upgrade,
}

// === impl Pool ===

impl Pool {
    /// A pool for `url` (`http://` or `https://`). `tls` must carry the ALPN
    /// protocols wanted (`h2` only where HTTP/2 may be used).
    pub fn new(
        url: &Url,
        tls: Option<Arc<ClientConfig>>,
        connect_timeout: Duration,
    ) -> Option<Pool> {
        let port = url.port_or_known_default()?;
        let (host, server_name) = match url.host()? {
            url::Host::Domain(d) => (
                Host::Name(d.to_owned()),
                ServerName::try_from(d.to_owned()).ok()?,
            ),
            url::Host::Ipv4(ip) => (
                Host::Ip(ip.into()),
                ServerName::IpAddress(IpAddr::from(ip).into()),
            ),
            url::Host::Ipv6(ip) => (
                Host::Ip(ip.into()),
                ServerName::IpAddress(IpAddr::from(ip).into()),
            ),
        };
        let https = url.scheme() == "https";
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str()?),
            None => url.host_str()?.to_owned(),
        };
        let h2_offered = https
            && tls
                .as_ref()
                .is_some_and(|c| c.alpn_protocols.iter().any(|p| p == b"h2"));
        Some(Pool {
            host,
            port,
            tls: https
                .then(|| tls.map(|cfg| (TlsConnector::from(cfg), server_name)))
                .flatten(),
            scheme: if https { Scheme::HTTPS } else { Scheme::HTTP },
            authority: Authority::try_from(authority).ok()?,
            connect_timeout,
            idle: std::array::from_fn(|_| Mutex::new(Vec::new())),
            h2: Mutex::new(None),
            reaping: AtomicBool::new(false),
            h2_offered,
        })
        .filter(|p| !https || p.tls.is_some())
    }

    /// Sends `req`, whose URI is in origin form (`/path?query`), on a pooled
    /// connection or a new one. An HTTP/1.1 connection travels with the
    /// response body until its end.
    ///
    /// `lines` are header lines written into the HTTP/1.1 request head after
    /// `req`'s own fields; only a pool that never speaks HTTP/2
    /// ([`Pool::h1_only`]) takes them, and never for an upgrade.
    pub async fn request(
        self: &Arc<Self>,
        mut req: Request<RequestBody>,
        lines: &[u8],
        purpose: Use,
    ) -> Result<Response<PooledBody>, PoolError> {
        if !lines.is_empty() && (!self.h1_only() || purpose == Use::Upgrade) {
            return Err(PoolError::Lines);
        }
        let mut retried = false;
        loop {
            let (sender, reused) = match self.checkout(purpose) {
                Some(s) => (s, true),
                // Boxed: the connect future is large and rarely needed.
                None => (Box::pin(self.connect()).await?, false),
            };
            let sent = match sender {
                Sender::H1(conn) if purpose == Use::Upgrade => {
                    let mut tx = upgrade(conn).await.map_err(PoolError::Handshake)?;
                    match tx.try_send_request(req).await {
                        Ok(res) => return Ok(res.map(PooledBody::Hyper)),
                        Err(e) => e,
                    }
                }
                Sender::H1(mut conn) => match conn.exchange(&mut req, lines).await {
                    Ok(answer) => {
                        let res = h1_client::response(self.clone(), conn, answer);
                        return Ok(res.map(PooledBody::H1));
                    }
                    Err(failed) if failed.replayable && reused && !retried => {
                        retried = true;
                        continue;
                    }
                    Err(failed) => return Err(PoolError::Exchange(failed.error)),
                },
                // Boxed: a second request future inline would double this one's size.
                Sender::H2(tx) => match Box::pin(self.send_h2(tx, req, reused)).await {
                    Ok(res) => return Ok(res.map(PooledBody::Hyper)),
                    Err(e) => e,
                },
            };
            let mut e = sent;
            match e.take_message() {
                // Refused before a byte was written: an idle connection the
                // upstream had just closed. Once more on a fresh connection.
                Some(mut again) if reused && !retried => {
                    retried = true;
                    if let Some(pq) = again.uri().path_and_query().cloned() {
                        *again.uri_mut() = Uri::from(pq);
                    }
                    req = again;
                }
                _ => return Err(PoolError::Request(e.into_error())),
            }
        }
    }

    /// Every exchange of this pool is HTTP/1.1 on the proxy's own client:
    /// a plain `http://` upstream, or TLS without `h2` among the ALPN
    /// protocols offered.
    pub fn h1_only(&self) -> bool {
        !self.h2_offered
    }

    /// Sends `req` on the shared HTTP/2 connection, forgetting the connection
    /// if it refuses a request (closed or going away) after reuse.
    async fn send_h2(
        &self,
        mut tx: http2::SendRequest<RequestBody>,
        mut req: Request<RequestBody>,
        reused: bool,
    ) -> Result<Response<Incoming>, TrySendError<Request<RequestBody>>> {
        *req.uri_mut() = self.absolute(req.uri());
        let sent = tx.try_send_request(req).await;
        if sent.is_err() && reused {
            self.h2.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
        sent
    }

    /// `req_uri` (origin form) made absolute for HTTP/2's pseudo-headers.
    fn absolute(&self, req_uri: &Uri) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = req_uri.path_and_query().cloned();
        Uri::from_parts(parts).unwrap_or_else(|_| req_uri.clone())
    }

    /// A connection ready for a request: the shared HTTP/2 one (never for an
    /// upgrade), or the most recently used idle HTTP/1.1 one that is still
    /// open. Closed and expired ones are dropped on the way.
    fn checkout(&self, purpose: Use) -> Option<Sender> {
        if purpose == Use::Exchange {
            if let Some(tx) = self.h2.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                if !tx.is_closed() {
                    return Some(Sender::H2(tx.clone()));
                }
            }
        }
        let now = clock::mono_ms();
        loop {
            let Idle { mut conn, since_ms } = self.idle[lane()]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()?;
            // Polled outside the lock: this reads an upstream's close, if any.
            if now.saturating_sub(since_ms) <= IDLE.as_millis() as u64 && conn.ready_now() {
                return Some(Sender::H1(conn));
            }
        }
    }

    /// Takes back a connection whose exchange ended cleanly (the answer's
    /// body read to its end, the request sent whole).
    pub(super) fn put(self: &Arc<Self>, conn: Conn) {
        {
            let mut idle = self.idle[lane()].lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(Idle {
                    conn,
                    since_ms: clock::mono_ms(),
                });
            }
        }
        if !self.reaping.swap(true, Ordering::Relaxed) {
            tokio::spawn(reap(Arc::downgrade(self)));
        }
    }

    /// Closes idle connections that have waited for longer than [`IDLE`].
    fn drop_expired(&self) {
        let now = clock::mono_ms();
        for lane in &self.idle {
            let expired: Vec<Idle> = {
                let mut idle = lane.lock().unwrap_or_else(|p| p.into_inner());
                let (old, fresh) = idle
                    .drain(..)
                    .partition(|e| now.saturating_sub(e.since_ms) > IDLE.as_millis() as u64);
                *idle = fresh;
                old
            };
            // Closed outside the lock.
            drop(expired);
        }
    }

    /// Opens a connection: TCP, TLS for `https://`, then HTTP/2 if ALPN
    /// chose it, else HTTP/1.1.
    async fn connect(&self) -> Result<Sender, PoolError> {
        let opened = tokio::time::timeout(self.connect_timeout, async {
            let tcp = match &self.host {
                Host::Ip(ip) => TcpStream::connect(SocketAddr::new(*ip, self.port)).await,
                Host::Name(name) => TcpStream::connect((name.as_str(), self.port)).await,
            }
            .map_err(PoolError::Connect)?;
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => Ok(Io::Plain(tcp)),
                Some((tls, name)) => {
                    let stream = tls
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(PoolError::Tls)?;
                    Ok(Io::Tls(Box::new(stream)))
                }
            }
        })
        .await
        .map_err(|_| PoolError::ConnectTimeout)??;
        match opened {
            Io::Tls(stream) if stream.get_ref().1.alpn_protocol() == Some(b"h2") => {
                let (tx, conn) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(PoolError::Handshake)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
                    }
                });
                *self.h2.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx.clone());
                Ok(Sender::H2(tx))
            }
            io => Ok(Sender::H1(Conn::new(io))),
        }
    }
}

/// Closes a pool's expired idle connections every half [`IDLE`] while the pool lives.
async fn reap(pool: Weak<Pool>) {
    loop {
        tokio::time::sleep(IDLE / 2).await;
        match pool.upgrade() {
            Some(p) => p.drop_expired(),
            None => return,
        }
    }
}

/// Hands the connection to hyper's client for an upgrade request: a task
/// of its own (with upgrades enabled) serves it until the upgrade or the end.
async fn upgrade(conn: Conn) -> Result<http1::SendRequest<RequestBody>, hyper::Error> {
    let (tx, conn) = http1::Builder::new()
        .handshake(TokioIo::new(conn.into_io()))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    Ok(tx)
}

// === impl Io ===

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn pool(url: &str, tls: Option<Arc<ClientConfig>>) -> Pool {
        Pool::new(&url.parse().unwrap(), tls, Duration::from_secs(5)).expect("a pool")
    }

    /// The OS error of the first cause of `e` that is one.
    fn io_cause(e: &PoolError) -> &io::Error {
        let mut cause = std::error::Error::source(e);
        while let Some(c) = cause {
            if let Some(io) = c.downcast_ref::<io::Error>() {
                return io;
            }
            cause = c.source();
        }
        panic!("no OS error among the causes of {e:?}")
    }

    #[tokio::test]
    async fn a_refused_connection_keeps_the_os_error_as_its_cause() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let p = pool(&format!("http://127.0.0.1:{port}/"), None);
        let e = p.connect().await.err().expect("nothing listens there");
        assert!(matches!(e, PoolError::Connect(_)), "{e:?}");
        let io = io_cause(&e);
        assert_eq!(io.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(
            e.to_string(),
            format!("connecting to the upstream failed: {io}")
        );
        assert_eq!(crate::base::error::error_chain(&e), e.to_string());
    }

    #[tokio::test]
    async fn a_failed_tls_handshake_keeps_its_cause() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            // Plain HTTP where TLS is expected.
            let (mut conn, _) = listener.accept().await.unwrap();
            let _ = conn
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        });
        let tls = Arc::new(crate::auth::proxy_table::upstream::insecure());
        let p = pool(&format!("https://{addr}/"), Some(tls));
        let e = p.connect().await.err().expect("not TLS");
        assert!(matches!(e, PoolError::Tls(_)), "{e:?}");
        let io = io_cause(&e);
        let line = e.to_string();
        assert!(
            line.starts_with("connecting to the upstream failed: TLS: "),
            "{line}"
        );
        assert!(line.contains(&io.to_string()), "{line}");
        assert_eq!(crate::base::error::error_chain(&e), line);
    }
}

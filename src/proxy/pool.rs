//! Keep-alive connections to one upstream.
//!
//! Each [`Upstream`](super::upstream::Upstream) owns its pools, so a request
//! finds its connections without hashing a key: HTTP/1.1 connections wait in
//! a short list and are taken most recently used first; an HTTP/2 connection
//! (chosen by ALPN over TLS) is shared by every request while it stays open.
//! Connections are hyper's client connections, each driven by a task of its
//! own; a request hands its head to that task and gets the response back.
//!
//! An HTTP/1.1 connection goes back to its pool once its response body has
//! been read to the end ([`Checkin`], carried by the body); a body dropped
//! early takes its connection with it. Connections closed by the upstream or
//! idle for longer than [`IDLE`] are dropped when next looked at. A request
//! that an idle connection refused before any byte of it was written (the
//! upstream closed it just then) is retried once on a fresh connection.
//!
//! `proxy.connect_timeout` covers the TCP connect and, for `https://`
//! upstreams, the TLS handshake.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use url::Url;

use super::body::RequestBody;
use crate::clock;

/// Idle connections older than this are closed.
pub const IDLE: Duration = Duration::from_secs(30);

/// At most this many idle HTTP/1.1 connections are kept per pool.
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
    /// HTTP/1.1 connections to support `Upgrade` (WebSocket).
    upgrades: bool,
    connect_timeout: Duration,
    /// Idle HTTP/1.1 connections, most recently used last.
    idle: Mutex<Vec<Idle>>,
    /// The shared HTTP/2 connection, once ALPN picked h2.
    h2: Mutex<Option<http2::SendRequest<RequestBody>>>,
    /// A task closes expired idle connections (started with the first one).
    reaping: AtomicBool,
}

/// Why a request got no response from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// TCP connect and TLS handshake took longer than `proxy.connect_timeout`.
    #[error("connecting to the upstream timed out")]
    ConnectTimeout,
    /// Refused, unreachable, name not resolved, TLS failure.
    #[error("connecting to the upstream failed: {0}")]
    Connect(String),
    /// The connection failed while the request or response head was in transit.
    #[error("{0}")]
    Request(String),
}

enum Host {
    Name(String),
    Ip(IpAddr),
}

struct Idle {
    tx: http1::SendRequest<RequestBody>,
    since_ms: u64,
}

enum Sender {
    H1(http1::SendRequest<RequestBody>),
    H2(http2::SendRequest<RequestBody>),
}

/// An HTTP/1.1 connection to give back to its pool when the response body
/// it carries is done. Empty for HTTP/2 and for connections already back.
#[derive(Default)]
pub struct Checkin(Option<(Arc<Pool>, http1::SendRequest<RequestBody>)>);

// === impl Pool ===

impl Pool {
    /// A pool for `url` (`http://` or `https://`). `tls` must carry the ALPN
    /// protocols wanted (`h2` only where HTTP/2 may be used); `upgrades`
    /// makes the connections able to carry a WebSocket after a 101.
    pub fn new(
        url: &Url,
        tls: Option<Arc<ClientConfig>>,
        upgrades: bool,
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
        Some(Pool {
            host,
            port,
            tls: https
                .then(|| tls.map(|cfg| (TlsConnector::from(cfg), server_name)))
                .flatten(),
            scheme: if https { Scheme::HTTPS } else { Scheme::HTTP },
            authority: Authority::try_from(authority).ok()?,
            upgrades,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(None),
            reaping: AtomicBool::new(false),
        })
        .filter(|p| !https || p.tls.is_some())
    }

    /// Sends `req`, whose URI is in origin form (`/path?query`), on a pooled
    /// connection or a new one. The [`Checkin`] must travel with the
    /// response body (see [`Checkin::body_done`]).
    pub async fn request(
        self: &Arc<Self>,
        mut req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Checkin), PoolError> {
        let mut retried = false;
        loop {
            let (sender, reused) = match self.checkout() {
                Some(s) => (s, true),
                // Boxed: the connect future is large and rarely needed.
                None => (Box::pin(self.connect()).await?, false),
            };
            let sent = match sender {
                Sender::H1(mut tx) => match tx.try_send_request(req).await {
                    Ok(res) => {
                        let back = if res.status() == StatusCode::SWITCHING_PROTOCOLS {
                            // The connection now belongs to the upgrade.
                            Checkin::default()
                        } else {
                            let back = Checkin(Some((self.clone(), tx)));
                            if hyper::body::Body::is_end_stream(res.body()) {
                                back.give_back();
                                Checkin::default()
                            } else {
                                back
                            }
                        };
                        return Ok((res, back));
                    }
                    Err(e) => e,
                },
                // Boxed: a second request future inline would double this one's size.
                Sender::H2(tx) => match Box::pin(self.send_h2(tx, req, reused)).await {
                    Ok(res) => return Ok((res, Checkin::default())),
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
                _ => {
                    return Err(PoolError::Request(crate::oidc::error_chain(
                        &e.into_error(),
                    )))
                }
            }
        }
    }

    /// Sends `req` on the shared HTTP/2 connection, forgetting the connection
    /// if it refuses a request (closed or going away) after reuse.
    async fn send_h2(
        &self,
        mut tx: http2::SendRequest<RequestBody>,
        mut req: Request<RequestBody>,
        reused: bool,
    ) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<RequestBody>>> {
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

    /// A connection ready for a request: the shared HTTP/2 one, or the most
    /// recently used idle HTTP/1.1 one. Closed and expired ones are dropped.
    fn checkout(&self) -> Option<Sender> {
        if let Some(tx) = self.h2.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            if !tx.is_closed() {
                return Some(Sender::H2(tx.clone()));
            }
        }
        let now = clock::mono_ms();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            let e = &idle[i];
            if !e.alive(now) {
                idle.swap_remove(i);
            } else if e.tx.is_ready() {
                return Some(Sender::H1(idle.swap_remove(i).tx));
            }
            // Otherwise still finishing its last exchange: left for later.
        }
        None
    }

    fn put(self: &Arc<Self>, tx: http1::SendRequest<RequestBody>) {
        if tx.is_closed() {
            return;
        }
        {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(Idle {
                    tx,
                    since_ms: clock::mono_ms(),
                });
            }
        }
        if !self.reaping.swap(true, Ordering::Relaxed) {
            tokio::spawn(reap(Arc::downgrade(self)));
        }
    }

    /// Drops idle connections that are closed or expired.
    fn drop_expired(&self) {
        let now = clock::mono_ms();
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|e| {
                !e.tx.is_closed() && now.saturating_sub(e.since_ms) <= IDLE.as_millis() as u64
            });
    }

    /// Opens a connection: TCP, TLS for `https://`, then HTTP/2 if ALPN
    /// chose it, else HTTP/1.1.
    async fn connect(&self) -> Result<Sender, PoolError> {
        let opened = tokio::time::timeout(self.connect_timeout, async {
            let tcp = match &self.host {
                Host::Ip(ip) => TcpStream::connect(SocketAddr::new(*ip, self.port)).await,
                Host::Name(name) => TcpStream::connect((name.as_str(), self.port)).await,
            }
            .map_err(|e| PoolError::Connect(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => Ok(Io::Plain(tcp)),
                Some((tls, name)) => {
                    let stream = tls.connect(name.clone(), tcp).await.map_err(|e| {
                        PoolError::Connect(format!("TLS: {}", crate::oidc::error_chain(&e)))
                    })?;
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
                    .map_err(|e| PoolError::Connect(crate::oidc::error_chain(&e)))?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
                    }
                });
                *self.h2.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx.clone());
                Ok(Sender::H2(tx))
            }
            Io::Tls(stream) => self.h1(TokioIo::new(*stream)).await,
            Io::Plain(tcp) => self.h1(TokioIo::new(tcp)).await,
        }
    }

    async fn h1<T>(&self, io: TokioIo<T>) -> Result<Sender, PoolError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| PoolError::Connect(crate::oidc::error_chain(&e)))?;
        if self.upgrades {
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "upstream connection ended");
                }
            });
        } else {
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream connection ended");
                }
            });
        }
        Ok(Sender::H1(tx))
    }
}

impl Idle {
    /// Still open and idle for at most [`IDLE`] at `now` (ms, [`clock::mono_ms`]).
    fn alive(&self, now: u64) -> bool {
        !self.tx.is_closed() && now.saturating_sub(self.since_ms) <= IDLE.as_millis() as u64
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

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

// === impl Checkin ===

impl Checkin {
    /// The response body it travels with has ended: the connection goes back
    /// to its pool. Calling it again does nothing.
    pub fn body_done(&mut self) {
        if let Some((pool, tx)) = self.0.take() {
            pool.put(tx);
        }
    }

    fn give_back(mut self) {
        self.body_done();
    }
}

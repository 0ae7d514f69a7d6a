//! Listeners and connections: accept (capped by a semaphore taken before
//! accept), optional TLS (rustls, ALPN `h2` and `http/1.1`), HTTP/1.1 and
//! HTTP/2 on the same port (hyper-util `auto`), header-read and idle
//! timeouts, a head-size limit, routing to the endpoints, and graceful drain
//! on shutdown.
//!
//! The timeouts are kept by one small watchdog task per connection rather
//! than by hyper's per-request header timer: the request path then touches
//! no timer at all, only a few atomics (see [`ConnCtl`]). Knows nothing about authentication: it calls
//! `forward_auth`, `login`, `proxy` and `admin`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, StoreKind};
use crate::diagnostics::{self, Class};
use crate::http_util::Body;
use crate::oidc::Oidc;
use crate::pipeline::{Gateway, Peer, Runtime};
use crate::request_id::{self, X_REQUEST_ID};
use crate::session::memory::MemoryStore;
use crate::session::redis::RedisStore;
use crate::session::{SessionKeys, SessionStore};
use crate::{access, admin, clock, error, forward_auth, login, proxy};
use tracing::Instrument;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The rules do not compile.
    #[error(transparent)]
    Rules(#[from] crate::rules::RulesError),
    /// TLS files could not be loaded.
    #[error("tls: {0}")]
    Tls(String),
    /// The OIDC client could not be built.
    #[error("oidc: {0}")]
    Oidc(String),
    /// The session store could not be set up.
    #[error(transparent)]
    Store(#[from] crate::session::StoreError),
}

/// Which endpoints a listener serves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// `listen`: forward auth, `/oauth2/*`, proxied hosts (and health when no admin listener).
    Main {
        /// Also serve `/healthz`, `/readyz` and `/metrics` (on hosts no rule proxies).
        with_admin: bool,
    },
    /// `admin_listen`: health, readiness, metrics and `/admin/sessions`.
    Admin,
}

/// Everything a connection needs.
struct Shared {
    gw: Arc<Gateway>,
    proxy: proxy::Proxy,
    role: Role,
    tls: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    idle_timeout: Duration,
    header_read_timeout: Duration,
    /// Open connections per client, for `server.max_connections_per_client`.
    clients: ClientCounts,
}

/// Open connections per client address. An IPv6 client counts per /64, the
/// block one subscriber usually holds; an IPv4-mapped address as its IPv4.
#[derive(Default)]
struct ClientCounts(Mutex<HashMap<IpAddr, u32>>);

// === building ===

/// Builds the gateway's long-lived state from a validated config and starts
/// background discovery of the IdP. `store` overrides the configured store (tests).
pub fn build(
    config: Config,
    store: Option<Arc<dyn SessionStore>>,
) -> Result<Arc<Gateway>, StartError> {
    let keys = SessionKeys::new(&config.session);
    let sessions: Arc<dyn SessionStore> = match store {
        Some(s) => s,
        None => match config.session.store {
            StoreKind::Memory => Arc::new(MemoryStore::new(config.session.idle_timeout)),
            StoreKind::Redis => {
                let store = RedisStore::new(&config.session)?;
                store.spawn_background();
                store
            }
        },
    };
    let oidc =
        Arc::new(Oidc::new(config.oidc.clone()).map_err(|e| StartError::Oidc(e.to_string()))?);
    oidc.spawn_refresh();
    let bearer = Arc::new(
        crate::bearer::Bearer::new(&config.oidc).map_err(|e| StartError::Oidc(e.to_string()))?,
    );
    bearer.spawn_refresh();
    let runtime = Runtime::compile(config)?;
    Ok(Arc::new(Gateway {
        runtime: ArcSwap::from_pointee(runtime),
        sessions,
        oidc,
        bearer,
        keys,
        untrusted_hint_logged: AtomicBool::new(false),
        refreshing: moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(crate::session::REFRESH_LOCK)
            .build(),
        basic: crate::basic::BasicAuth::new(crate::basic::Limits::default()),
    }))
}

/// Loads the TLS acceptor from `server.tls_cert` / `tls_key` (and `client_ca`), if set.
pub fn tls_acceptor(config: &Config) -> Result<Option<TlsAcceptor>, StartError> {
    let Some(files) = &config.server.tls else {
        return Ok(None);
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| StartError::Tls(format!("{}: {e}", p.display())))
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut &read(&files.cert)?[..])
        .collect::<Result<_, _>>()
        .map_err(|e| StartError::Tls(format!("{}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(StartError::Tls(format!(
            "{}: no certificate found",
            files.cert.display()
        )));
    }
    let key = rustls_pemfile::private_key(&mut &read(&files.key)?[..])
        .map_err(|e| StartError::Tls(format!("{}: {e}", files.key.display())))?
        .ok_or_else(|| StartError::Tls(format!("{}: no private key found", files.key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?;
    let builder = match &config.server.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut &read(ca)?[..]) {
                let c = c.map_err(|e| StartError::Tls(format!("{}: {e}", ca.display())))?;
                roots
                    .add(c)
                    .map_err(|e| StartError::Tls(format!("{}: {e}", ca.display())))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| StartError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut sc = builder
        .with_single_cert(certs, key)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(sc))))
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

// === serving ===

/// Serves `listener` until `shutdown` turns true, then drains in-flight
/// requests for at most `shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    gw: Arc<Gateway>,
    role: Role,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (limits, grace) = {
        let rt = gw.runtime.load();
        (rt.config.server.clone(), rt.config.server.shutdown_grace)
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Kept by the connection's watchdog instead (hyper's would arm a timer per request).
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let shared = Arc::new(Shared {
        gw,
        proxy: proxy::Proxy::new(),
        role,
        tls,
        builder,
        idle_timeout: limits.idle_timeout,
        header_read_timeout: limits.header_read_timeout,
        clients: ClientCounts::default(),
    });
    let max = limits.max_connections.clamp(1, u32::MAX as usize >> 3);
    let permits = Arc::new(Semaphore::new(max));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    if !matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted) {
                        tracing::warn!(error = %e, "accept failed; pausing 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Some(client) = admit(&shared, peer) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let stop = shutdown.clone();
        tokio::spawn(connection(shared, stream, peer, stop, permit, client));
    }
    drop(listener);
    // Every connection holds a permit until it ends, and hands it on to the
    // tunnel it becomes after an upgrade: having them all back means drained.
    let drained = tokio::time::timeout(grace, permits.acquire_many(max as u32)).await;
    if drained.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "shutdown grace period ran out with requests or WebSocket tunnels still open"
        );
    }
}

/// Counts a new connection against its client's share: `Some(None)` for a
/// peer in `trusted_proxies` (not counted), `Some(Some(key))` when counted,
/// `None` when the client already holds `server.max_connections_per_client`
/// (logged at most once per diagnosis interval, with how many were refused).
fn admit(shared: &Shared, peer: SocketAddr) -> Option<Option<IpAddr>> {
    let (trusted, max) = {
        let rt = shared.gw.runtime.load();
        let max = rt.config.server.max_connections_per_client;
        (rt.is_trusted(peer.ip()), max)
    };
    if trusted {
        return Some(None);
    }
    let key = client_key(peer.ip());
    if shared.clients.admit(key, max) {
        return Some(Some(key));
    }
    if let Some(suppressed) =
        diagnostics::global().occur(Class::ClientConnectionCap, clock::unix_secs())
    {
        tracing::warn!(
            client.addr = %key,
            limit = max,
            suppressed,
            diagnosis = Class::ClientConnectionCap.name(),
            fix = Class::ClientConnectionCap.fix(),
            "connection closed at accept: this client already holds server.max_connections_per_client connections"
        );
    }
    None
}

/// The address a client's connections are counted under.
fn client_key(ip: IpAddr) -> IpAddr {
    match crate::pipeline::canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

async fn connection(
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
            drive(io, peer, false, ctl, stop).await;
        }
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await;
            match handshake {
                Ok(Ok(tls)) => {
                    let io = Tracked::new(tls, ctl.clone());
                    drive(io, peer, true, ctl, stop).await;
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

// === impl ClientCounts ===

impl ClientCounts {
    /// Counts one more connection for `key`, unless it already has `max`.
    fn admit(&self, key: IpAddr, max: usize) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key).or_insert(0);
        if *n as usize >= max {
            if *n == 0 {
                map.remove(&key);
            }
            return false;
        }
        *n += 1;
        true
    }

    /// One of `key`'s connections ended.
    fn release(&self, key: IpAddr) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&key);
            }
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
        crate::metrics::global().open_connections.inc();
        OpenConnection
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        crate::metrics::global().open_connections.dec();
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
    ctl: Arc<ConnCtl>,
    stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = &ctl.shared;
    let svc_ctl = ctl.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let in_flight = svc_ctl.begin_request();
        async move {
            let res = route(&in_flight.0.shared, req, peer, tls).await;
            Ok::<_, Infallible>(res.map(|inner| Marked {
                inner,
                _in_flight: in_flight,
            }))
        }
    });
    let conn = shared
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::spawn(watchdog(
        ctl.clone(),
        shared.idle_timeout,
        shared.header_read_timeout,
        stop,
        peer,
    ));
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
        None => tracing::debug!(
            client.addr = %peer,
            "closing connection: request head not complete within server.header_read_timeout"
        ),
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
    loop {
        tokio::select! {
            _ = ctl.done.notified() => return,
            _ = stop.changed() => {
                ctl.request_close();
                return;
            }
            _ = tokio::time::sleep(tick) => {
                let now = clock::mono_ms();
                let head_since = ctl.head_since.load(Ordering::Relaxed);
                if head_since != 0 && now.saturating_sub(head_since) >= head_ms {
                    ctl.request_kill();
                    return;
                }
                if ctl.is_idle(now, idle.as_millis() as u64) {
                    tracing::debug!(client.addr = %peer, "closing idle connection");
                    ctl.request_close();
                    return;
                }
            }
        }
    }
}

/// Gives the request its id (see [`request_id`]), serves it, writes its
/// access log line when `server.access_log` is on, and returns the id in
/// `X-Request-Id`.
async fn route(
    shared: &Shared,
    req: Request<Incoming>,
    peer: SocketAddr,
    tls: bool,
) -> Response<Body> {
    let rt = shared.gw.runtime.load();
    let trusted = rt.is_trusted(peer.ip());
    let (id, fresh) = match request_id::of(req.headers(), trusted) {
        Some(fresh) => (fresh, true),
        None => (req.headers()[&X_REQUEST_ID].clone(), false),
    };
    let conn = Conn {
        peer: Peer {
            addr: peer,
            tls,
            trusted,
            id: &id,
        },
        fresh,
    };
    let mut res = if rt.config.server.access_log {
        let line = access::Line {
            method: req.method().clone(),
            host: crate::http_util::request_host(&req)
                .unwrap_or("")
                .to_owned(),
            path: req.uri().path().to_owned(),
            id: id.clone(),
            started: std::time::Instant::now(),
        };
        Box::pin(access::logged(line, dispatch(shared, rt, req, conn))).await
    } else {
        dispatch(shared, rt, req, conn).await
    };
    res.headers_mut().insert(&X_REQUEST_ID, id);
    res
}

/// A request's connection, and whether its id replaced the request's own header.
#[derive(Clone, Copy)]
struct Conn<'a> {
    peer: Peer<'a>,
    fresh: bool,
}

impl Conn<'_> {
    /// The span of the request's log lines, naming its id.
    fn span(self) -> tracing::Span {
        request_id::span(self.peer.id)
    }
}

/// Routes one request to its endpoint.
///
/// The forward-auth check is awaited inline and without a span of its own
/// (see [`forward_auth::check`]), judged on the runtime `route` loaded;
/// every other endpoint's future is boxed and runs in the request's span,
/// so the future hyper stores per request stays as small as the check's
/// instead of as large as the login callback's (it is moved into place for
/// every request).
async fn dispatch(
    shared: &Shared,
    rt: arc_swap::Guard<Arc<Runtime>>,
    mut req: Request<Incoming>,
    conn: Conn<'_>,
) -> Response<Body> {
    let gw = &shared.gw;
    let (peer, tls) = (conn.peer.addr, conn.peer.tls);
    let path = req.uri().path();
    #[cfg(test)]
    if path == tests::PANIC_PATH {
        panic!("a request that panics its connection task");
    }
    let health = match shared.role {
        Role::Admin => {
            drop(rt);
            return Box::pin(admin::handle_admin(gw, &req, peer).instrument(conn.span()))
                .await
                .unwrap_or_else(error::not_found);
        }
        Role::Main { with_admin } => with_admin,
    };
    let prefix_len = {
        let p = rt.prefix();
        (path.starts_with(p) && path[p.len()..].starts_with('/')).then_some(p.len())
    };
    if let Some(n) = prefix_len {
        let method = req.method();
        if &path[n..] == "/auth" {
            let started = std::time::Instant::now();
            let res = forward_auth::check(gw, &rt, &req, conn.peer).await;
            crate::metrics::global()
                .check_duration
                .observe(started.elapsed());
            return res;
        }
        drop(rt);
        return match (&path[n..], method) {
            ("/start", &Method::GET) => {
                Box::pin(login::start(gw, &req, peer, tls).instrument(conn.span())).await
            }
            ("/callback", &Method::GET) => {
                Box::pin(login::callback(gw, &req, peer, tls).instrument(conn.span())).await
            }
            ("/sign_out", &Method::GET | &Method::POST) => {
                Box::pin(login::sign_out(gw, &req, peer, tls).instrument(conn.span())).await
            }
            ("/userinfo", &Method::GET) => {
                Box::pin(login::userinfo(gw, &req).instrument(conn.span())).await
            }
            ("/backchannel_logout", &Method::POST) => {
                Box::pin(crate::logout::backchannel(gw, req).instrument(conn.span())).await
            }
            ("/debug", &Method::GET) => {
                Box::pin(crate::debug::handle(gw, &req, peer).instrument(conn.span())).await
            }
            _ => error::not_found(),
        };
    }
    drop(rt);
    // Without an admin listener, health and metrics answer on hosts no rule
    // proxies (a proxied app's own `/healthz` reaches the app).
    if health && admin::is_served(&req) && !proxy::proxies(gw, &req) {
        if let Some(res) =
            Box::pin(admin::handle(gw, &req, admin::Detail::Public).instrument(conn.span())).await
        {
            return res;
        }
    }
    if conn.fresh {
        // The upstream sees the id the client gets back.
        req.headers_mut()
            .insert(&X_REQUEST_ID, conn.peer.id.clone());
    }
    Box::pin(
        shared
            .proxy
            .handle(gw, req, peer, tls)
            .instrument(conn.span()),
    )
    .await
}

// === idle tracking ===

/// An IO stream that tells its [`ConnCtl`] when bytes move (the idle and
/// header-read timeouts) and whether the client opened with HTTP/2.
struct Tracked<S> {
    inner: S,
    ctl: Arc<ConnCtl>,
    first_read: bool,
}

impl<S> Tracked<S> {
    fn new(inner: S, ctl: Arc<ConnCtl>) -> Self {
        Tracked {
            inner,
            ctl,
            first_read: true,
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
            if self.first_read {
                self.first_read = false;
                let n = got.len().min(H2_PREFACE_START.len());
                if got[..n] == H2_PREFACE_START[..n] {
                    self.ctl.on_h2();
                }
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

/// A running gateway (used by `main`, the demo and tests).
pub struct Running {
    /// Address of the main listener.
    pub addr: SocketAddr,
    /// Address of the admin listener, when separate.
    pub admin_addr: Option<SocketAddr>,
    /// The shared state (for reloads and tests).
    pub gateway: Arc<Gateway>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting and drains; resolves when every listener is done.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Resolves when the listeners stop on their own (never, in practice).
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

/// Binds the configured listeners (or the given pre-bound main listener) and starts serving.
pub async fn start(
    config: Config,
    main: Option<TcpListener>,
    store: Option<Arc<dyn SessionStore>>,
) -> Result<Running, StartError> {
    let tls = tls_acceptor(&config)?;
    let main = match main {
        Some(l) => l,
        None => bind(config.server.listen).await?,
    };
    let admin = match config.server.admin_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let gw = build(config, store)?;
    let (stop, rx) = watch::channel(false);
    let addr = main.local_addr().map_err(|source| StartError::Bind {
        addr: gw.runtime.load().config.server.listen,
        source,
    })?;
    let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
    let mut tasks = vec![tokio::spawn(serve(
        main,
        gw.clone(),
        Role::Main {
            with_admin: admin.is_none(),
        },
        tls,
        rx.clone(),
    ))];
    if let Some(a) = admin {
        tasks.push(tokio::spawn(serve(a, gw.clone(), Role::Admin, None, rx)));
    }
    Ok(Running {
        addr,
        admin_addr,
        gateway: gw,
        stop,
        tasks,
    })
}

/// Boxed future alias for shutdown signals.
pub type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// A request to this path panics inside its connection's task.
    pub(super) const PANIC_PATH: &str = "/__panic_in_connection_task";

    /// A gateway with room for one connection, whose idle timeout is far
    /// beyond the test's waits.
    async fn one_slot_gateway() -> Running {
        let toml =
            "[server]\nlisten = \"127.0.0.1:0\"\nmax_connections = 1\nidle_timeout = \"120s\"\n\
                    [oidc]\nissuer = \"http://127.0.0.1:9/\"\nclient_id = \"x\"\n\
                    [session]\ncookie_secure = false\n[[rule]]\npolicy = \"public\"\n";
        let env: HashMap<String, String> = HashMap::from([
            (
                "PORTCULLIS_OIDC_CLIENT_SECRET".into(),
                "client-secret".into(),
            ),
            (
                "PORTCULLIS_SESSION_SECRET".into(),
                "a-unit-test-secret-that-is-long-enough-0123".into(),
            ),
        ]);
        let cfg = Config::from_toml(toml, Path::new("."), &env).expect("config");
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        start(cfg, Some(l), None).await.unwrap()
    }

    /// Sends `GET path` on a fresh connection; the status line, if any
    /// arrives within `limit`.
    async fn status_line(addr: SocketAddr, path: &str, limit: Duration) -> Option<String> {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 512];
        match tokio::time::timeout(limit, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                Some(text.lines().next().unwrap_or("").to_owned())
            }
            _ => None,
        }
    }

    /// Issue 14: a connection task that panics must give its
    /// `max_connections` slot back at once, not when the idle timeout ends.
    #[tokio::test]
    async fn a_panicking_connection_task_releases_its_slot() {
        let gw = one_slot_gateway().await;
        let limit = Duration::from_secs(3);
        let first = status_line(gw.addr, "/oauth2/auth", limit).await;
        assert!(first.is_some(), "the gateway answers its one slot");
        // The connection's task panics: no answer, the connection is gone.
        assert_eq!(status_line(gw.addr, PANIC_PATH, limit).await, None);
        // The only slot is free again well before the idle timeout.
        for _ in 0..3 {
            let line = status_line(gw.addr, "/oauth2/auth", limit).await;
            assert!(
                line.as_deref().is_some_and(|l| l.starts_with("HTTP/1.1 ")),
                "no answer after a panicking connection: its slot was not released ({line:?})"
            );
        }
        tokio::time::timeout(Duration::from_secs(5), gw.shutdown())
            .await
            .expect("drained: no connection still counted");
    }
}

//! The accept loop of one listener: the global connection cap (a semaphore
//! permit taken before accept, held by the connection until it ends), the
//! per-client cap (`server.max_connections_per_client`), and the drain on
//! shutdown. Each accepted connection is handed to `conn`, on this runtime
//! or (`server.thread_per_core`) on a per-core worker (`workers`).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::conn::connection;
use super::workers::{self, Job};
use super::{Role, Shared};
use crate::auth::diagnostics::{self, Class};
use crate::auth::pipeline::Gateway;
use crate::base::clock;

/// Open connections per client address. An IPv6 client counts per /64, the
/// block one subscriber usually holds; an IPv4-mapped address as its IPv4.
#[derive(Default)]
pub(super) struct ClientCounts(Mutex<HashMap<IpAddr, u32>>);

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
        role,
        tls,
        builder,
        idle_timeout: limits.idle_timeout,
        header_read_timeout: limits.header_read_timeout,
        max_head: limits.max_header_bytes.max(8192),
        clients: ClientCounts::default(),
    });
    // The main listener's connections go to the per-core workers.
    let thread_per_core = limits.thread_per_core && matches!(role, Role::Main { .. });
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
        if !thread_per_core {
            tokio::spawn(connection(shared, stream, peer, stop, permit, client));
            continue;
        }
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(client.addr = %peer, error = %e, "connection lost in hand-off");
                if let Some(key) = client {
                    shared.clients.release(key);
                }
                continue;
            }
        };
        let job = Job {
            shared,
            stream,
            peer,
            stop,
            permit,
            client,
        };
        if let Err(job) = workers::hand(job) {
            tokio::spawn(workers::serve(job));
        }
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
    match crate::auth::pipeline::canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

// === impl ClientCounts ===

impl ClientCounts {
    /// Counts one more connection for `key`, unless it already has `max`.
    pub(super) fn admit(&self, key: IpAddr, max: usize) -> bool {
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
    pub(super) fn release(&self, key: IpAddr) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&key);
            }
        }
    }
}

//! Listeners and connections: accept (capped by a semaphore taken before
//! accept), optional TLS (rustls, ALPN `h2` and `http/1.1`), HTTP/1.1 and
//! HTTP/2 on the same port (bodiless HTTP/1.1 requests on the server's own
//! path, the rest on hyper-util `auto`), header-read and idle
//! timeouts, a head-size limit, routing to the endpoints, and graceful drain
//! on shutdown. Makes no authentication decision: the router hands each
//! request to `forward_auth`, `login`, `logout`, `debug`, `proxy`, `admin`
//! or `assertion`.
//!
//! This file builds the gateway's long-lived state (session store, OIDC
//! client, bearer-token keys, with their background tasks) and starts the
//! listeners; `accept` runs each listener's accept loop (with the global and
//! per-client connection caps, and the drain); `tls` loads the
//! certificates, `conn` serves one connection and keeps its timeouts with
//! one small watchdog task (the request path touches no timer, only a few
//! atomics), and `router` gives each request its id and its endpoint.
//! Called by `cli` (`serve`), the demo and the tests.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::auth::oidc::Oidc;
use crate::auth::pipeline::{Gateway, Runtime};
use crate::auth::session::memory::MemoryStore;
use crate::auth::session::redis::RedisStore;
use crate::auth::session::{SessionKeys, SessionStore};
use crate::config::{Config, StoreKind};

mod accept;
mod conn;
mod router;
mod tls;
mod workers;

pub use accept::serve;
use accept::ClientCounts;
pub use tls::{tls_acceptor, TlsError};

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
    Rules(#[from] crate::auth::rules::RulesError),
    /// TLS files could not be loaded.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// The OIDC client could not be built (its HTTP client failed to initialise).
    #[error("oidc: {0}")]
    Oidc(#[source] crate::auth::oidc::LoginError),
    /// The bearer-token verifier could not be built (its HTTP client failed
    /// to initialise).
    #[error("oidc: {0}")]
    Bearer(#[source] reqwest::Error),
    /// The session store could not be set up.
    #[error(transparent)]
    Store(#[from] crate::auth::session::StoreError),
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
    role: Role,
    tls: Option<TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    idle_timeout: Duration,
    header_read_timeout: Duration,
    /// The longest request head read (`server.max_header_bytes`, at least 8 KiB).
    max_head: usize,
    /// Open connections per client, for `server.max_connections_per_client`.
    clients: ClientCounts,
}

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
    let oidc = Arc::new(Oidc::new(config.oidc.clone()).map_err(StartError::Oidc)?);
    oidc.spawn_metadata_reload();
    let bearer =
        Arc::new(crate::auth::bearer::Bearer::new(&config.oidc).map_err(StartError::Bearer)?);
    bearer.spawn_key_reload();
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
            .time_to_live(crate::auth::session::REFRESH_LOCK)
            .build(),
        basic: crate::auth::basic::BasicAuth::new(crate::auth::basic::Limits::default()),
    }))
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
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

//! Connections to Redis for [`super::RedisStore`], from `session.redis_url`:
//! a standalone server (`redis://`, `rediss://` with TLS; ACL user and
//! password in the URL), a Sentinel-managed master
//! (`redis+sentinel://[user:password@]host:port[,host:port...]/SERVICE[/DB]`,
//! `rediss+sentinel://` for TLS; the credentials are the master's), or a
//! Redis Cluster (a list of seed URLs). TLS servers are verified against
//! the system trust store, or only against `session.redis_ca` when set.
//!
//! Standalone uses the crate's `ConnectionManager` (reconnects by itself);
//! Sentinel asks the sentinels for the current master, keeps one multiplexed
//! connection to it and asks again after a connection error (so a failover is
//! followed); Cluster uses the crate's cluster client, connected lazily.
//! Every command runs under a short timeout, so an unreachable Redis fails a
//! request quickly instead of hanging it. Errors are classified for operators
//! ([`classify`]): wrong credentials, TLS, or unreachable.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    Client, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo,
    RedisError, RedisFuture, TlsCertificates, Value,
};
use tokio::sync::Mutex;

use crate::auth::session::StoreError;
use crate::base::secret::Secret;
use crate::config::CaFile;

/// Longest wait for one command or connection attempt.
pub const OP_TIMEOUT: Duration = Duration::from_millis(1500);

/// How the store reaches Redis.
pub enum Backend {
    /// One server.
    Single {
        /// For pub/sub and probes.
        client: Client,
        /// Shared, self-reconnecting.
        conn: ConnectionManager,
    },
    /// A master found through sentinels.
    Sentinel {
        /// Resolves the master.
        sentinel: Mutex<SentinelClient>,
        /// The master's client and a connection to it, until an error.
        current: ArcSwapOption<(Client, MultiplexedConnection)>,
    },
    /// Redis Cluster.
    Cluster {
        /// Seed nodes.
        client: ClusterClient,
        /// One client per seed URL, for pub/sub (a PUBLISH reaches every node).
        seeds: Vec<Client>,
        /// Connected on first use.
        conn: ArcSwapOption<ClusterConnection>,
        /// Serialises connection attempts.
        connecting: Mutex<()>,
    },
}

/// A connection usable for one command.
#[derive(Clone)]
pub enum Conn {
    /// Standalone.
    Manager(ConnectionManager),
    /// Sentinel master.
    Mux(MultiplexedConnection),
    /// Cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Manager(c) => c.req_packed_command(cmd),
            Conn::Mux(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Mux(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Manager(c) => c.get_db(),
            Conn::Mux(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

// === impl Backend ===

impl Backend {
    /// Builds the clients from the configured URLs; connects nothing yet.
    /// With `ca` (`session.redis_ca`), TLS connections trust only its
    /// certificates instead of the system trust store: to the server, the
    /// sentinels and the master they name, and every cluster node.
    pub fn new(urls: &[Secret<String>], ca: Option<&CaFile>) -> Result<Backend, StoreError> {
        // The clients build their TLS configs on the process default provider.
        crate::base::crypto::install_default();
        let certs = ca.map(|ca| TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.pem.clone()),
        });
        match urls {
            [] => Err(StoreError::Config("session.redis_url is empty".into())),
            [one] if is_sentinel(one.expose()) => {
                let parts = sentinel_parts(one.expose())?;
                let sentinels = parts
                    .sentinels
                    .iter()
                    .map(|u| u.as_str().into_connection_info().map(|i| i.addr().clone()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(StoreError::BadUrl)?;
                let mut b = SentinelClientBuilder::new(
                    sentinels,
                    parts.service,
                    SentinelServerType::Master,
                )
                .map_err(StoreError::BadUrl)?
                .set_client_to_redis_db(parts.master.db());
                if let Some(user) = parts.master.username() {
                    b = b.set_client_to_redis_username(user);
                }
                if let Some(password) = parts.master.password() {
                    b = b.set_client_to_redis_password(password);
                }
                if parts.tls {
                    b = b.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
                    if let Some(certs) = certs {
                        b = b
                            .set_client_to_sentinel_certificates(certs.clone())
                            .set_client_to_redis_certificates(certs);
                    }
                }
                Ok(Backend::Sentinel {
                    sentinel: Mutex::new(b.build().map_err(StoreError::BadUrl)?),
                    current: ArcSwapOption::empty(),
                })
            }
            [one] => {
                let info = one
                    .expose()
                    .as_str()
                    .into_connection_info()
                    .map_err(StoreError::BadUrl)?;
                let client = open(info, certs.as_ref()).map_err(StoreError::BadUrl)?;
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(OP_TIMEOUT))
                    .set_response_timeout(Some(OP_TIMEOUT))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let conn = ConnectionManager::new_lazy_with_config(client.clone(), cfg)
                    .map_err(StoreError::BadUrl)?;
                Ok(Backend::Single { client, conn })
            }
            many => {
                let infos = many
                    .iter()
                    .map(|u| u.expose().as_str().into_connection_info())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(StoreError::BadUrl)?;
                let seeds = infos
                    .iter()
                    .cloned()
                    .map(|i| open(i, certs.as_ref()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(StoreError::BadUrl)?;
                let tls = infos
                    .iter()
                    .any(|i| matches!(i.addr(), ConnectionAddr::TcpTls { .. }));
                let mut builder = ClusterClient::builder(infos)
                    .connection_timeout(OP_TIMEOUT)
                    .response_timeout(OP_TIMEOUT)
                    .retries(1);
                if let (true, Some(certs)) = (tls, certs) {
                    builder = builder.certs(certs);
                }
                Ok(Backend::Cluster {
                    client: builder.build().map_err(StoreError::BadUrl)?,
                    seeds,
                    conn: ArcSwapOption::empty(),
                    connecting: Mutex::new(()),
                })
            }
        }
    }

    /// A connection for one command (connecting first when needed).
    pub async fn conn(&self) -> Result<Conn, RedisError> {
        match self {
            Backend::Single { conn, .. } => Ok(Conn::Manager(conn.clone())),
            Backend::Sentinel { sentinel, current } => {
                if let Some(c) = current.load_full() {
                    return Ok(Conn::Mux(c.1.clone()));
                }
                let mut s = sentinel.lock().await;
                if let Some(c) = current.load_full() {
                    return Ok(Conn::Mux(c.1.clone()));
                }
                let client = timed(s.async_get_client()).await?;
                let mux = timed(client.get_multiplexed_async_connection()).await?;
                current.store(Some(Arc::new((client, mux.clone()))));
                Ok(Conn::Mux(mux))
            }
            Backend::Cluster {
                client,
                conn,
                connecting,
                ..
            } => {
                if let Some(c) = conn.load_full() {
                    return Ok(Conn::Cluster((*c).clone()));
                }
                let _guard = connecting.lock().await;
                if let Some(c) = conn.load_full() {
                    return Ok(Conn::Cluster((*c).clone()));
                }
                let c = timed(client.get_async_connection()).await?;
                conn.store(Some(Arc::new(c.clone())));
                Ok(Conn::Cluster(c))
            }
        }
    }

    /// Forgets a connection that failed, so the next command reconnects
    /// (and, with Sentinel, asks again which server is the master).
    pub fn failed(&self, e: &RedisError) {
        if let Backend::Sentinel { current, .. } = self {
            if super::wants_reconnect(e) {
                current.store(None);
            }
        }
    }

    /// Clients a subscriber may connect to, in order of preference.
    pub async fn pubsub_clients(&self) -> Result<Vec<Client>, RedisError> {
        match self {
            Backend::Single { client, .. } => Ok(vec![client.clone()]),
            Backend::Sentinel { sentinel, .. } => {
                let mut s = sentinel.lock().await;
                Ok(vec![timed(s.async_get_client()).await?])
            }
            Backend::Cluster { seeds, .. } => Ok(seeds.clone()),
        }
    }

    /// A fresh connection and `PING`, so the error names the real cause
    /// (a shared connection would only say it is broken).
    pub async fn probe(&self) -> Result<(), RedisError> {
        match self {
            Backend::Single { client, .. } => {
                let mut c = timed(client.get_multiplexed_async_connection()).await?;
                timed(redis::cmd("PING").query_async::<()>(&mut c)).await
            }
            Backend::Sentinel { sentinel, .. } => {
                let client = {
                    let mut s = sentinel.lock().await;
                    timed(s.async_get_client()).await?
                };
                let mut c = timed(client.get_multiplexed_async_connection()).await?;
                timed(redis::cmd("PING").query_async::<()>(&mut c)).await
            }
            Backend::Cluster { client, .. } => {
                let mut c = timed(client.get_async_connection()).await?;
                timed(redis::cmd("PING").query_async::<()>(&mut c)).await
            }
        }
    }
}

/// Runs `fut` under [`OP_TIMEOUT`].
pub async fn timed<T>(
    fut: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, RedisError> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {} ms", OP_TIMEOUT.as_millis()),
        ))),
    }
}

fn is_sentinel(url: &str) -> bool {
    let lower = url.get(..17).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("redis+sentinel:") || lower.starts_with("rediss+sentinel:")
}

/// A client for one server; with `certs`, a TLS server is verified against them.
fn open(info: ConnectionInfo, certs: Option<&TlsCertificates>) -> Result<Client, RedisError> {
    match certs {
        Some(certs) if matches!(info.addr(), ConnectionAddr::TcpTls { .. }) => {
            Client::build_with_tls(info, certs.clone())
        }
        _ => Client::open(info),
    }
}

/// A sentinel URL, taken apart.
struct SentinelParts {
    /// `redis://host:port` (or `rediss://`) of each sentinel.
    sentinels: Vec<String>,
    /// The master's service name.
    service: String,
    /// Database and credentials for the master.
    master: RedisConnectionInfo,
    /// `rediss+sentinel://`: TLS to the sentinels and the master.
    tls: bool,
}

/// `redis+sentinel://[user:password@]h1:p1[,h2:p2...]/SERVICE[/DB]` → its parts.
fn sentinel_parts(url: &str) -> Result<SentinelParts, StoreError> {
    let bad = |what: &str| {
        StoreError::Config(format!(
            "session.redis_url: {what}; expected redis+sentinel://[user:password@]host:port[,host:port...]/SERVICE[/DB]"
        ))
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("not a URL"))?;
    let tls = scheme.eq_ignore_ascii_case("rediss+sentinel");
    let (authority, path) = rest.split_once('/').ok_or_else(|| bad("no service name"))?;
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut path = path.split('/');
    let service = path
        .next()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("no service name"))?;
    let db: i64 = match path.next() {
        Some(d) if !d.is_empty() => d.parse().map_err(|_| bad("the database is not a number"))?,
        _ => 0,
    };
    let node_scheme = if tls { "rediss" } else { "redis" };
    let sentinels: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| format!("{node_scheme}://{h}"))
        .collect();
    if sentinels.is_empty() {
        return Err(bad("no sentinel host"));
    }
    let mut master = format!("{node_scheme}://");
    if let Some(u) = userinfo {
        master.push_str(u);
        master.push('@');
    }
    master.push_str(&format!("localhost/{db}"));
    let info = master
        .as_str()
        .into_connection_info()
        .map_err(|_| bad("the user or password is not URL-encoded"))?;
    Ok(SentinelParts {
        sentinels,
        service: service.to_owned(),
        master: info.redis_settings().clone(),
        tls,
    })
}

/// The operator-facing error for a Redis failure.
pub fn classify(e: &RedisError) -> StoreError {
    use redis::ErrorKind as K;
    let text = describe(e);
    let lower = text.to_ascii_lowercase();
    if matches!(e.kind(), K::AuthenticationFailed)
        || e.code()
            .is_some_and(|c| matches!(c, "WRONGPASS" | "NOAUTH" | "NOPERM"))
        || lower.contains("wrongpass")
        || lower.contains("noauth")
    {
        StoreError::AuthFailed(e.clone())
    } else if lower.contains("tls")
        || lower.contains("certificate")
        || lower.contains("handshake")
        || lower.contains("invalidcontenttype")
    {
        StoreError::Tls(e.clone())
    } else {
        StoreError::Unavailable(e.clone())
    }
}

/// The error and its sources in one line (the crate's errors never contain the URL).
fn describe(e: &RedisError) -> String {
    crate::base::error::error_chain(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_parse() {
        let p =
            sentinel_parts("redis+sentinel://u:p%40ss@10.0.0.1:26379,10.0.0.2:26380/mymaster/2")
                .unwrap();
        assert_eq!(
            p.sentinels,
            vec!["redis://10.0.0.1:26379", "redis://10.0.0.2:26380"]
        );
        assert_eq!(p.service, "mymaster");
        assert_eq!(
            (p.master.username(), p.master.password(), p.master.db()),
            (Some("u"), Some("p@ss"), 2)
        );
        assert!(!p.tls);
        let p = sentinel_parts("rediss+sentinel://h:1/m").unwrap();
        assert_eq!(p.sentinels, vec!["rediss://h:1"]);
        assert!(p.tls);
        for bad in [
            "redis+sentinel://h:1",
            "redis+sentinel://h:1/",
            "redis+sentinel:///m",
            "redis+sentinel://h:1/m/x",
        ] {
            let err = sentinel_parts(bad).err().map(|e| e.to_string()).unwrap();
            assert!(err.contains("expected redis+sentinel://"), "{bad}: {err}");
        }
        assert!(is_sentinel("REDIS+SENTINEL://h/m"));
        assert!(!is_sentinel("redis://h"));
    }

    #[test]
    fn a_url_the_client_rejects_keeps_its_error_as_the_cause() {
        let url = Secret::new("redis://127.0.0.1:notaport/".to_owned());
        let e = Backend::new(&[url], None).err().expect("no port");
        let redis = std::error::Error::source(&e)
            .and_then(|c| c.downcast_ref::<RedisError>())
            .expect("the Redis client's error is the cause");
        assert_eq!(redis.kind(), redis::ErrorKind::InvalidClientConfig);
        let line = e.to_string();
        assert!(line.starts_with("session store settings: "), "{line}");
        assert_eq!(crate::base::error::error_chain(&e), line);
    }
}

//! `portcullis healthcheck`: one `GET /healthz` against the running gateway,
//! for container `HEALTHCHECK`s and service managers that have no shell,
//! curl or wget. Exit status 0 on a 200, 1 otherwise with one line naming the
//! cause (see [`HealthcheckError`]).
//!
//! Where it probes: `--url` when given; otherwise the config file's
//! `server.admin_listen` when set, else `server.listen`. The file is parsed
//! but only `[server]` is used and no secret is resolved, so the probe needs
//! neither the secret files nor the environment of the gateway. A wildcard address
//! (`0.0.0.0`, `[::]`) is probed on loopback (`127.0.0.1`, `[::1]`).
//!
//! How it probes: HTTP/1.1 with `Host` set to the IP literal probed, which
//! the admin listener's DNS-rebinding check accepts (see
//! [`admin::guard`](crate::endpoints::admin::guard)); over TLS when the probed listener
//! is the main one and `server.tls_cert` is set. The server certificate is
//! not verified: the probe sends nothing secret and reads only the status
//! line, and a certificate for the public name never matches a loopback
//! address. A main listener that requires client certificates
//! (`server.client_ca`) cannot be probed this way; give it an
//! `admin_listen`. Nor can a main listener on which a rule without `host`
//! proxies every host: health is never served there.
//!
//! Called by the `healthcheck` command; uses the config's raw types only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::validate;

/// How long the whole probe (connect, TLS, request, status line) may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The path probed when the configuration (or a `--url` without a path) names none.
const HEALTH_PATH: &str = "/healthz";

/// Why the probe failed. Each message is the one line the command prints.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    /// The config file could not be read or is not valid TOML of the
    /// expected shape (wrong path, missing volume, a typo in a key).
    #[error("cannot find where the gateway listens")]
    Config(#[source] validate::ConfigError),
    /// `server.listen` or `server.admin_listen` is not `IP:port`.
    #[error("server.{key}: {value:?} is not an IP:port address")]
    Address {
        /// `listen` or `admin_listen`.
        key: &'static str,
        /// What the file says.
        value: String,
    },
    /// `--url` is not an `http://` or `https://` URL with a host.
    #[error("--url {url:?} is not an http:// or https:// URL with a host")]
    BadUrl {
        /// What was given.
        url: String,
        /// The URL parser's reason, when it refused the text.
        #[source]
        source: Option<url::ParseError>,
    },
    /// The host of `--url` is not a name TLS can verify a certificate for.
    #[error("--url {url:?} is not an http:// or https:// URL with a host")]
    BadServerName {
        /// The URL probed.
        url: String,
        /// rustls's reason.
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// Nothing accepted the connection: the gateway is not running, still
    /// starting, or listens elsewhere.
    #[error("{url}: cannot connect (is the gateway running and listening there?)")]
    Connect {
        /// The URL probed.
        url: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed: the listener is plain HTTP, or it requires
    /// a client certificate (`server.client_ca`).
    #[error("{url}: TLS handshake failed (a listener with server.client_ca cannot be probed; set server.admin_listen)")]
    Tls {
        /// The URL probed.
        url: String,
        /// The TLS error.
        #[source]
        source: std::io::Error,
    },
    /// The connection broke, or what came back is not an HTTP response.
    #[error("{url}: no HTTP answer")]
    Protocol {
        /// The URL probed.
        url: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// No answer within [`TIMEOUT`]: the gateway is stuck or overloaded, or a
    /// firewall drops the packets.
    #[error("{url}: no answer within {secs} s", secs = TIMEOUT.as_secs())]
    Timeout {
        /// The URL probed.
        url: String,
    },
    /// The gateway answered, but not 200.
    #[error("{url}: answered {status}, not 200{hint}", hint = status_hint(*status))]
    Status {
        /// The URL probed.
        url: String,
        /// The status code received.
        status: u16,
    },
}

/// What to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https` or `http`.
    pub tls: bool,
    /// The host as it goes into `Host` (an IP literal, `[v6]`, or a name).
    pub host: String,
    /// The port.
    pub port: u16,
    /// Path and query.
    pub path: String,
}

/// Probes `/healthz` as the command line says: `url` when given, else where
/// the config file at `config` says the gateway listens.
pub async fn run(url: Option<&str>, config: Option<&Path>) -> Result<Target, HealthcheckError> {
    let target = match url {
        Some(u) => Target::from_url(u)?,
        None => Target::from_config_file(config.unwrap_or(Path::new("")))?,
    };
    target.probe().await?;
    Ok(target)
}

/// A hint for the statuses with a well-known cause.
fn status_hint(status: u16) -> &'static str {
    match status {
        421 => " (the admin listener answers only requests addressed to an IP address or localhost)",
        404 => " (is this portcullis? on the main listener health is not served on hosts a rule proxies; set server.admin_listen)",
        _ => "",
    }
}

// === impl Target ===

impl Target {
    /// Where the config file says health is served.
    pub fn from_config_file(path: &Path) -> Result<Target, HealthcheckError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            HealthcheckError::Config(validate::ConfigError::Read {
                path: PathBuf::from(path),
                source,
            })
        })?;
        Target::from_config_text(&text)
    }

    /// Where the config text says health is served.
    pub fn from_config_text(text: &str) -> Result<Target, HealthcheckError> {
        let server = validate::parse(text)
            .map_err(HealthcheckError::Config)?
            .server;
        let (key, value, tls) = match &server.admin_listen {
            Some(admin) => ("admin_listen", admin.as_str(), false),
            None => ("listen", server.listen.as_str(), server.tls_cert.is_some()),
        };
        let addr: SocketAddr = value.parse().map_err(|_| HealthcheckError::Address {
            key,
            value: value.to_owned(),
        })?;
        Ok(Target::for_listener(addr, tls))
    }

    /// The loopback form of a listener's address.
    pub fn for_listener(addr: SocketAddr, tls: bool) -> Target {
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let host = match ip {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        Target {
            tls,
            host,
            port: addr.port(),
            path: HEALTH_PATH.to_owned(),
        }
    }

    /// `--url`: `http(s)://host[:port][/path]`; no path means `/healthz`.
    pub fn from_url(text: &str) -> Result<Target, HealthcheckError> {
        let bad = || HealthcheckError::BadUrl {
            url: text.to_owned(),
            source: None,
        };
        let url = url::Url::parse(text).map_err(|e| HealthcheckError::BadUrl {
            url: text.to_owned(),
            source: Some(e),
        })?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => return Err(bad()),
        };
        let host = match url.host().ok_or_else(bad)? {
            url::Host::Domain(d) => d.to_owned(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => format!("[{ip}]"),
        };
        let port = url.port_or_known_default().ok_or_else(bad)?;
        let path = match (url.path(), url.query()) {
            ("/", None) => HEALTH_PATH.to_owned(),
            (p, None) => p.to_owned(),
            (p, Some(q)) => format!("{p}?{q}"),
        };
        Ok(Target {
            tls,
            host,
            port,
            path,
        })
    }

    /// `http(s)://host:port/path`, for messages.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}{}", self.host, self.port, self.path)
    }

    /// One request; `Ok` when the status is 200.
    pub async fn probe(&self) -> Result<(), HealthcheckError> {
        let url = self.url();
        match tokio::time::timeout(TIMEOUT, self.exchange()).await {
            Err(_) => Err(HealthcheckError::Timeout { url }),
            Ok(Err(e)) => Err(e),
            Ok(Ok(200)) => Ok(()),
            Ok(Ok(status)) => Err(HealthcheckError::Status { url, status }),
        }
    }

    /// Connects, sends the request and returns the status code.
    async fn exchange(&self) -> Result<u16, HealthcheckError> {
        let url = self.url();
        let name = self.host.trim_start_matches('[').trim_end_matches(']');
        let tcp = TcpStream::connect((name, self.port))
            .await
            .map_err(|source| HealthcheckError::Connect {
                url: url.clone(),
                source,
            })?;
        if !self.tls {
            return self.request(tcp).await;
        }
        let server_name = ServerName::try_from(name.to_owned()).map_err(|source| {
            HealthcheckError::BadServerName {
                url: url.clone(),
                source,
            }
        })?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(
            crate::endpoints::proxy::upstream::insecure(),
        ))
        .connect(server_name, tcp)
        .await
        .map_err(|source| HealthcheckError::Tls {
            url: url.clone(),
            source,
        })?;
        self.request(tls).await
    }

    /// Writes the request and reads the status line.
    async fn request<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut io: S,
    ) -> Result<u16, HealthcheckError> {
        let protocol = |source| HealthcheckError::Protocol {
            url: self.url(),
            source,
        };
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: portcullis-healthcheck\r\nConnection: close\r\n\r\n",
            self.path, self.host, self.port
        );
        io.write_all(req.as_bytes()).await.map_err(protocol)?;
        io.flush().await.map_err(protocol)?;
        let mut head = Vec::new();
        let mut buf = [0u8; 256];
        while !head.contains(&b'\n') && head.len() < 1024 {
            let n = io.read(&mut buf).await.map_err(protocol)?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        parse_status(&head).ok_or_else(|| {
            protocol(std::io::Error::other(if head.is_empty() {
                "connection closed without a response".to_owned()
            } else {
                "the answer does not start with an HTTP/1.x status line".to_owned()
            }))
        })
    }
}

/// The code of an `HTTP/1.x NNN ...` status line.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_that_does_not_parse_keeps_the_parser_error() {
        let e = Target::from_url("http://").expect_err("no host");
        let cause = std::error::Error::source(&e)
            .and_then(|c| c.downcast_ref::<url::ParseError>())
            .expect("the parser's error is the cause");
        assert_eq!(*cause, url::ParseError::EmptyHost);
        assert_eq!(
            e.to_string(),
            "--url \"http://\" is not an http:// or https:// URL with a host"
        );
        // A URL that parses but is no http(s) URL has no cause to name.
        let e = Target::from_url("ftp://host/").expect_err("not http");
        assert!(std::error::Error::source(&e).is_none(), "{e:?}");
    }

    #[test]
    fn admin_listen_wins_and_wildcards_become_loopback() {
        let t = Target::from_config_text(
            "[server]\nlisten = \"0.0.0.0:4180\"\nadmin_listen = \"0.0.0.0:9180\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n",
        )
        .unwrap();
        assert_eq!(t.url(), "http://127.0.0.1:9180/healthz");
        let t = Target::from_config_text("[server]\nlisten = \"[::]:4180\"\n").unwrap();
        assert_eq!(t.url(), "http://[::1]:4180/healthz");
        let t = Target::from_config_text(
            "[server]\nlisten = \"10.0.0.5:4443\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n",
        )
        .unwrap();
        assert_eq!(t.url(), "https://10.0.0.5:4443/healthz");
        // Without a [server] section: the default listener.
        let t = Target::from_config_text("[oidc]\nissuer = \"https://idp.example/\"\n").unwrap();
        assert_eq!(t.url(), "http://127.0.0.1:4180/healthz");
    }

    #[test]
    fn bad_config_names_the_key() {
        let e = Target::from_config_text("[server]\nadmin_listen = \"localhost:9180\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "server.admin_listen: \"localhost:9180\" is not an IP:port address"
        );
        assert!(matches!(
            Target::from_config_text("[server]\nlistn = \"x\"\n"),
            Err(HealthcheckError::Config(_))
        ));
    }

    #[test]
    fn urls() {
        let t = Target::from_url("http://127.0.0.1:9180").unwrap();
        assert_eq!(t.url(), "http://127.0.0.1:9180/healthz");
        let t = Target::from_url("https://localhost/readyz?x=1").unwrap();
        assert_eq!(t.url(), "https://localhost:443/readyz?x=1");
        let t = Target::from_url("http://[::1]:1/healthz").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("[::1]", 1));
        for bad in ["ftp://127.0.0.1/", "127.0.0.1:9180", "http://", ""] {
            assert!(Target::from_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status(b"HTTP/1.1 421"), Some(421));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 20 OK\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }
}

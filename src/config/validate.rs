//! From TOML text to a validated [`Config`].
//!
//! [`load`] reads the file, [`from_toml`] parses it into a
//! [`RawConfig`](super::raw::RawConfig) (syntax, type and unknown-key errors
//! become [`ConfigError::Parse`]), and [`validate`] checks every key,
//! collecting *all* problems before failing with [`ConfigError::Invalid`].
//! Secrets are resolved here: inline, from a `*_file` (relative paths resolve
//! against the config file's directory), or from the environment through the
//! [`Env`] trait so tests can pass a map; each secret from exactly one of
//! them (see `secrets`). No message ever contains a secret.
//!
//! Callers: [`Config::load`] / [`Config::from_toml`] (start-up, SIGHUP,
//! `portcullis check`).

mod admin;
mod headers;
pub(crate) mod keys;
mod proxy;
mod rules;
mod secrets;
mod session;
mod syntax;

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;
use url::Url;

use super::raw::{RawAccess, RawBearerIssuer, RawConfig, RawOidc, RawServer};
use super::{
    AccessConfig, BearerIssuerConfig, ClaimPath, Config, DefaultPolicy, LogFormat, OidcConfig,
    RuleConfig, ServerConfig, TlsFiles,
};
use crate::base::secret::Secret;
use secrets::Place;

/// The same header name backed by static text. A name parsed from the config
/// holds its text under a reference count, and the gateway clones these
/// names into every answer: from two worker threads that count's cache line
/// would move between cores on every request. Static names clone without
/// touching memory. Each distinct name is kept once for the process's life,
/// so reloads add nothing.
fn interned(name: HeaderName) -> HeaderName {
    static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    let text = match names.iter().find(|n| **n == name.as_str()) {
        Some(n) => *n,
        None => {
            let n: &'static str = Box::leak(name.as_str().into());
            names.push(n);
            n
        }
    };
    // `as_str` is the name's lower-case canonical form, which `from_static` accepts.
    HeaderName::from_static(text)
}

/// Environment variable holding the OIDC client secret, instead of
/// `oidc.client_secret` or `oidc.client_secret_file` (never as well).
pub const CLIENT_SECRET_ENV: &str = "PORTCULLIS_OIDC_CLIENT_SECRET";

/// Environment variable holding the session secret, instead of any of the
/// `session.secret*` keys (never as well).
pub const SESSION_SECRET_ENV: &str = "PORTCULLIS_SESSION_SECRET";

/// Environment variable holding several session secrets separated by
/// whitespace, like `session.secrets`: the first signs, all verify.
pub const SESSION_SECRETS_ENV: &str = "PORTCULLIS_SESSION_SECRETS";

/// Environment variable holding the Redis URL (several separated by
/// whitespace for Redis Cluster), instead of `session.redis_url` or
/// `session.redis_url_file`.
pub const REDIS_URL_ENV: &str = "PORTCULLIS_SESSION_REDIS_URL";

/// Environment variable holding the admin API's token, instead of
/// `server.admin_token_file`.
pub const ADMIN_TOKEN_ENV: &str = "PORTCULLIS_SERVER_ADMIN_TOKEN";

/// Environment variable holding the assertion signing keys (PEM text),
/// instead of `headers.assertion_key_file`.
pub const ASSERTION_KEY_ENV: &str = "PORTCULLIS_HEADERS_ASSERTION_KEY";

/// Shortest session secret accepted, in bytes.
pub const MIN_SESSION_SECRET_BYTES: usize = 32;

/// Smallest `server.max_header_bytes` (the HTTP/1 parser needs at least this much).
const MIN_HEADER_BYTES: u64 = 8 * 1024;

/// Largest `server.max_header_bytes`.
const MAX_HEADER_BYTES: u64 = 1024 * 1024;

/// `server.max_connections_per_client` unless set (or a quarter of `max_connections`, if smaller).
const DEFAULT_CONNECTIONS_PER_CLIENT: u64 = 256;

/// Header names that cannot carry the identity: the gateway or the proxies
/// in front of it give them another meaning.
const RESERVED_HEADERS: [&str; 22] = [
    "host",
    "cookie",
    "set-cookie",
    "authorization",
    "proxy-authorization",
    "connection",
    "keep-alive",
    "proxy-connection",
    "content-length",
    "content-type",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "location",
    "www-authenticate",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-method",
    "x-forwarded-uri",
    "x-original-url",
];

/// Where environment variables come from: the process, or a map in tests.
pub trait Env {
    /// The variable's value, `None` when unset (or not valid UTF-8).
    fn var(&self, key: &str) -> Option<String>;
}

/// Reads the process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read: wrong path, permissions, or not UTF-8.
    #[error("cannot read config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The text is not valid TOML, a value has the wrong type, or a key is
    /// unknown (typically a typo; the message suggests the closest key).
    #[error("{}", render_parse(*.line, *.column, .message))]
    Parse {
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
        /// What is wrong, with the key path when known; one line per unknown key.
        message: String,
    },
    /// The file is well-formed but some values are wrong: every problem found.
    #[error("{}", render_problems(.0))]
    Invalid(Vec<Problem>),
}

/// One invalid value: renders as `rule[3].host: "*.example..com" is not a valid host pattern`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `session.lifetime` or `rule[3].host` (zero-based index);
    /// the variable name for values read from the environment.
    pub key: String,
    /// What is wrong and, where it helps, how to fix it. Never contains a secret.
    pub message: String,
}

/// Collects problems while the sections are checked.
struct Checker<'a> {
    base_dir: &'a Path,
    env: &'a dyn Env,
    problems: Vec<Problem>,
}

// === impl Env ===

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl<S: BuildHasher> Env for HashMap<String, String, S> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

// === impl ConfigError ===

impl ConfigError {
    /// The problems of an [`ConfigError::Invalid`]; empty for other variants.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(problems) => problems,
            _ => &[],
        }
    }
}

fn render_parse(line: Option<usize>, column: Option<usize>, message: &str) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("invalid config at line {l}, column {c}: {message}"),
        (Some(l), None) => format!("invalid config at line {l}: {message}"),
        _ => format!("invalid config: {message}"),
    }
}

fn render_problems(problems: &[Problem]) -> String {
    let mut out = match problems.len() {
        1 => "invalid config (1 problem):".to_owned(),
        n => format!("invalid config ({n} problems):"),
    };
    for p in problems {
        out.push('\n');
        out.push_str(&p.to_string());
    }
    out
}

// === impl Problem ===

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

// === entry points ===

/// Reads the file at `path` and validates it. Relative `*_file` paths (and
/// TLS paths) resolve against the file's directory.
pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base_dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    from_toml(&text, base_dir, env)
}

/// Parses and validates TOML text; relative paths resolve against `base_dir`.
pub fn from_toml(text: &str, base_dir: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
    validate(parse(text)?, base_dir, env)
}

/// Parses TOML text into the raw types without validating values.
pub fn parse(text: &str) -> Result<RawConfig, ConfigError> {
    keys::parse(text)
}

/// Checks every value of `raw`, resolves secrets and builds the [`Config`];
/// fails with every problem found.
pub fn validate(raw: RawConfig, base_dir: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
    let mut c = Checker {
        base_dir,
        env,
        problems: Vec::new(),
    };
    let server = c.server(raw.server);
    let oidc = c.oidc(raw.oidc);
    let session = c.session(raw.session, server.external_url.as_ref());
    let headers = c.headers(raw.headers);
    let has_htpasswd = raw.access.htpasswd_file.is_some();
    let mut oidc = oidc;
    oidc.capture = headers.capture();
    if headers.assertion.is_some() && server.external_url.is_none() {
        c.problem(
            "headers.assertion",
            "needs server.external_url: it is the assertion's issuer (iss), and its keys are published under it",
        );
    }
    let access = c.access(raw.access);
    let proxy = c.proxy(raw.proxy);
    let rules: Vec<RuleConfig> = raw
        .rules
        .into_iter()
        .enumerate()
        .map(|(i, rule)| c.rule(i, rule, &access.networks))
        .collect();
    c.unique_rule_names(&rules);
    c.basic_auth_needs_htpasswd(&rules, has_htpasswd);
    if c.problems.is_empty() {
        Ok(Config {
            server,
            oidc,
            session,
            headers,
            access,
            proxy,
            rules,
        })
    } else {
        Err(ConfigError::Invalid(c.problems))
    }
}

// === impl Checker: helpers ===

impl Checker<'_> {
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn resolve(&self, path: PathBuf) -> PathBuf {
        if path.is_relative() {
            self.base_dir.join(path)
        } else {
            path
        }
    }

    /// Reads a secret file; one trailing newline (`\n` or `\r\n`) is removed.
    fn read_secret_file(&mut self, key: &str, path: PathBuf) -> Option<Vec<u8>> {
        let path = self.resolve(path);
        match std::fs::read(&path) {
            Ok(mut bytes) => {
                if bytes.ends_with(b"\n") {
                    bytes.pop();
                    if bytes.ends_with(b"\r") {
                        bytes.pop();
                    }
                }
                Some(bytes)
            }
            Err(e) => {
                self.problem(key, format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    }

    /// Reads a PEM CA bundle (`rule.upstream_ca`, `session.redis_ca`): at
    /// least one certificate, each one usable as a root.
    fn ca_file(&mut self, key: &str, path: PathBuf) -> Option<super::CaFile> {
        let path = self.resolve(path);
        let pem = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                self.problem(key, format!("cannot read {}: {e}", path.display()));
                return None;
            }
        };
        let certs = match rustls_pemfile::certs(&mut &pem[..]).collect::<Result<Vec<_>, _>>() {
            Ok(c) => c,
            Err(e) => {
                self.problem(key, format!("{}: not PEM: {e}", path.display()));
                return None;
            }
        };
        if certs.is_empty() {
            self.problem(
                key,
                format!("{}: no CERTIFICATE block found", path.display()),
            );
            return None;
        }
        let mut roots = rustls::RootCertStore::empty();
        for c in &certs {
            if let Err(e) = roots.add(c.clone()) {
                self.problem(
                    key,
                    format!("{}: unusable CA certificate: {e}", path.display()),
                );
                return None;
            }
        }
        Some(super::CaFile { path, pem, certs })
    }

    fn socket_addr(&mut self, key: &str, text: &str) -> Option<SocketAddr> {
        let parsed = text.parse().ok();
        if parsed.is_none() {
            self.problem(
                key,
                format!("{text:?} is not a socket address; write IP:PORT, e.g. \"0.0.0.0:4180\" or \"[::]:4180\""),
            );
        }
        parsed
    }

    fn positive(&mut self, key: &str, duration: Duration) -> Duration {
        if duration.is_zero() {
            self.problem(key, "must be longer than zero");
        }
        duration
    }

    fn claim(&mut self, key: &str, dotted: &str) -> ClaimPath {
        ClaimPath::parse(dotted).unwrap_or_else(|| {
            self.problem(
                key,
                format!("{dotted:?} is not a claim path; write a claim name or a dotted path such as \"realm_access.roles\""),
            );
            ClaimPath { dotted: String::new(), segments: Vec::new() }
        })
    }

    fn non_empty_strings(&mut self, key: &str, values: Vec<String>) -> Vec<String> {
        for (i, v) in values.iter().enumerate() {
            if v.trim().is_empty() {
                self.problem(format!("{key}[{i}]"), "is empty");
            }
        }
        values
    }

    fn domain(&mut self, key: &str, text: &str, what: &str) -> String {
        let lower = text.to_ascii_lowercase();
        if let Err(reason) = syntax::domain(&lower) {
            self.problem(key, format!("{text:?} is not a valid {what}: {reason}"));
        }
        lower
    }
}

// === impl Checker: [server] ===

impl Checker<'_> {
    fn server(&mut self, raw: RawServer) -> ServerConfig {
        let listen = self
            .socket_addr("server.listen", &raw.listen)
            .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 4180)));
        let admin_listen = raw
            .admin_listen
            .as_deref()
            .and_then(|a| self.socket_addr("server.admin_listen", a));
        if admin_listen == Some(listen) {
            self.problem(
                "server.admin_listen",
                "is the same address as server.listen; omit admin_listen to serve the admin endpoints on listen",
            );
        }
        let admin_token = self.admin_token(raw.admin_token_file, admin_listen);
        let external_url = raw
            .external_url
            .as_deref()
            .and_then(|u| self.external_url(u));
        let tls = self.tls(raw.tls_cert, raw.tls_key);
        let client_ca = raw.client_ca.map(|p| self.resolve(p));
        if client_ca.is_some() && tls.is_none() {
            self.problem(
                "server.client_ca",
                "requires tls_cert and tls_key: client certificates are checked during the TLS handshake",
            );
        }
        let trusted_proxies = match raw.trusted_proxies {
            None => vec![
                IpNet::from(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                IpNet::from(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ],
            Some(list) => list
                .iter()
                .enumerate()
                .filter_map(|(i, s)| self.ip_net(&format!("server.trusted_proxies[{i}]"), s))
                .collect(),
        };
        ServerConfig {
            listen,
            external_url,
            admin_listen,
            admin_token,
            tls,
            trusted_proxies,
            client_ca,
            prefix: self.prefix(raw.prefix),
            header_read_timeout: self
                .positive("server.header_read_timeout", raw.header_read_timeout.0),
            idle_timeout: self.positive("server.idle_timeout", raw.idle_timeout.0),
            max_header_bytes: self.max_header_bytes(raw.max_header_bytes),
            max_connections: self.max_connections(raw.max_connections),
            max_connections_per_client: self
                .max_connections_per_client(raw.max_connections_per_client, raw.max_connections),
            shutdown_grace: raw.shutdown_grace.0,
            thread_per_core: raw.thread_per_core,
            log_format: self.log_format(&raw.log_format),
            debug_endpoint: raw.debug_endpoint,
            access_log: raw.access_log,
            pages: raw.pages_dir.and_then(|dir| {
                let dir = self.resolve(dir);
                match crate::config::templates::Templates::load(&dir) {
                    Ok(t) => Some(std::sync::Arc::new(t)),
                    Err(problems) => {
                        for p in problems {
                            self.problem("server.pages_dir", p);
                        }
                        None
                    }
                }
            }),
        }
    }

    fn external_url(&mut self, text: &str) -> Option<Url> {
        match syntax::http_url(text) {
            Ok(mut url) => {
                let trimmed = url.path().trim_end_matches('/').to_owned();
                url.set_path(if trimmed.is_empty() { "/" } else { &trimmed });
                Some(url)
            }
            Err(reason) => {
                self.problem("server.external_url", reason);
                None
            }
        }
    }

    fn tls(&mut self, cert: Option<PathBuf>, key: Option<PathBuf>) -> Option<TlsFiles> {
        match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: self.resolve(cert),
                key: self.resolve(key),
            }),
            (None, None) => None,
            (Some(_), None) => {
                self.problem("server.tls_key", "is required when server.tls_cert is set");
                None
            }
            (None, Some(_)) => {
                self.problem("server.tls_cert", "is required when server.tls_key is set");
                None
            }
        }
    }

    fn ip_net(&mut self, key: &str, text: &str) -> Option<IpNet> {
        let net = text
            .parse::<IpNet>()
            .map(|n| n.trunc())
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .ok();
        if net.is_none() {
            self.problem(
                key,
                format!("{text:?} is not a CIDR (e.g. \"10.0.0.0/8\") or an IP address"),
            );
        }
        net
    }

    /// A CIDR or address for rule conditions: host bits cleared,
    /// IPv4-mapped IPv6 networks (`::ffff:10.0.0.0/104`) as IPv4, since
    /// client addresses are compared in that form.
    fn network(&mut self, key: &str, text: &str) -> Option<IpNet> {
        let net = self.ip_net(key, text)?;
        Some(match net {
            IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                    .map(IpNet::V4)
                    .unwrap_or(net),
                None => net,
            },
            other => other,
        })
    }

    fn prefix(&mut self, prefix: String) -> String {
        let reason = if !prefix.starts_with('/') {
            Some("must start with \"/\"")
        } else if prefix == "/" {
            Some("must not be \"/\": the gateway's endpoints need a prefix of their own")
        } else if prefix.ends_with('/') {
            Some("must not end with \"/\"")
        } else if prefix.contains(['?', '#']) {
            Some("must not contain '?' or '#'")
        } else if syntax::rule_path(&prefix).as_deref() != Ok(prefix.as_str()) {
            Some("must be a plain path such as \"/oauth2\" (no empty, \".\" or \"..\" segments, no escapes)")
        } else {
            None
        };
        if let Some(reason) = reason {
            self.problem("server.prefix", format!("{prefix:?} {reason}"));
        }
        prefix
    }

    fn max_header_bytes(&mut self, bytes: u64) -> usize {
        if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES).contains(&bytes) {
            self.problem(
                "server.max_header_bytes",
                format!(
                    "{bytes} is out of range; use {MIN_HEADER_BYTES} to {MAX_HEADER_BYTES} bytes"
                ),
            );
        }
        usize::try_from(bytes).unwrap_or(usize::MAX)
    }

    fn max_connections(&mut self, count: u64) -> usize {
        if count == 0 {
            self.problem("server.max_connections", "must be at least 1");
        }
        usize::try_from(count).unwrap_or(usize::MAX)
    }

    fn max_connections_per_client(&mut self, count: Option<u64>, total: u64) -> usize {
        let count = match count {
            Some(0) => {
                self.problem("server.max_connections_per_client", "must be at least 1");
                1
            }
            Some(n) => n,
            None => DEFAULT_CONNECTIONS_PER_CLIENT.min(total / 4).max(1),
        };
        usize::try_from(count).unwrap_or(usize::MAX)
    }

    fn log_format(&mut self, text: &str) -> LogFormat {
        match text {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                self.problem(
                    "server.log_format",
                    format!("{other:?} is not one of \"text\", \"json\""),
                );
                LogFormat::Text
            }
        }
    }
}

// === impl Checker: [oidc] ===

impl Checker<'_> {
    fn oidc(&mut self, raw: RawOidc) -> OidcConfig {
        let issuer = match raw.issuer {
            Some(issuer) => self.issuer(issuer),
            None => {
                self.problem(
                    "oidc.issuer",
                    "is required: the issuer URL of your identity provider",
                );
                String::new()
            }
        };
        let client_id = raw.client_id.unwrap_or_default();
        if client_id.trim().is_empty() {
            self.problem(
                "oidc.client_id",
                "is required: the client id registered at your identity provider",
            );
        }
        let client_secret = self.client_secret(raw.client_secret, raw.client_secret_file);
        if !raw.scopes.iter().any(|s| s == "openid") {
            self.problem(
                "oidc.scopes",
                "must include \"openid\"; add it, e.g. scopes = [\"openid\", \"profile\", \"email\", \"groups\"]",
            );
        }
        for (i, scope) in raw.scopes.iter().enumerate() {
            if scope.is_empty()
                || scope.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\')
            {
                self.problem(
                    format!("oidc.scopes[{i}]"),
                    format!("{scope:?} is not a scope token"),
                );
            }
        }
        let bearer_issuers = raw
            .bearer_issuers
            .into_iter()
            .enumerate()
            .map(|(i, b)| self.bearer_issuer(i, b, &issuer))
            .collect();
        OidcConfig {
            issuer,
            client_id,
            client_secret,
            scopes: raw.scopes,
            user_claim: self.claim("oidc.user_claim", &raw.user_claim),
            email_claim: self.claim("oidc.email_claim", &raw.email_claim),
            groups_claim: self.claim("oidc.groups_claim", &raw.groups_claim),
            userinfo_fallback: raw.userinfo_fallback,
            allow_unverified_email: raw.allow_unverified_email,
            extra_audiences: self.non_empty_strings("oidc.extra_audiences", raw.extra_audiences),
            bearer_issuers,
            rp_logout: raw.rp_logout,
            http_timeout: self.positive("oidc.http_timeout", raw.http_timeout.0),
            clock_leeway: raw.clock_leeway.0,
            capture: Default::default(),
        }
    }

    /// Checks the issuer but keeps it exactly as written: the trailing slash
    /// must match the `iss` claim byte for byte.
    fn issuer(&mut self, issuer: String) -> String {
        match syntax::http_url(&issuer) {
            Ok(url) if url.scheme() == "http" && !syntax::is_loopback(&url) => self.problem(
                "oidc.issuer",
                format!("{issuer:?} uses plain http: a plain-http issuer exposes tokens and the client secret on the network; use https (plain http is accepted only for localhost)"),
            ),
            Ok(_) => {}
            Err(reason) => self.problem("oidc.issuer", reason),
        }
        issuer
    }

    /// `client_secret`, `client_secret_file` or the environment; more than one is an error.
    fn client_secret(
        &mut self,
        inline: Option<Secret<String>>,
        file: Option<PathBuf>,
    ) -> Option<Secret<String>> {
        let env = self.env_secret(CLIENT_SECRET_ENV);
        let given = [
            inline.as_ref().map(|_| Place::Key("oidc.client_secret")),
            file.as_ref().map(|_| Place::Key("oidc.client_secret_file")),
            env.as_ref().map(|_| Place::Env(CLIENT_SECRET_ENV)),
        ];
        self.sole_place("oidc.client_secret", &given).ok()?;
        let (key, value) = match (inline, file) {
            (Some(secret), _) => ("oidc.client_secret", secret.expose().clone()),
            (None, Some(path)) => {
                let bytes = self.read_secret_file("oidc.client_secret_file", path)?;
                match String::from_utf8(bytes) {
                    Ok(s) => ("oidc.client_secret_file", s),
                    Err(_) => {
                        self.problem("oidc.client_secret_file", "the file is not valid UTF-8");
                        return None;
                    }
                }
            }
            (None, None) => return env.map(Secret::new),
        };
        if value.trim().is_empty() {
            self.problem(
                key,
                "is empty; remove it for a public client, or give the secret",
            );
            return None;
        }
        Some(Secret::new(value))
    }

    fn bearer_issuer(&mut self, i: usize, raw: RawBearerIssuer, main: &str) -> BearerIssuerConfig {
        let key = |field: &str| format!("oidc.bearer_issuers[{i}].{field}");
        let issuer = raw.issuer.unwrap_or_default();
        if issuer.trim().is_empty() {
            self.problem(
                key("issuer"),
                "is required: the `iss` value of the accepted tokens",
            );
        } else if issuer == main {
            self.problem(
                key("issuer"),
                "is the main oidc.issuer, whose tokens are already accepted; use oidc.extra_audiences for more audiences",
            );
        }
        let jwks_url = match raw.jwks_url {
            Some(u) => match syntax::http_url(&u) {
                Ok(url) => Some(url),
                Err(reason) => {
                    self.problem(key("jwks_url"), reason);
                    None
                }
            },
            None => {
                if !issuer.is_empty() && syntax::http_url(&issuer).is_err() {
                    self.problem(
                        key("jwks_url"),
                        "is required when the issuer is not an http(s) URL its keys can be discovered from",
                    );
                }
                None
            }
        };
        if raw.audiences.is_empty() {
            self.problem(key("audiences"), "must list at least one audience");
        }
        if raw.typ.as_deref().is_some_and(|t| t.trim().is_empty()) {
            self.problem(
                key("typ"),
                "is empty; remove it, or name the required type such as \"at+jwt\"",
            );
        }
        BearerIssuerConfig {
            issuer,
            jwks_url,
            audiences: self.non_empty_strings(&key("audiences"), raw.audiences),
            user_claim: self.claim(&key("user_claim"), &raw.user_claim),
            email_claim: self.claim(&key("email_claim"), &raw.email_claim),
            groups_claim: self.claim(&key("groups_claim"), &raw.groups_claim),
            typ: raw.typ,
        }
    }
}

// === impl Checker: [access] ===

impl Checker<'_> {
    fn access(&mut self, raw: RawAccess) -> AccessConfig {
        let default = match raw.default.as_str() {
            "deny" => DefaultPolicy::Deny,
            "authenticated" => DefaultPolicy::Authenticated,
            other => {
                self.problem(
                    "access.default",
                    format!("{other:?} is not one of \"deny\", \"authenticated\""),
                );
                DefaultPolicy::Deny
            }
        };
        let allowed_redirect_domains = raw
            .allowed_redirect_domains
            .iter()
            .enumerate()
            .map(|(i, d)| self.redirect_domain(&format!("access.allowed_redirect_domains[{i}]"), d))
            .collect();
        let networks = raw
            .networks
            .iter()
            .map(|(name, list)| {
                let key = format!("access.networks.{name}");
                if list.is_empty() {
                    self.problem(
                        &key,
                        "is empty; a list of CIDRs or addresses, e.g. [\"192.168.0.0/16\"]",
                    );
                }
                let nets = list
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| self.network(&format!("{key}[{i}]"), s))
                    .collect();
                (name.clone(), nets)
            })
            .collect();
        let htpasswd = self.htpasswd(raw.htpasswd_file, raw.htpasswd_groups_file);
        AccessConfig {
            default,
            allowed_redirect_domains,
            networks,
            htpasswd,
        }
    }

    /// Reads `access.htpasswd_file` and `access.htpasswd_groups_file`; each
    /// problem (with its line number) is reported under the file's key.
    fn htpasswd(
        &mut self,
        file: Option<PathBuf>,
        groups: Option<PathBuf>,
    ) -> Option<std::sync::Arc<crate::config::htpasswd::Users>> {
        let Some(file) = file.map(|f| self.resolve(f)) else {
            if groups.is_some() {
                self.problem(
                    "access.htpasswd_groups_file",
                    "names the groups of htpasswd users, but access.htpasswd_file is not set",
                );
            }
            return None;
        };
        let groups = groups.map(|g| self.resolve(g));
        match crate::config::htpasswd::load(&file, groups.as_deref()) {
            Ok(users) => Some(std::sync::Arc::new(users)),
            Err(problems) => {
                for p in problems {
                    let in_groups = match &p {
                        crate::config::htpasswd::FileProblem::Unreadable { path, .. }
                        | crate::config::htpasswd::FileProblem::Line { path, .. } => groups
                            .as_ref()
                            .is_some_and(|g| g.display().to_string() == *path),
                    };
                    let key = if in_groups {
                        "access.htpasswd_groups_file"
                    } else {
                        "access.htpasswd_file"
                    };
                    self.problem(key, p.to_string());
                }
                None
            }
        }
    }

    /// A rule with `basic_auth` needs `access.htpasswd_file`.
    fn basic_auth_needs_htpasswd(&mut self, rules: &[RuleConfig], has_htpasswd: bool) {
        if has_htpasswd {
            return;
        }
        for (i, _) in rules.iter().enumerate().filter(|(_, r)| r.basic_auth) {
            self.problem(
                format!("rule[{i}].basic_auth"),
                "needs access.htpasswd_file (the users and their bcrypt or argon2 hashes)",
            );
        }
    }

    /// `.example.com` (domain and subdomains) or `example.com` (exactly), lower-cased.
    fn redirect_domain(&mut self, key: &str, text: &str) -> String {
        let lower = text.to_ascii_lowercase();
        let reason = if lower.contains("://") {
            Some("must be a domain without a scheme, e.g. \".example.com\"")
        } else if lower.contains(['/', '?', '#']) {
            Some("must be a domain without a path, e.g. \".example.com\"")
        } else if lower.contains(':') {
            Some("must be a domain without a port: any port is allowed")
        } else if lower.starts_with("*.") {
            Some("write \".example.com\" for a domain and all its subdomains")
        } else {
            None
        };
        match reason {
            Some(reason) => self.problem(key, format!("{text:?} {reason}")),
            None => {
                let bare = lower.strip_prefix('.').unwrap_or(&lower);
                if let Err(reason) = syntax::domain(bare) {
                    self.problem(key, format!("{text:?} is not a valid domain: {reason}"));
                }
            }
        }
        lower
    }
}

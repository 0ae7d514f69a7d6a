//! From TOML text to a validated [`Config`].
//!
//! [`load`] reads the file, [`from_toml`] parses it into a
//! [`RawConfig`](super::raw::RawConfig) (syntax, type and unknown-key errors
//! become [`ConfigError::Parse`]), and [`validate`] checks every key,
//! collecting *all* problems before failing with [`ConfigError::Invalid`].
//! Secrets are resolved here: inline, from a `*_file` (relative paths resolve
//! against the config file's directory), or from the environment through the
//! [`Env`] trait so tests can pass a map. No message ever contains a secret.
//!
//! Callers: [`Config::load`] / [`Config::from_toml`] (start-up, SIGHUP,
//! `portcullis check`).

mod keys;
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

use super::raw::{
    RawAccess, RawBearerIssuer, RawConfig, RawHeaders, RawOidc, RawRule, RawServer, RawSession,
};
use super::{
    AccessConfig, BearerIssuerConfig, ClaimPath, Config, DefaultPolicy, HeadersConfig, LogFormat,
    OidcConfig, Policy, RuleConfig, ServerConfig, SessionConfig, StoreKind, TlsFiles,
};
use crate::secret::Secret;

/// Environment variable holding the OIDC client secret, used when neither
/// `oidc.client_secret` nor `oidc.client_secret_file` is set.
pub const CLIENT_SECRET_ENV: &str = "PORTCULLIS_OIDC_CLIENT_SECRET";

/// Environment variable holding the session secret, used when none of
/// `session.secret`, `session.secret_file`, `session.secrets` is set.
pub const SESSION_SECRET_ENV: &str = "PORTCULLIS_SESSION_SECRET";

/// Shortest session secret accepted, in bytes.
pub const MIN_SESSION_SECRET_BYTES: usize = 32;

/// Smallest `server.max_header_bytes` (the HTTP/1 parser needs at least this much).
const MIN_HEADER_BYTES: u64 = 8 * 1024;

/// Largest `server.max_header_bytes`.
const MAX_HEADER_BYTES: u64 = 1024 * 1024;

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
    let access = c.access(raw.access);
    let rules: Vec<RuleConfig> = raw
        .rules
        .into_iter()
        .enumerate()
        .map(|(i, rule)| c.rule(i, rule))
        .collect();
    c.unique_rule_names(&rules);
    if c.problems.is_empty() {
        Ok(Config {
            server,
            oidc,
            session,
            headers,
            access,
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
            tls,
            trusted_proxies,
            client_ca,
            prefix: self.prefix(raw.prefix),
            header_read_timeout: self
                .positive("server.header_read_timeout", raw.header_read_timeout.0),
            idle_timeout: self.positive("server.idle_timeout", raw.idle_timeout.0),
            max_header_bytes: self.max_header_bytes(raw.max_header_bytes),
            max_connections: self.max_connections(raw.max_connections),
            shutdown_grace: raw.shutdown_grace.0,
            log_format: self.log_format(&raw.log_format),
            debug_endpoint: raw.debug_endpoint,
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
            extra_audiences: self.non_empty_strings("oidc.extra_audiences", raw.extra_audiences),
            bearer_issuers,
            rp_logout: raw.rp_logout,
            http_timeout: self.positive("oidc.http_timeout", raw.http_timeout.0),
            clock_leeway: raw.clock_leeway.0,
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

    /// `client_secret`, else `client_secret_file`, else the environment; both keys is an error.
    fn client_secret(
        &mut self,
        inline: Option<Secret<String>>,
        file: Option<PathBuf>,
    ) -> Option<Secret<String>> {
        let (key, value) = match (inline, file) {
            (Some(_), Some(_)) => {
                self.problem(
                    "oidc.client_secret",
                    "set either client_secret or client_secret_file, not both",
                );
                return None;
            }
            (Some(secret), None) => ("oidc.client_secret", secret.expose().clone()),
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
            (None, None) => {
                return self
                    .env
                    .var(CLIENT_SECRET_ENV)
                    .filter(|s| !s.is_empty())
                    .map(Secret::new)
            }
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
        BearerIssuerConfig {
            issuer,
            jwks_url,
            audiences: self.non_empty_strings(&key("audiences"), raw.audiences),
            user_claim: self.claim(&key("user_claim"), &raw.user_claim),
            email_claim: self.claim(&key("email_claim"), &raw.email_claim),
            groups_claim: self.claim(&key("groups_claim"), &raw.groups_claim),
        }
    }
}

// === impl Checker: [session] ===

impl Checker<'_> {
    fn session(&mut self, raw: RawSession, external_url: Option<&Url>) -> SessionConfig {
        let secrets = self.session_secrets(raw.secret, raw.secret_file, raw.secrets);
        let cookie_domain = raw
            .cookie_domain
            .as_deref()
            .map(|d| self.cookie_domain(d, external_url));
        self.cookie(
            &raw.cookie_name,
            raw.cookie_secure,
            cookie_domain.is_some(),
            external_url,
        );
        let lifetime = self.positive("session.lifetime", raw.lifetime.0);
        let idle_timeout = raw.idle_timeout.map(|idle| {
            let idle = self.positive("session.idle_timeout", idle.0);
            if !lifetime.is_zero() && idle >= lifetime {
                self.problem(
                    "session.idle_timeout",
                    "must be shorter than session.lifetime",
                );
            }
            idle
        });
        let store = match raw.store.as_str() {
            "memory" => StoreKind::Memory,
            "redis" => StoreKind::Redis,
            other => {
                self.problem(
                    "session.store",
                    format!("{other:?} is not one of \"memory\", \"redis\""),
                );
                StoreKind::Memory
            }
        };
        let redis_urls = self.redis_urls(store, raw.redis_url);
        SessionConfig {
            cookie_name: raw.cookie_name,
            cookie_domain,
            cookie_secure: raw.cookie_secure,
            secrets,
            lifetime,
            idle_timeout,
            refresh: raw.refresh,
            store,
            redis_urls,
        }
    }

    /// Exactly one of `secret`, `secret_file`, `secrets`; else the environment.
    fn session_secrets(
        &mut self,
        secret: Option<Secret<String>>,
        secret_file: Option<PathBuf>,
        secrets: Option<Vec<Secret<String>>>,
    ) -> Vec<Secret<Vec<u8>>> {
        let set: Vec<&str> = [
            secret.as_ref().map(|_| "secret"),
            secret_file.as_ref().map(|_| "secret_file"),
            secrets.as_ref().map(|_| "secrets"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if set.len() > 1 {
            self.problem(
                "session.secret",
                format!(
                    "set only one of {} (list several secrets for rotation in `secrets`)",
                    set.join(", ")
                ),
            );
            return Vec::new();
        }
        let candidates: Vec<(String, Vec<u8>)> = if let Some(s) = secret {
            vec![("session.secret".to_owned(), s.expose().as_bytes().to_vec())]
        } else if let Some(path) = secret_file {
            let bytes = self.read_secret_file("session.secret_file", path);
            bytes
                .map(|b| ("session.secret_file".to_owned(), b))
                .into_iter()
                .collect()
        } else if let Some(list) = secrets {
            if list.is_empty() {
                self.problem("session.secrets", "is empty; list at least one secret");
            }
            list.iter()
                .enumerate()
                .map(|(i, s)| {
                    (
                        format!("session.secrets[{i}]"),
                        s.expose().as_bytes().to_vec(),
                    )
                })
                .collect()
        } else if let Some(s) = self.env.var(SESSION_SECRET_ENV).filter(|s| !s.is_empty()) {
            vec![(SESSION_SECRET_ENV.to_owned(), s.into_bytes())]
        } else {
            self.problem(
                "session.secret",
                format!("is required: set secret_file, secret, secrets or the {SESSION_SECRET_ENV} environment variable to at least {MIN_SESSION_SECRET_BYTES} random bytes (`portcullis gen-secret` prints one)"),
            );
            Vec::new()
        };
        candidates
            .into_iter()
            .filter_map(|(key, bytes)| {
                if bytes.len() < MIN_SESSION_SECRET_BYTES {
                    self.problem(
                        key,
                        format!("is too short ({} bytes); at least {MIN_SESSION_SECRET_BYTES} bytes are required (`portcullis gen-secret` prints one)", bytes.len()),
                    );
                    return None;
                }
                Some(Secret::new(bytes))
            })
            .collect()
    }

    /// Lower-cased, leading dot dropped; the external URL's host must be inside it.
    fn cookie_domain(&mut self, text: &str, external_url: Option<&Url>) -> String {
        let stripped = text.strip_prefix('.').unwrap_or(text);
        let domain = self.domain("session.cookie_domain", stripped, "cookie domain");
        if let Some(host) = external_url.and_then(Url::host_str) {
            let host = host.to_ascii_lowercase();
            if host != domain && !host.ends_with(&format!(".{domain}")) {
                self.problem(
                    "session.cookie_domain",
                    format!("{text:?} does not contain the host of server.external_url ({host}); browsers would refuse the cookie"),
                );
            }
        }
        domain
    }

    fn cookie(&mut self, name: &str, secure: bool, has_domain: bool, external_url: Option<&Url>) {
        if !syntax::is_cookie_name(name) {
            self.problem(
                "session.cookie_name",
                format!("{name:?} is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~ only)"),
            );
        }
        if (name.starts_with("__Host-") || name.starts_with("__Secure-")) && !secure {
            self.problem(
                "session.cookie_name",
                "a __Host- or __Secure- cookie requires cookie_secure = true",
            );
        }
        if name.starts_with("__Host-") && has_domain {
            self.problem(
                "session.cookie_name",
                "a __Host- cookie cannot have a cookie_domain; remove one of them",
            );
        }
        match external_url {
            Some(url) if url.scheme() == "https" && !secure => self.problem(
                "session.cookie_secure",
                "is false but server.external_url is https: the session cookie would also travel over plain http; remove cookie_secure = false",
            ),
            Some(url) if url.scheme() == "http" && secure && !syntax::is_loopback(url) => self.problem(
                "session.cookie_secure",
                "is true but server.external_url is plain http: browsers would not store the session cookie; use https, or cookie_secure = false for development",
            ),
            _ => {}
        }
    }

    fn redis_urls(
        &mut self,
        store: StoreKind,
        raw: Option<super::raw::RawRedisUrl>,
    ) -> Vec<Secret<String>> {
        let Some(raw) = raw else {
            if store == StoreKind::Redis {
                self.problem(
                    "session.redis_url",
                    "is required when store = \"redis\", e.g. redis_url = \"redis://127.0.0.1:6379/0\"",
                );
            }
            return Vec::new();
        };
        if store != StoreKind::Redis {
            self.problem(
                "session.redis_url",
                "is set but session.store is \"memory\": sessions would not be shared; set store = \"redis\" or remove redis_url",
            );
        }
        let urls = raw.urls();
        let cluster = urls.len() > 1 || matches!(raw, super::raw::RawRedisUrl::Cluster(_));
        if urls.is_empty() {
            self.problem(
                "session.redis_url",
                "is an empty list; give at least one URL",
            );
        }
        for (key, url) in &urls {
            self.redis_url(key, url.expose(), cluster);
        }
        urls.into_iter().map(|(_, url)| url.clone()).collect()
    }

    /// Never echoes the URL: it may carry a password.
    fn redis_url(&mut self, key: &str, url: &str, cluster: bool) {
        const SCHEMES: &str = "use redis://, rediss:// or redis+sentinel://";
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("redis" | "rediss") => {
                if Url::parse(url)
                    .ok()
                    .and_then(|u| u.host_str().map(str::is_empty))
                    != Some(false)
                {
                    self.problem(key, "is not a valid Redis URL with a host (value not shown: it may contain a password)");
                }
            }
            Some("redis+sentinel" | "rediss+sentinel") => {
                if cluster {
                    self.problem(key, "a sentinel URL cannot be part of a Redis Cluster list; give it as a single string");
                }
                if url
                    .split_once("://")
                    .is_some_and(|(_, rest)| rest.is_empty())
                {
                    self.problem(key, "names no sentinel host");
                }
            }
            Some(_) => self.problem(key, format!("has an unsupported scheme; {SCHEMES}")),
            None => self.problem(
                key,
                format!("is not a URL; {SCHEMES}, e.g. \"redis://127.0.0.1:6379/0\""),
            ),
        }
    }
}

// === impl Checker: [headers], [access] ===

impl Checker<'_> {
    fn headers(&mut self, raw: RawHeaders) -> HeadersConfig {
        let user = self.identity_header("headers.user", &raw.user);
        let email = self.identity_header("headers.email", &raw.email);
        let groups = self.identity_header("headers.groups", &raw.groups);
        // Proxies treat `_` and `-` alike, so "X_Auth_User" collides with "X-Auth-User".
        let norm = |h: &str| h.to_ascii_lowercase().replace('_', "-");
        let named = [
            ("headers.user", &raw.user),
            ("headers.email", &raw.email),
            ("headers.groups", &raw.groups),
        ];
        for (i, (key, name)) in named.iter().enumerate() {
            if let Some((other, _)) = named[..i].iter().find(|(_, n)| norm(n) == norm(name)) {
                self.problem(*key, format!("{name:?} is the same header as {other}; the three identity headers must differ"));
            }
        }
        let strip = raw
            .strip
            .iter()
            .enumerate()
            .filter_map(|(i, h)| self.header_name(&format!("headers.strip[{i}]"), h))
            .collect();
        HeadersConfig {
            user: user.unwrap_or(HeaderName::from_static("x-auth-user")),
            email: email.unwrap_or(HeaderName::from_static("x-auth-email")),
            groups: groups.unwrap_or(HeaderName::from_static("x-auth-groups")),
            strip,
            pass_access_token: raw.pass_access_token,
            pass_authorization: raw.pass_authorization,
        }
    }

    fn header_name(&mut self, key: &str, text: &str) -> Option<HeaderName> {
        let name = HeaderName::from_bytes(text.as_bytes()).ok();
        if name.is_none() {
            self.problem(key, format!("{text:?} is not a valid header name"));
        }
        name
    }

    fn identity_header(&mut self, key: &str, text: &str) -> Option<HeaderName> {
        let name = self.header_name(key, text)?;
        if RESERVED_HEADERS.contains(&name.as_str()) {
            self.problem(
                key,
                format!("{text:?} has a meaning of its own in HTTP and cannot carry the identity"),
            );
        }
        Some(name)
    }

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
        AccessConfig {
            default,
            allowed_redirect_domains,
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

// === impl Checker: [[rule]] ===

impl Checker<'_> {
    fn rule(&mut self, i: usize, raw: RawRule) -> RuleConfig {
        let key = |field: &str| format!("rule[{i}].{field}");
        let name = match raw.name {
            Some(name) if name.trim().is_empty() => {
                self.problem(key("name"), "is empty; remove it to use the default name");
                name
            }
            Some(name) => name,
            None => format!("rule[{i}]"),
        };
        let host = raw.host.and_then(|h| match syntax::host_pattern(&h) {
            Ok(pattern) => Some(pattern),
            Err(reason) => {
                self.problem(
                    key("host"),
                    format!("{h:?} is not a valid host pattern: {reason}"),
                );
                None
            }
        });
        let path = syntax::rule_path(&raw.path).unwrap_or_else(|reason| {
            self.problem(key("path"), format!("{:?} {reason}", raw.path));
            "/".to_owned()
        });
        let methods = raw.methods.map(|list| self.methods(&key("methods"), &list));
        let policy = match raw.policy.as_str() {
            "public" => Policy::Public,
            "authenticated" => Policy::Authenticated,
            "deny" => Policy::Deny,
            other => {
                self.problem(
                    key("policy"),
                    format!("{other:?} is not one of \"public\", \"authenticated\", \"deny\""),
                );
                Policy::Authenticated
            }
        };
        let emails = raw
            .emails
            .iter()
            .enumerate()
            .map(|(n, e)| self.email(&format!("{}[{n}]", key("emails")), e))
            .collect();
        let email_domains = raw
            .email_domains
            .iter()
            .enumerate()
            .map(|(n, d)| {
                let bare = d.strip_prefix('@').unwrap_or(d);
                self.domain(
                    &format!("{}[{n}]", key("email_domains")),
                    bare,
                    "e-mail domain",
                )
            })
            .collect();
        let upstream = raw.upstream.and_then(|u| match syntax::http_url(&u) {
            Ok(url) => Some(url),
            Err(reason) => {
                self.problem(key("upstream"), reason);
                None
            }
        });
        let rule = RuleConfig {
            name,
            host,
            path,
            methods,
            policy,
            groups: self.non_empty_strings(&key("groups"), raw.groups),
            users: self.non_empty_strings(&key("users"), raw.users),
            emails,
            email_domains,
            upstream,
            bearer: raw.bearer,
        };
        if rule.policy != Policy::Authenticated && rule.has_subjects() {
            self.problem(
                key("policy"),
                format!("{:?} ignores groups, users, emails and email_domains; remove them or use policy = \"authenticated\"", raw.policy),
            );
        }
        rule
    }

    fn methods(&mut self, key: &str, list: &[String]) -> Vec<http::Method> {
        if list.is_empty() {
            self.problem(
                key,
                "methods = [] can never match; remove the key to match any method",
            );
        }
        let mut out: Vec<http::Method> = Vec::new();
        for (n, text) in list.iter().enumerate() {
            match syntax::method(text) {
                Some(m) if !out.contains(&m) => out.push(m),
                Some(_) => {}
                None => self.problem(
                    format!("{key}[{n}]"),
                    format!("{text:?} is not an HTTP method"),
                ),
            }
        }
        out
    }

    fn email(&mut self, key: &str, text: &str) -> String {
        let lower = text.to_ascii_lowercase();
        match lower.split_once('@') {
            Some((local, domain)) if !local.is_empty() && !domain.contains('@') => {
                if let Err(reason) = syntax::domain(domain) {
                    self.problem(
                        key,
                        format!("{text:?} is not a valid e-mail address: its domain: {reason}"),
                    );
                }
            }
            _ => self.problem(key, format!("{text:?} is not an e-mail address")),
        }
        lower
    }

    fn unique_rule_names(&mut self, rules: &[RuleConfig]) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            if let Some(first) = seen.insert(&rule.name, i) {
                self.problem(
                    format!("rule[{i}].name"),
                    format!("{:?} is already the name of rule[{first}]", rule.name),
                );
                seen.insert(&rule.name, first);
            }
        }
    }
}

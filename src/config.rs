//! Validated, immutable configuration.
//!
//! Loading happens in two steps (see `raw` and `validate`): serde reads the TOML
//! into [`raw::RawConfig`] exactly as the operator wrote it, then
//! [`validate::validate`] checks every key, collects *all* problems, resolves
//! secrets (inline, `*_file`, environment) and produces the [`Config`] defined
//! here. Nothing in this module performs network I/O: OIDC discovery belongs to
//! `oidc`, the session store probe to `session`.
//!
//! The files the config names are read and checked while it loads, so a
//! problem in one is a config problem (at start-up, on SIGHUP and in
//! `portcullis check`), and the validated config holds what they contain: the
//! page templates ([`templates`]), the assertion signing keys
//! ([`assertion_keys`]) and the htpasswd users ([`htpasswd`], checked by
//! `basic`). This module sits low in the crate: it uses only `identity`, `secret` and
//! `http_util`, and every other module may use it.
//!
//! Callers: `main`/`cli` (load at start-up and on SIGHUP), `server` (listeners),
//! `rules` (compiles [`RuleConfig`]s), `oidc`, `session`, `forward_auth`.

pub(crate) mod assertion_keys;
pub mod duration;
pub mod htpasswd;
pub(crate) mod raw;
pub mod reload;
pub(crate) mod templates;
#[cfg(test)]
mod tests;
pub(crate) mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Method};
use ipnet::IpNet;
use url::Url;

use crate::base::secret::Secret;

pub use crate::base::identity::ClaimPath;
pub use validate::{ConfigError, Env, Problem, ProcessEnv};

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`
    pub server: ServerConfig,
    /// `[oidc]`
    pub oidc: OidcConfig,
    /// `[session]`
    pub session: SessionConfig,
    /// `[headers]`
    pub headers: HeadersConfig,
    /// `[access]`
    pub access: AccessConfig,
    /// `[proxy]`
    pub proxy: ProxyConfig,
    /// `[[rule]]`, in file order.
    pub rules: Vec<RuleConfig>,
}

/// `[server]`: listeners, TLS, trust and connection limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Main listener: forward auth, `/oauth2/*`, proxied hosts. Default `0.0.0.0:4180`.
    pub listen: SocketAddr,
    /// Base URL of `/oauth2/*` for domain-wide SSO; `None` = single-app mode
    /// (the original request's own scheme and host are used). Never has a trailing slash in its path.
    pub external_url: Option<Url>,
    /// Listener for `/healthz`, `/readyz`, `/metrics`; `None` = served on `listen`.
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token of the admin API, from `server.admin_token_file`: when
    /// set, every request on `admin_listen` except `/healthz` and `/readyz`
    /// needs `Authorization: Bearer <token>`. Always set when `admin_listen`
    /// is not a loopback address. Read at start-up; a change needs a restart.
    pub admin_token: Option<Secret<String>>,
    /// Terminate TLS with these PEM files.
    pub tls: Option<TlsFiles>,
    /// Peers whose `X-Forwarded-*` / `X-Original-*` headers are believed.
    /// Default: loopback (`127.0.0.1/32`, `::1/128`).
    pub trusted_proxies: Vec<IpNet>,
    /// Require a client certificate signed by this CA (PEM).
    pub client_ca: Option<PathBuf>,
    /// Path prefix of the gateway's own endpoints. Default `/oauth2`, never ends with `/`.
    pub prefix: String,
    /// Time allowed to read a request's headers. Default 10 s.
    pub header_read_timeout: Duration,
    /// Close a keep-alive connection idle this long. Default 90 s.
    pub idle_timeout: Duration,
    /// Largest request head accepted (bytes). Default 16 KiB. Larger heads get 431.
    pub max_header_bytes: usize,
    /// Most concurrent connections per listener. Default 10 000.
    pub max_connections: usize,
    /// Most concurrent connections from one client address (an IPv6 client:
    /// its /64); peers in `trusted_proxies` are exempt. Default 256, or a
    /// quarter of `max_connections` when that is smaller (at least 1).
    pub max_connections_per_client: usize,
    /// How long SIGTERM waits for in-flight requests. Default 10 s.
    pub shutdown_grace: Duration,
    /// Serve the main listener's connections on one single-threaded event
    /// loop per core (each connection stays on one thread), instead of on
    /// the shared work-stealing runtime. Default true.
    pub thread_per_core: bool,
    /// `text` (default) or `json`.
    pub log_format: LogFormat,
    /// Serve `GET <prefix>/debug` to authenticated users. Default false.
    pub debug_endpoint: bool,
    /// One log line per request (target `portcullis::access`). Default false.
    pub access_log: bool,
    /// `pages_dir`, read and checked at load time: the operator's page
    /// templates. `None` = the built-in pages.
    pub pages: Option<std::sync::Arc<templates::Templates>>,
}

/// PEM certificate chain and private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// `server.tls_cert`
    pub cert: PathBuf,
    /// `server.tls_key`
    pub key: PathBuf,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[oidc]`: the identity provider the login flow uses.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Issuer exactly as written (compared byte for byte with the discovery document).
    pub issuer: String,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret; `None` for public clients (PKCE only).
    pub client_secret: Option<Secret<String>>,
    /// Scopes requested. Default `openid profile email groups`; always contains `openid`.
    pub scopes: Vec<String>,
    /// Claim naming the user. Default `preferred_username` (falls back to `sub` when absent).
    pub user_claim: ClaimPath,
    /// Claim holding the e-mail address. Default `email`.
    pub email_claim: ClaimPath,
    /// Claim holding the groups (array of strings, or one string). Default `groups`.
    pub groups_claim: ClaimPath,
    /// Fetch userinfo when the ID token lacks the email or groups claim. Default true.
    pub userinfo_fallback: bool,
    /// Use e-mail addresses whose `email_verified` claim is not `true` (ID
    /// tokens, userinfo, bearer JWTs). Default false: such an address is no
    /// address (rules on emails and domains do not match, the email header is empty).
    pub allow_unverified_email: bool,
    /// More audiences accepted on bearer tokens.
    pub extra_audiences: Vec<String>,
    /// More issuers whose bearer JWTs are accepted.
    pub bearer_issuers: Vec<BearerIssuerConfig>,
    /// Continue sign-out at the IdP's end_session_endpoint. Default false.
    pub rp_logout: bool,
    /// Timeout of every call to the IdP. Default 10 s.
    pub http_timeout: Duration,
    /// Skew tolerated on `exp`/`iat`/`nbf`. Default 60 s.
    pub clock_leeway: Duration,
    /// Claims an identity keeps beyond user, e-mail and groups (login and
    /// bearer tokens alike), filled from `[headers]`.
    pub capture: crate::base::identity::Capture,
}

/// `[[oidc.bearer_issuers]]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerIssuerConfig {
    /// Expected `iss`.
    pub issuer: String,
    /// Where the keys are; `None` = discover from the issuer.
    pub jwks_url: Option<Url>,
    /// Accepted audiences (at least one).
    pub audiences: Vec<String>,
    /// Claim naming the user. Default `sub`.
    pub user_claim: ClaimPath,
    /// Default `email`.
    pub email_claim: ClaimPath,
    /// Default `groups`.
    pub groups_claim: ClaimPath,
    /// Required JOSE header `typ` (e.g. `at+jwt`); `None` = not checked.
    pub typ: Option<String>,
}

/// `[session]`
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Default `_portcullis`.
    pub cookie_name: String,
    /// Domain attribute; `None` = host-only cookie.
    pub cookie_domain: Option<String>,
    /// Secure attribute. Default true.
    pub cookie_secure: bool,
    /// Each at least 32 bytes. The first signs, all verify.
    pub secrets: Vec<Secret<Vec<u8>>>,
    /// Absolute lifetime. Default 12 h.
    pub lifetime: Duration,
    /// Sliding idle timeout; `None` = none.
    pub idle_timeout: Option<Duration>,
    /// Renew claims with the refresh token. Default false.
    pub refresh: bool,
    /// Where sessions live.
    pub store: StoreKind,
    /// Redis URLs (one, or several for a cluster). Empty unless `store = "redis"`.
    pub redis_urls: Vec<Secret<String>>,
    /// `session.redis_ca`, read at load time: the only roots trusted for
    /// `rediss://` servers. `None` = the system trust store.
    pub redis_ca: Option<CaFile>,
    /// With Redis: answer recently verified sessions from process memory
    /// (invalidated across instances). Default true; false makes every
    /// check a Redis round trip.
    pub local_cache: bool,
}

/// A PEM file of CA certificates, read and checked at load time.
#[derive(Debug, Clone)]
pub struct CaFile {
    /// The file, for messages.
    pub path: PathBuf,
    /// Its contents.
    pub pem: Vec<u8>,
    /// Its certificates (DER), at least one, each usable as a root.
    pub certs: Vec<rustls::pki_types::CertificateDer<'static>>,
}

/// `session.store`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// In-process; single instance.
    Memory,
    /// Shared by every instance.
    Redis,
}

/// `[headers]`
#[derive(Debug, Clone)]
pub struct HeadersConfig {
    /// The naming preset. Default [`HeaderPreset::Portcullis`].
    pub preset: HeaderPreset,
    /// Default `X-Auth-User` (`X-Auth-Request-User`).
    pub user: HeaderName,
    /// Default `X-Auth-Email` (`X-Auth-Request-Email`).
    pub email: HeaderName,
    /// Default `X-Auth-Groups` (`X-Auth-Request-Groups`); comma-separated value.
    pub groups: HeaderName,
    /// Default `X-Auth-Preferred-Username` (`X-Auth-Request-Preferred-Username`).
    pub preferred_username: HeaderName,
    /// The access-token header of the preset (`X-Auth-Access-Token`,
    /// `X-Auth-Request-Access-Token`), sent with `pass_access_token`.
    pub access_token: HeaderName,
    /// Claim path of the preferred-username header. Default `preferred_username`.
    pub preferred_username_claim: ClaimPath,
    /// `[headers.claims]`: extra header → claim path, by header name.
    pub claims: Vec<(HeaderName, ClaimPath)>,
    /// More client headers removed before proxying.
    pub strip: Vec<HeaderName>,
    /// Send the access token upstream and on forward-auth answers. Default false.
    pub pass_access_token: bool,
    /// Send `Authorization: Bearer <id_token>` upstream. Default false.
    pub pass_authorization: bool,
    /// `headers.assertion`: the signing keys, `None` when off.
    pub assertion: Option<std::sync::Arc<assertion_keys::Keys>>,
}

/// `headers.preset`: which family of header names the defaults come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderPreset {
    /// `X-Auth-User`, `X-Auth-Email`, ...
    Portcullis,
    /// oauth2-proxy's `X-Auth-Request-User`, `X-Auth-Request-Email`, ...
    OAuth2Proxy,
}

/// `[access]`
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// Decision when no rule matches. Default deny.
    pub default: DefaultPolicy,
    /// Hosts `rd` may point at: `.example.com` (the domain and every subdomain) or
    /// `app.example.com` (exactly). Lower-case, no port.
    pub allowed_redirect_domains: Vec<String>,
    /// `[access.networks]`: name → its networks (each list non-empty).
    pub networks: std::collections::BTreeMap<String, Vec<IpNet>>,
    /// `htpasswd_file` and `htpasswd_groups_file`, read and checked at load
    /// time; `None` without `htpasswd_file`.
    pub htpasswd: Option<std::sync::Arc<crate::config::htpasswd::Users>>,
}

/// `access.default`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultPolicy {
    /// 403 for everybody.
    Deny,
    /// Any signed-in user.
    Authenticated,
}

/// `[proxy]`: timeouts of reverse-proxy mode (reloaded on SIGHUP).
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Opening a connection to an upstream: TCP connect and, for `https://`,
    /// the TLS handshake. Default 5 s; exceeded = 504.
    pub connect_timeout: Duration,
    /// From sending the request to the upstream's response head. Default 60 s; exceeded = 504.
    pub response_header_timeout: Duration,
    /// A request or response body that moves no bytes this long is cut. Default 90 s.
    pub idle_timeout: Duration,
}

/// How portcullis talks to one rule's upstream.
#[derive(Debug, Clone, Default)]
pub struct UpstreamOptions {
    /// Certificate verification for `https://` upstreams.
    pub tls: UpstreamTls,
    /// Send the client's `Host` header instead of the upstream's host. Default false.
    pub preserve_host: bool,
}

/// `rule.upstream_ca` / `rule.upstream_insecure_skip_verify`
#[derive(Debug, Clone, Default)]
pub enum UpstreamTls {
    /// Verify against the system roots (default).
    #[default]
    SystemRoots,
    /// Verify against these CA certificates only (`upstream_ca`, read at load time).
    Ca {
        /// The file, for messages.
        path: PathBuf,
        /// Its certificates (DER), at least one.
        certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    },
    /// Accept any certificate (`upstream_insecure_skip_verify = true`); warned about at start-up.
    InsecureSkipVerify,
}

/// One `[[rule]]`.
#[derive(Debug, Clone)]
pub struct RuleConfig {
    /// `name` when given, else `rule[N]` (zero-based index in the file). Used in logs.
    pub name: String,
    /// `None` = any host.
    pub host: Option<HostPattern>,
    /// Normalised path prefix, starts with `/`, no trailing `/` unless it is `/`.
    pub path: String,
    /// `None` = any method.
    pub methods: Option<Vec<Method>>,
    /// Default `authenticated`.
    pub policy: Policy,
    /// The user must be in at least one of these groups...
    pub groups: Vec<String>,
    /// ...or be one of these users...
    pub users: Vec<String>,
    /// ...or have one of these e-mail addresses (compared lower-case)...
    pub emails: Vec<String>,
    /// ...or an address in one of these domains (lower-case, no `@`).
    pub email_domains: Vec<String>,
    /// And, when not empty, the user must be in every one of these groups.
    pub groups_all: Vec<String>,
    /// `networks`, with `[access.networks]` names expanded: the client
    /// address must be in one of these (IPv4-mapped networks as IPv4).
    /// `None` = any address; never empty.
    pub networks: Option<Vec<IpNet>>,
    /// Reverse-proxy mode: portcullis serves this host and proxies allowed requests here.
    pub upstream: Option<Url>,
    /// `upstream_ca`, `upstream_insecure_skip_verify`, `preserve_host`.
    pub upstream_options: UpstreamOptions,
    /// Accept bearer JWTs on this rule. Default true.
    pub bearer: bool,
    /// Accept `Authorization: Basic` against `access.htpasswd_file`. Default false.
    pub basic_auth: bool,
    /// `path_case`: whether `path` matches letters case-sensitively. Default sensitive.
    pub path_case: PathCase,
}

/// `rule.path_case`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PathCase {
    /// `/Admin` and `/admin` are different paths (RFC 3986; most apps).
    #[default]
    Sensitive,
    /// ASCII letters match in either case, for upstreams that treat
    /// `/ADMIN` and `/admin` alike (IIS, some Java and PHP stacks, apps on
    /// case-insensitive file systems).
    Insensitive,
}

/// `rule.host`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `grafana.example.com`, lower-case, no port, no trailing dot.
    Exact(String),
    /// `*.example.com` stored as `.example.com`: any subdomain at any depth, not the apex.
    Suffix(String),
}

/// `rule.policy`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// No login needed; identity headers are sent empty.
    Public,
    /// A signed-in user who satisfies the rule's subject lists (if any).
    Authenticated,
    /// Nobody.
    Deny,
}

// === impl Config ===

impl Config {
    /// Reads, parses and validates the file at `path`, taking secrets from `env`.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        validate::load(path, env)
    }

    /// Parses and validates TOML text (used by tests and the demo).
    pub fn from_toml(text: &str, base_dir: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        validate::from_toml(text, base_dir, env)
    }
}

// === impl RuleConfig ===

impl RuleConfig {
    /// True when the rule names any subject (groups, users, emails, domains).
    pub fn has_subjects(&self) -> bool {
        !(self.groups.is_empty()
            && self.users.is_empty()
            && self.emails.is_empty()
            && self.email_domains.is_empty())
    }

    /// True when the rule judges the user at all: any subject or `groups_all`.
    pub fn has_conditions_on_user(&self) -> bool {
        self.has_subjects() || !self.groups_all.is_empty()
    }
}

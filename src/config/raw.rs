//! The config file exactly as the operator wrote it.
//!
//! Serde reads the TOML into [`RawConfig`]; every section rejects unknown keys
//! (`deny_unknown_fields`) and carries its documented defaults in its `Default`
//! impl, so a missing key and a key set to its default read the same. Values
//! stay close to their textual form (strings for addresses, URLs, enums):
//! `validate` checks them all, collects every problem with its key path, and
//! builds the typed [`Config`](super::Config). Keys whose absence means
//! something different from any value (`external_url`, `trusted_proxies`,
//! the secret sources) are `Option`s.
//!
//! Secret-bearing fields hold [`Secret`]s, whose `Debug` is redacted, and are
//! read through helpers that never echo the value in a type error.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, DeserializeOwned, Deserializer};
use serde::Deserialize;

use super::duration::HumanDuration;
use crate::base::secret::Secret;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// `[server]`
    pub server: RawServer,
    /// `[oidc]` (required: `issuer` and `client_id` have no default).
    pub oidc: RawOidc,
    /// `[session]`
    pub session: RawSession,
    /// `[headers]`
    pub headers: RawHeaders,
    /// `[access]`
    pub access: RawAccess,
    /// `[proxy]`
    pub proxy: RawProxy,
    /// `[[rule]]`, in file order.
    #[serde(rename = "rule")]
    pub rules: Vec<RawRule>,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawServer {
    /// Socket address of the main listener. Default `"0.0.0.0:4180"`.
    pub listen: String,
    /// Base URL of the gateway's endpoints; absent = single-app mode.
    pub external_url: Option<String>,
    /// Socket address of the admin listener; absent = served on `listen`.
    pub admin_listen: Option<String>,
    /// File holding the bearer token of the admin API (trailing whitespace
    /// is trimmed); this or `PORTCULLIS_SERVER_ADMIN_TOKEN` is required when
    /// `admin_listen` is not a loopback address.
    pub admin_token_file: Option<PathBuf>,
    /// PEM certificate chain; relative paths resolve against the config file's directory.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key; relative paths resolve against the config file's directory.
    pub tls_key: Option<PathBuf>,
    /// CIDRs or plain IPs; absent = loopback only, `[]` = trust nobody.
    pub trusted_proxies: Option<Vec<String>>,
    /// PEM CA that front proxies' client certificates must chain to.
    pub client_ca: Option<PathBuf>,
    /// Path prefix of the gateway's endpoints. Default `"/oauth2"`.
    pub prefix: String,
    /// Time allowed to read request headers. Default `"10s"`.
    pub header_read_timeout: HumanDuration,
    /// Keep-alive idle timeout (HTTP/2: no request open, PINGs or not). Default `"90s"`.
    pub idle_timeout: HumanDuration,
    /// Largest request head in bytes. Default 16384.
    pub max_header_bytes: u64,
    /// Most concurrent connections per listener. Default 10000.
    pub max_connections: u64,
    /// Most concurrent connections from one client address (IPv6: one /64);
    /// peers in `trusted_proxies` are exempt. Default 256, or a quarter of
    /// `max_connections` when that is smaller.
    pub max_connections_per_client: Option<u64>,
    /// Drain time on SIGTERM. Default `"10s"`.
    pub shutdown_grace: HumanDuration,
    /// Serve connections on one single-threaded event loop per core, each
    /// connection on one thread from accept to close. Default true.
    pub thread_per_core: bool,
    /// `"text"` (default) or `"json"`.
    pub log_format: String,
    /// Serve `<prefix>/debug` to signed-in users. Default false.
    pub debug_endpoint: bool,
    /// One log line per request. Default false.
    pub access_log: bool,
    /// Directory of page templates (`403.html`, `error.html`,
    /// `signed_out.html`) replacing the built-in pages. Default none.
    pub pages_dir: Option<PathBuf>,
}

/// `[oidc]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawOidc {
    /// Issuer URL, kept byte for byte. Required.
    pub issuer: Option<String>,
    /// OAuth client id. Required.
    pub client_id: Option<String>,
    /// Client secret, inline.
    #[serde(deserialize_with = "secret_string")]
    pub client_secret: Option<Secret<String>>,
    /// File holding the client secret (one trailing newline is trimmed).
    pub client_secret_file: Option<PathBuf>,
    /// Scopes requested. Default `["openid", "profile", "email", "groups"]`.
    pub scopes: Vec<String>,
    /// Claim naming the user. Default `"preferred_username"`.
    pub user_claim: String,
    /// Claim holding the e-mail address. Default `"email"`.
    pub email_claim: String,
    /// Claim holding the groups. Default `"groups"`.
    pub groups_claim: String,
    /// Fetch userinfo when the ID token lacks claims. Default true.
    pub userinfo_fallback: bool,
    /// Use e-mail addresses the IdP did not mark `email_verified`. Default false.
    pub allow_unverified_email: bool,
    /// More audiences accepted on bearer tokens. Default none.
    pub extra_audiences: Vec<String>,
    /// `[[oidc.bearer_issuers]]`
    pub bearer_issuers: Vec<RawBearerIssuer>,
    /// Continue sign-out at the IdP. Default false.
    pub rp_logout: bool,
    /// Timeout of every IdP call. Default `"10s"`.
    pub http_timeout: HumanDuration,
    /// Clock skew tolerated on token times. Default `"60s"`.
    pub clock_leeway: HumanDuration,
}

/// `[[oidc.bearer_issuers]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawBearerIssuer {
    /// Expected `iss`. Required.
    pub issuer: Option<String>,
    /// JWKS location; absent = discovered from the issuer.
    pub jwks_url: Option<String>,
    /// Accepted audiences; at least one.
    pub audiences: Vec<String>,
    /// Default `"sub"`.
    pub user_claim: String,
    /// Default `"email"`.
    pub email_claim: String,
    /// Default `"groups"`.
    pub groups_claim: String,
    /// Required header `typ` (e.g. `"at+jwt"`); absent = not checked.
    pub typ: Option<String>,
}

/// `[session]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSession {
    /// Default `"_portcullis"`.
    pub cookie_name: String,
    /// Cookie `Domain`; absent = host-only cookie.
    pub cookie_domain: Option<String>,
    /// Cookie `Secure`. Default true.
    pub cookie_secure: bool,
    /// One secret, inline.
    #[serde(deserialize_with = "secret_string")]
    pub secret: Option<Secret<String>>,
    /// File holding one secret (one trailing newline is trimmed).
    pub secret_file: Option<PathBuf>,
    /// Several secrets, inline: the first signs, all verify.
    #[serde(deserialize_with = "secret_strings")]
    pub secrets: Option<Vec<Secret<String>>>,
    /// File holding several secrets separated by whitespace (one a line):
    /// the first signs, all verify.
    pub secrets_file: Option<PathBuf>,
    /// Absolute session lifetime. Default `"12h"`.
    pub lifetime: HumanDuration,
    /// Sliding idle timeout; absent = none.
    pub idle_timeout: Option<HumanDuration>,
    /// Renew claims with the refresh token. Default false.
    pub refresh: bool,
    /// `"memory"` (default) or `"redis"`.
    pub store: String,
    /// One Redis URL, or a list for Redis Cluster.
    pub redis_url: Option<RawRedisUrl>,
    /// File holding the Redis URL (several separated by whitespace: Redis
    /// Cluster seed nodes).
    pub redis_url_file: Option<PathBuf>,
    /// PEM file of the CA(s) that sign the Redis server certificates
    /// (`rediss://`); absent = the system trust store.
    pub redis_ca: Option<PathBuf>,
    /// With Redis: keep recently verified sessions in process memory. Default true.
    pub local_cache: bool,
}

/// `session.redis_url`: may carry a password, so it is a secret.
#[derive(Debug, Clone)]
pub enum RawRedisUrl {
    /// `redis_url = "redis://..."`
    One(Secret<String>),
    /// `redis_url = ["redis://a", "redis://b"]` (Redis Cluster seed nodes).
    Cluster(Vec<Secret<String>>),
}

/// `[headers]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHeaders {
    /// `"portcullis"` (default, `X-Auth-*`) or `"oauth2-proxy"`
    /// (`X-Auth-Request-*`): the default names of the headers below.
    pub preset: String,
    /// Default from the preset (`"X-Auth-User"`).
    pub user: Option<String>,
    /// Default from the preset (`"X-Auth-Email"`).
    pub email: Option<String>,
    /// Default from the preset (`"X-Auth-Groups"`).
    pub groups: Option<String>,
    /// Default from the preset (`"X-Auth-Preferred-Username"`).
    pub preferred_username: Option<String>,
    /// Default `"preferred_username"`.
    pub preferred_username_claim: String,
    /// More client headers removed before proxying. Default none.
    pub strip: Vec<String>,
    /// Default false.
    pub pass_access_token: bool,
    /// Default false.
    pub pass_authorization: bool,
    /// `[headers.claims]`: header name → claim path. Default none.
    pub claims: std::collections::BTreeMap<String, String>,
    /// Send `X-Auth-Assertion`. Default false.
    pub assertion: bool,
    /// PEM file of the assertion signing key(s). Required with `assertion`.
    pub assertion_key_file: Option<PathBuf>,
}

/// `[access]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAccess {
    /// `"deny"` (default) or `"authenticated"`.
    pub default: String,
    /// Where `rd` may send the browser. Default none (relative only).
    pub allowed_redirect_domains: Vec<String>,
    /// `[access.networks]`: named address lists (CIDRs or addresses) for
    /// rule `networks`. Default none.
    pub networks: std::collections::BTreeMap<String, Vec<String>>,
    /// htpasswd file (bcrypt or argon2 hashes) for rules with `basic_auth`. Default none.
    pub htpasswd_file: Option<PathBuf>,
    /// Apache `AuthGroupFile` (`group: user1 user2`) giving htpasswd users their groups. Default none.
    pub htpasswd_groups_file: Option<PathBuf>,
}

/// `[proxy]`: reverse-proxy timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawProxy {
    /// Time allowed to open a connection to an upstream (TCP connect and TLS handshake). Default `"5s"`.
    pub connect_timeout: HumanDuration,
    /// Time allowed for the upstream's response head once the request is sent. Default `"60s"`.
    pub response_header_timeout: HumanDuration,
    /// A body (either way) that moves no bytes this long is cut. Default `"90s"`.
    pub idle_timeout: HumanDuration,
}

/// `[[rule]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRule {
    /// Name used in logs; absent = `rule[N]`.
    pub name: Option<String>,
    /// Exact host or `*.suffix`; absent = any host.
    pub host: Option<String>,
    /// Path prefix. Default `"/"`.
    pub path: String,
    /// Methods; absent = any.
    pub methods: Option<Vec<String>>,
    /// `"public"`, `"authenticated"` (default) or `"deny"`.
    pub policy: String,
    /// Default none.
    pub groups: Vec<String>,
    /// Groups the user must all be in. Default none.
    pub groups_all: Vec<String>,
    /// Client address in one of these CIDRs, addresses or `[access.networks]`
    /// names; absent = any address.
    pub networks: Option<Vec<String>>,
    /// Default none.
    pub users: Vec<String>,
    /// Default none.
    pub emails: Vec<String>,
    /// Default none.
    pub email_domains: Vec<String>,
    /// Upstream URL for reverse-proxy mode.
    pub upstream: Option<String>,
    /// PEM CA bundle that an `https://` upstream's certificate must chain to; absent = system roots.
    pub upstream_ca: Option<PathBuf>,
    /// Accept any certificate from an `https://` upstream. Default false.
    pub upstream_insecure_skip_verify: bool,
    /// Send the client's `Host` upstream instead of the upstream's. Default false.
    pub preserve_host: bool,
    /// Accept bearer JWTs. Default true.
    pub bearer: bool,
    /// Accept `Authorization: Basic` checked against `access.htpasswd_file`. Default false.
    pub basic_auth: bool,
    /// `"sensitive"` (default) or `"insensitive"`.
    pub path_case: String,
}

// === impl Default ===

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "0.0.0.0:4180".to_owned(),
            external_url: None,
            admin_listen: None,
            admin_token_file: None,
            tls_cert: None,
            tls_key: None,
            trusted_proxies: None,
            client_ca: None,
            prefix: "/oauth2".to_owned(),
            header_read_timeout: secs(10),
            idle_timeout: secs(90),
            max_header_bytes: 16 * 1024,
            max_connections: 10_000,
            max_connections_per_client: None,
            shutdown_grace: secs(10),
            thread_per_core: true,
            log_format: "text".to_owned(),
            debug_endpoint: false,
            access_log: false,
            pages_dir: None,
        }
    }
}

impl Default for RawOidc {
    fn default() -> Self {
        RawOidc {
            issuer: None,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            scopes: ["openid", "profile", "email", "groups"]
                .map(str::to_owned)
                .to_vec(),
            user_claim: "preferred_username".to_owned(),
            email_claim: "email".to_owned(),
            groups_claim: "groups".to_owned(),
            userinfo_fallback: true,
            allow_unverified_email: false,
            extra_audiences: Vec::new(),
            bearer_issuers: Vec::new(),
            rp_logout: false,
            http_timeout: secs(10),
            clock_leeway: secs(60),
        }
    }
}

impl Default for RawBearerIssuer {
    fn default() -> Self {
        RawBearerIssuer {
            issuer: None,
            jwks_url: None,
            audiences: Vec::new(),
            user_claim: "sub".to_owned(),
            email_claim: "email".to_owned(),
            groups_claim: "groups".to_owned(),
            typ: None,
        }
    }
}

impl Default for RawSession {
    fn default() -> Self {
        RawSession {
            cookie_name: "_portcullis".to_owned(),
            cookie_domain: None,
            cookie_secure: true,
            secret: None,
            secret_file: None,
            secrets: None,
            secrets_file: None,
            lifetime: secs(12 * 3600),
            idle_timeout: None,
            refresh: false,
            store: "memory".to_owned(),
            redis_url: None,
            redis_url_file: None,
            redis_ca: None,
            local_cache: true,
        }
    }
}

impl Default for RawHeaders {
    fn default() -> Self {
        RawHeaders {
            preset: "portcullis".to_owned(),
            user: None,
            email: None,
            groups: None,
            preferred_username: None,
            preferred_username_claim: "preferred_username".to_owned(),
            strip: Vec::new(),
            pass_access_token: false,
            pass_authorization: false,
            claims: Default::default(),
            assertion: false,
            assertion_key_file: None,
        }
    }
}

impl Default for RawAccess {
    fn default() -> Self {
        RawAccess {
            default: "deny".to_owned(),
            allowed_redirect_domains: Vec::new(),
            networks: Default::default(),
            htpasswd_file: None,
            htpasswd_groups_file: None,
        }
    }
}

impl Default for RawProxy {
    fn default() -> Self {
        RawProxy {
            connect_timeout: secs(5),
            response_header_timeout: secs(60),
            idle_timeout: secs(90),
        }
    }
}

impl Default for RawRule {
    fn default() -> Self {
        RawRule {
            name: None,
            host: None,
            path: "/".to_owned(),
            methods: None,
            policy: "authenticated".to_owned(),
            groups: Vec::new(),
            groups_all: Vec::new(),
            networks: None,
            users: Vec::new(),
            emails: Vec::new(),
            email_domains: Vec::new(),
            upstream: None,
            upstream_ca: None,
            upstream_insecure_skip_verify: false,
            preserve_host: false,
            bearer: true,
            basic_auth: false,
            path_case: "sensitive".to_owned(),
        }
    }
}

fn secs(n: u64) -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(n))
}

// === impl RawRedisUrl ===

impl RawRedisUrl {
    /// The URLs, one or several, with the key path of each for messages.
    pub fn urls(&self) -> Vec<(String, &Secret<String>)> {
        match self {
            RawRedisUrl::One(url) => vec![("session.redis_url".to_owned(), url)],
            RawRedisUrl::Cluster(urls) => urls
                .iter()
                .enumerate()
                .map(|(i, url)| (format!("session.redis_url[{i}]"), url))
                .collect(),
        }
    }
}

impl<'de> Deserialize<'de> for RawRedisUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(deserializer)? {
            toml::Value::String(url) => Ok(RawRedisUrl::One(Secret::new(url))),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|item| expect_string(item, "a string or a list of strings"))
                .collect::<Result<Vec<_>, _>>()
                .map(RawRedisUrl::Cluster),
            other => Err(not_shown(&other, "a string or a list of strings")),
        }
    }
}

// === secret helpers ===
//
// Secrets are read as a generic TOML value first, so that a value of the
// wrong type produces "expected a string, found integer" rather than serde's
// usual message, which repeats the value.

fn secret_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret<String>>, D::Error> {
    expect_string(toml::Value::deserialize(d)?, "a string").map(Some)
}

fn secret_strings<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<Secret<String>>>, D::Error> {
    match toml::Value::deserialize(d)? {
        toml::Value::Array(items) => items
            .into_iter()
            .map(|item| expect_string(item, "a list of strings"))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        other => Err(not_shown(&other, "a list of strings")),
    }
}

fn expect_string<E: de::Error>(value: toml::Value, expected: &str) -> Result<Secret<String>, E> {
    match value {
        toml::Value::String(s) => Ok(Secret::new(s)),
        other => Err(not_shown(&other, expected)),
    }
}

fn not_shown<E: de::Error>(value: &toml::Value, expected: &str) -> E {
    E::custom(format_args!(
        "expected {expected}, found {} (value not shown: it may be secret)",
        value.type_str()
    ))
}

// === introspection ===

/// The keys a raw section accepts, read from its serde derive, so the list
/// can never drift from the struct. Used to name unknown keys and suggest
/// the closest known one.
pub fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields = None;
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields.unwrap_or(&[])
}

/// A deserializer that records the field list a derived `Deserialize` hands
/// to `deserialize_struct`, then stops.
struct FieldProbe<'a>(&'a mut Option<&'static [&'static str]>);

#[derive(Debug)]
struct ProbeDone;

impl fmt::Display for ProbeDone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for ProbeDone {}

impl de::Error for ProbeDone {
    fn custom<T: fmt::Display>(_: T) -> Self {
        ProbeDone
    }
}

impl<'de> Deserializer<'de> for FieldProbe<'_> {
    type Error = ProbeDone;

    fn deserialize_any<V: de::Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeDone> {
        Err(ProbeDone)
    }

    fn deserialize_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, ProbeDone> {
        *self.0 = Some(fields);
        Err(ProbeDone)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

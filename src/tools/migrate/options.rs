//! oauth2-proxy's options as oauth2-proxy itself reads them: its config file
//! (TOML, keys spelled as in the config), `OAUTH2_PROXY_*` environment
//! variables (the config key upper-cased, lists comma-separated) and
//! command-line flags (`--flag=value`, `--flag value`, a bare `--flag` for
//! booleans, repeated or comma-separated list flags), merged with
//! oauth2-proxy's precedence: flags over environment over file. Only the
//! legacy (non-alpha) options exist here. Part of `migrate`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Env;

use super::MigrateError;

/// The type oauth2-proxy gives an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `true` / `false`; a bare flag means true.
    Bool,
    /// One string.
    Str,
    /// A list of strings (repeatable flag, comma-separated env value).
    List,
    /// A Go duration (`"168h"`, `"1h30m"`).
    Duration,
    /// An integer.
    Int,
}

/// One oauth2-proxy option: its flag name, its config-file key, its type.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// `--cookie-domain`
    pub flag: &'static str,
    /// `cookie_domains`
    pub cfg: &'static str,
    /// Its type.
    pub kind: Kind,
}

/// Where a value came from; the last source wins a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The config file.
    File,
    /// An `OAUTH2_PROXY_*` variable.
    Env,
    /// A command-line flag.
    Flag,
}

/// A value as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// A string, duration or integer, as text.
    Str(String),
    /// A list.
    List(Vec<String>),
}

/// Every option set, by config key.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Config key → (value, where it came from).
    pub set: BTreeMap<&'static str, (Value, Source)>,
    /// The config file read, if any.
    pub file: Option<PathBuf>,
}

/// oauth2-proxy's command line, split.
struct CommandLine {
    /// `--config FILE`
    file: Option<PathBuf>,
    /// Each flag's config key and value, in order of first appearance.
    values: Vec<(&'static str, Value)>,
}

use Kind::{Bool as B, Duration as D, Int as I, List as L, Str as S};

macro_rules! specs {
    ($(($flag:literal, $cfg:literal, $kind:expr)),* $(,)?) => {
        &[$(Spec { flag: $flag, cfg: $cfg, kind: $kind }),*]
    };
}

/// Every legacy option of oauth2-proxy (its `flag`/`cfg` struct tags).
pub const SPECS: &[Spec] = specs![
    ("acr-values", "acr_values", S),
    ("allow-query-semicolons", "allow_query_semicolons", B),
    ("allowed-group", "allowed_groups", L),
    ("allowed-role", "allowed_roles", L),
    ("api-route", "api_routes", L),
    ("approval-prompt", "approval_prompt", S),
    ("auth-logging", "auth_logging", B),
    ("auth-logging-format", "auth_logging_format", S),
    (
        "auth-request-response-mode",
        "auth_request_response_mode",
        S
    ),
    ("authenticated-emails-file", "authenticated_emails_file", S),
    ("azure-graph-group-field", "azure_graph_group_field", S),
    ("azure-tenant", "azure_tenant", S),
    ("backend-logout-url", "backend_logout_url", S),
    ("banner", "banner", S),
    ("basic-auth-password", "basic_auth_password", S),
    (
        "bearer-token-login-fallback",
        "bearer_token_login_fallback",
        B
    ),
    ("bitbucket-repository", "bitbucket_repository", S),
    ("bitbucket-team", "bitbucket_team", S),
    ("client-id", "client_id", S),
    ("client-secret", "client_secret", S),
    ("client-secret-file", "client_secret_file", S),
    ("code-challenge-method", "code_challenge_method", S),
    ("cookie-csrf-expire", "cookie_csrf_expire", D),
    ("cookie-csrf-per-request", "cookie_csrf_per_request", B),
    (
        "cookie-csrf-per-request-limit",
        "cookie_csrf_per_request_limit",
        I
    ),
    ("cookie-csrf-samesite", "cookie_csrf_samesite", S),
    ("cookie-domain", "cookie_domains", L),
    ("cookie-expire", "cookie_expire", D),
    ("cookie-httponly", "cookie_httponly", B),
    ("cookie-name", "cookie_name", S),
    ("cookie-path", "cookie_path", S),
    ("cookie-refresh", "cookie_refresh", D),
    ("cookie-samesite", "cookie_samesite", S),
    ("cookie-secret", "cookie_secret", S),
    ("cookie-secret-file", "cookie_secret_file", S),
    ("cookie-secure", "cookie_secure", B),
    ("custom-sign-in-logo", "custom_sign_in_logo", S),
    ("custom-templates-dir", "custom_templates_dir", S),
    ("disable-keep-alives", "disable_keep_alives", B),
    ("display-htpasswd-form", "display_htpasswd_form", B),
    ("email-domain", "email_domains", L),
    ("encode-state", "encode_state", B),
    ("entra-id-allowed-tenant", "entra_id_allowed_tenants", L),
    (
        "entra-id-federated-token-auth",
        "entra_id_federated_token_auth",
        B
    ),
    ("errors-to-info-log", "errors_to_info_log", B),
    ("exclude-logging-path", "exclude_logging_paths", L),
    ("extra-jwt-issuers", "extra_jwt_issuers", L),
    ("flush-interval", "flush_interval", D),
    ("footer", "footer", S),
    (
        "force-code-challenge-method",
        "force_code_challenge_method",
        S
    ),
    ("force-https", "force_https", B),
    ("force-json-errors", "force_json_errors", B),
    ("gcp-healthchecks", "gcp_healthchecks", B),
    ("github-org", "github_org", S),
    ("github-repo", "github_repo", S),
    ("github-team", "github_team", S),
    ("github-token", "github_token", S),
    ("github-user", "github_users", L),
    ("gitlab-group", "gitlab_groups", L),
    ("gitlab-project", "gitlab_projects", L),
    (
        "google-admin-api-user-scope",
        "google_admin_api_user_scope",
        S
    ),
    ("google-admin-email", "google_admin_email", S),
    ("google-group", "google_groups", L),
    (
        "google-service-account-json",
        "google_service_account_json",
        S
    ),
    ("google-target-principal", "google_target_principal", S),
    (
        "google-use-application-default-credentials",
        "google_use_application_default_credentials",
        B
    ),
    (
        "google-use-organization-id",
        "google_use_organization_id",
        B
    ),
    ("htpasswd-file", "htpasswd_file", S),
    ("htpasswd-user-group", "htpasswd_user_groups", L),
    ("http-address", "http_address", S),
    ("https-address", "https_address", S),
    (
        "insecure-oidc-allow-unverified-email",
        "insecure_oidc_allow_unverified_email",
        B
    ),
    (
        "insecure-oidc-skip-issuer-verification",
        "insecure_oidc_skip_issuer_verification",
        B
    ),
    ("insecure-oidc-skip-nonce", "insecure_oidc_skip_nonce", B),
    ("jwt-key", "jwt_key", S),
    ("jwt-key-file", "jwt_key_file", S),
    ("keycloak-group", "keycloak_groups", L),
    ("logging-compress", "logging_compress", B),
    ("logging-filename", "logging_filename", S),
    ("logging-local-time", "logging_local_time", B),
    ("logging-max-age", "logging_max_age", I),
    ("logging-max-backups", "logging_max_backups", I),
    ("logging-max-size", "logging_max_size", I),
    ("login-url", "login_url", S),
    ("metrics-address", "metrics_address", S),
    ("metrics-secure-address", "metrics_secure_address", S),
    ("metrics-tls-cert-file", "metrics_tls_cert_file", S),
    ("metrics-tls-key-file", "metrics_tls_key_file", S),
    ("oidc-audience-claim", "oidc_audience_claims", L),
    ("oidc-email-claim", "oidc_email_claim", S),
    ("oidc-enabled-signing-alg", "oidc_enabled_signing_algs", L),
    ("oidc-extra-audience", "oidc_extra_audiences", L),
    ("oidc-groups-claim", "oidc_groups_claim", S),
    ("oidc-issuer-url", "oidc_issuer_url", S),
    ("oidc-jwks-url", "oidc_jwks_url", S),
    ("oidc-public-key-file", "oidc_public_key_files", L),
    ("pass-access-token", "pass_access_token", B),
    ("pass-authorization-header", "pass_authorization_header", B),
    ("pass-basic-auth", "pass_basic_auth", B),
    ("pass-host-header", "pass_host_header", B),
    ("pass-user-headers", "pass_user_headers", B),
    ("ping-path", "ping_path", S),
    ("ping-user-agent", "ping_user_agent", S),
    ("prefer-email-to-user", "prefer_email_to_user", B),
    ("profile-url", "profile_url", S),
    ("prompt", "prompt", S),
    ("provider", "provider", S),
    ("provider-ca-file", "provider_ca_files", L),
    ("provider-display-name", "provider_display_name", S),
    ("proxy-prefix", "proxy_prefix", S),
    ("proxy-websockets", "proxy_websockets", B),
    ("pubjwk-url", "pubjwk_url", S),
    ("ready-path", "ready_path", S),
    ("real-client-ip-header", "real_client_ip_header", S),
    ("redeem-url", "redeem_url", S),
    ("redirect-url", "redirect_url", S),
    ("redis-ca-path", "redis_ca_path", S),
    (
        "redis-cluster-connection-urls",
        "redis_cluster_connection_urls",
        L
    ),
    (
        "redis-connection-idle-timeout",
        "redis_connection_idle_timeout",
        I
    ),
    ("redis-connection-url", "redis_connection_url", S),
    (
        "redis-insecure-skip-tls-verify",
        "redis_insecure_skip_tls_verify",
        B
    ),
    ("redis-password", "redis_password", S),
    (
        "redis-sentinel-connection-urls",
        "redis_sentinel_connection_urls",
        L
    ),
    (
        "redis-sentinel-master-name",
        "redis_sentinel_master_name",
        S
    ),
    ("redis-sentinel-password", "redis_sentinel_password", S),
    ("redis-use-cluster", "redis_use_cluster", B),
    ("redis-use-sentinel", "redis_use_sentinel", B),
    ("redis-username", "redis_username", S),
    ("relative-redirect-url", "relative_redirect_url", B),
    ("request-id-header", "request_id_header", S),
    ("request-logging", "request_logging", B),
    ("request-logging-format", "request_logging_format", S),
    ("resource", "resource", S),
    ("reverse-proxy", "reverse_proxy", B),
    ("scope", "scope", S),
    ("session-cookie-minimal", "session_cookie_minimal", B),
    ("session-store-type", "session_store_type", S),
    ("set-authorization-header", "set_authorization_header", B),
    ("set-basic-auth", "set_basic_auth", B),
    ("set-xauthrequest", "set_xauthrequest", B),
    ("show-debug-on-error", "show_debug_on_error", B),
    ("signature-key", "signature_key", S),
    ("silence-ping-logging", "silence_ping_logging", B),
    ("skip-auth-preflight", "skip_auth_preflight", B),
    ("skip-auth-regex", "skip_auth_regex", L),
    ("skip-auth-route", "skip_auth_routes", L),
    ("skip-auth-strip-headers", "skip_auth_strip_headers", B),
    (
        "skip-claims-from-profile-url",
        "skip_claims_from_profile_url",
        B
    ),
    ("skip-jwt-bearer-tokens", "skip_jwt_bearer_tokens", B),
    ("skip-oidc-discovery", "skip_oidc_discovery", B),
    ("skip-provider-button", "skip_provider_button", B),
    ("ssl-insecure-skip-verify", "ssl_insecure_skip_verify", B),
    (
        "ssl-upstream-insecure-skip-verify",
        "ssl_upstream_insecure_skip_verify",
        B
    ),
    ("standard-logging", "standard_logging", B),
    ("standard-logging-format", "standard_logging_format", S),
    ("tls-cert-file", "tls_cert_file", S),
    ("tls-cipher-suite", "tls_cipher_suites", L),
    ("tls-key-file", "tls_key_file", S),
    ("tls-min-version", "tls_min_version", S),
    ("trusted-ip", "trusted_ips", L),
    ("trusted-proxy-ip", "trusted_proxy_ips", L),
    ("upstream", "upstreams", L),
    ("upstream-timeout", "upstream_timeout", D),
    ("use-system-trust-store", "use_system_trust_store", B),
    ("user-id-claim", "user_id_claim", S),
    ("validate-url", "validate_url", S),
    ("whitelist-domain", "whitelist_domains", L),
];

/// Options whose values are secrets: never echoed, and never printed when
/// they came from the environment.
pub const SECRETS: &[&str] = &[
    "client_secret",
    "cookie_secret",
    "redis_password",
    "redis_sentinel_password",
    "basic_auth_password",
    "github_token",
    "jwt_key",
    "signature_key",
];

/// Flags of oauth2-proxy that are commands or point at other files, not options.
const COMMAND_FLAGS: &[&str] = &["version", "config-test", "convert-config-to-alpha"];

// === impl Options ===

impl Options {
    /// Reads oauth2-proxy's configuration from its command-line `args` (the
    /// flags as given to oauth2-proxy, `--config FILE` among them), the
    /// `OAUTH2_PROXY_*` variables of `env` and the config file.
    pub fn load(args: &[String], env: &dyn Env) -> Result<Options, MigrateError> {
        let CommandLine {
            file,
            values: flags,
        } = parse_flags(args)?;
        let mut opts = Options {
            file: file.clone(),
            ..Options::default()
        };
        if let Some(path) = &file {
            opts.read_file(path)?;
        }
        for spec in SPECS {
            let name = format!("OAUTH2_PROXY_{}", spec.cfg.to_ascii_uppercase());
            if let Some(text) = env.var(&name) {
                let value = from_text(spec, &text, &name)?;
                opts.set.insert(spec.cfg, (value, Source::Env));
            }
        }
        for (cfg, value) in flags {
            opts.set.insert(cfg, (value, Source::Flag));
        }
        Ok(opts)
    }

    /// The config file: TOML, keys as in [`SPECS`]`.cfg`.
    fn read_file(&mut self, path: &Path) -> Result<(), MigrateError> {
        let text = std::fs::read_to_string(path).map_err(|source| MigrateError::Read {
            path: path.to_owned(),
            source,
        })?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| MigrateError::Syntax {
            path: path.to_owned(),
            reason: e.message().to_owned(),
        })?;
        for (key, value) in table {
            let spec = by_cfg(&key).ok_or_else(|| MigrateError::UnknownOption {
                option: key.clone(),
                place: path.display().to_string(),
                hint: suggest(&key, SPECS.iter().map(|s| s.cfg)),
            })?;
            let value = from_toml(spec, value, &key)?;
            self.set.insert(spec.cfg, (value, Source::File));
        }
        Ok(())
    }

    /// The string value of `cfg`, if set.
    pub fn str(&self, cfg: &str) -> Option<&str> {
        match self.set.get(cfg) {
            Some((Value::Str(s), _)) => Some(s.as_str()),
            _ => None,
        }
    }

    /// A non-empty string value of `cfg`.
    pub fn non_empty(&self, cfg: &str) -> Option<&str> {
        self.str(cfg).filter(|s| !s.trim().is_empty())
    }

    /// The boolean value of `cfg`, if set.
    pub fn bool(&self, cfg: &str) -> Option<bool> {
        match self.set.get(cfg) {
            Some((Value::Bool(b), _)) => Some(*b),
            _ => None,
        }
    }

    /// The list value of `cfg` (empty when unset), blank items dropped.
    pub fn list(&self, cfg: &str) -> Vec<String> {
        match self.set.get(cfg) {
            Some((Value::List(l), _)) => l
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Where `cfg` was set, if it was.
    pub fn source(&self, cfg: &str) -> Option<Source> {
        self.set.get(cfg).map(|(_, s)| *s)
    }

    /// Whether `cfg` was set at all.
    pub fn is_set(&self, cfg: &str) -> bool {
        self.set.contains_key(cfg)
    }

    /// The duration value of `cfg`, if set (already checked at load).
    pub fn duration(&self, cfg: &str) -> Option<Duration> {
        self.str(cfg).and_then(go_duration)
    }
}

/// The spec with this config key.
pub fn by_cfg(cfg: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.cfg == cfg)
}

/// Splits the command line into the config file and the flags' values, in
/// order (a repeated list flag appends; a repeated scalar flag: the last wins).
fn parse_flags(args: &[String]) -> Result<CommandLine, MigrateError> {
    let mut file = None;
    let mut out: Vec<(&'static str, Value)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(MigrateError::Positional(arg.clone()));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (body, None),
        };
        if name.is_empty() {
            return Err(MigrateError::Positional(arg.clone()));
        }
        if name == "alpha-config" {
            return Err(MigrateError::AlphaConfig);
        }
        if COMMAND_FLAGS.contains(&name) {
            return Err(MigrateError::CommandFlag(format!("--{name}")));
        }
        let spec = if name == "config" {
            None
        } else {
            Some(SPECS.iter().find(|s| s.flag == name).ok_or_else(|| {
                MigrateError::UnknownOption {
                    option: format!("--{name}"),
                    place: "the command line".to_owned(),
                    hint: suggest(name, SPECS.iter().map(|s| s.flag)).map(|h| format!("--{h}")),
                }
            })?)
        };
        let text = match (inline, spec.map(|s| s.kind)) {
            (Some(v), _) => v,
            (None, Some(Kind::Bool)) => "true".to_owned(),
            (None, _) => {
                let Some(v) = args.get(i) else {
                    return Err(MigrateError::MissingValue(format!("--{name}")));
                };
                i += 1;
                v.clone()
            }
        };
        let Some(spec) = spec else {
            file = Some(PathBuf::from(text));
            continue;
        };
        let value = from_text(spec, &text, &format!("--{name}"))?;
        match (out.iter_mut().find(|(c, _)| *c == spec.cfg), value) {
            (Some((_, Value::List(have))), Value::List(more)) => have.extend(more),
            (Some((_, have)), value) => *have = value,
            (None, value) => out.push((spec.cfg, value)),
        }
    }
    Ok(CommandLine { file, values: out })
}

/// A value given as text (flag or environment): lists split on commas.
fn from_text(spec: &Spec, text: &str, place: &str) -> Result<Value, MigrateError> {
    let bad = |expected: &str| MigrateError::BadValue {
        option: place.to_owned(),
        expected: expected.to_owned(),
    };
    match spec.kind {
        Kind::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "t" | "yes" => Ok(Value::Bool(true)),
            "false" | "0" | "f" | "no" | "" => Ok(Value::Bool(false)),
            _ => Err(bad("true or false")),
        },
        Kind::List => Ok(Value::List(
            text.split(',').map(|s| s.trim().to_owned()).collect(),
        )),
        Kind::Duration => go_duration(text)
            .map(|_| Value::Str(text.trim().to_owned()))
            .ok_or_else(|| bad("a Go duration such as \"168h\" or \"1h30m\"")),
        Kind::Int => text
            .trim()
            .parse::<i64>()
            .map(|_| Value::Str(text.trim().to_owned()))
            .map_err(|_| bad("an integer")),
        Kind::Str => Ok(Value::Str(text.to_owned())),
    }
}

/// A value from the config file.
fn from_toml(spec: &Spec, value: toml::Value, key: &str) -> Result<Value, MigrateError> {
    let bad = |expected: &str| MigrateError::BadValue {
        option: key.to_owned(),
        expected: expected.to_owned(),
    };
    match (spec.kind, value) {
        (Kind::Bool, toml::Value::Boolean(b)) => Ok(Value::Bool(b)),
        (Kind::List, toml::Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                toml::Value::String(s) => Ok(s),
                _ => Err(bad("a list of strings")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::List),
        (Kind::Int, toml::Value::Integer(n)) => Ok(Value::Str(n.to_string())),
        (_, toml::Value::String(s)) => from_text(spec, &s, key),
        (Kind::Bool, _) => Err(bad("true or false")),
        (Kind::List, _) => Err(bad("a list of strings")),
        (Kind::Int, _) => Err(bad("an integer")),
        (Kind::Duration, _) => Err(bad("a Go duration string such as \"168h\"")),
        (Kind::Str, _) => Err(bad("a string")),
    }
}

/// Parses a Go duration: `"0"`, or numbers (decimals allowed) each followed
/// by `ns`, `us`, `µs`, `ms`, `s`, `m` or `h`, e.g. `"1h30m"`, `"1.5h"`.
pub fn go_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let text = text.strip_prefix('+').unwrap_or(text);
    if text == "0" {
        return Some(Duration::ZERO);
    }
    if text.is_empty() || text.starts_with('-') {
        return None;
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The closest of `known` to `name`, when it is close enough to be a typo.
fn suggest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<String> {
    let known: Vec<&str> = known.collect();
    crate::config::validate::keys::closest(name, &known).map(str::to_owned)
}

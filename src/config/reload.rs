//! What a reload (SIGHUP) can change in a running gateway, and what it cannot.
//!
//! `[headers]`, `[access]`, `[proxy]` and the rules are compiled into each
//! `Runtime` and always take the new values (except the claim paths that
//! logins and bearer verifiers capture for `[headers]`, kept in `[oidc]`'s
//! `capture`). Of `[server]`, `[oidc]` and
//! `[session]`, only the keys read per request from the current runtime are
//! [`RELOADABLE`]; the rest are read once at start-up (listeners and their
//! limits, TLS, the OIDC client and bearer verifiers, the cookie keys and
//! attributes, the session store), so the merged config keeps their running
//! values and [`merge`] names every one whose value changed, for the reload's
//! log line. `admin_token` is start-up only on purpose: a reloaded token
//! paired with a running `admin_listen` could open the admin API.
//!
//! Callers: `cli` (the SIGHUP handler). No I/O; compares values only (a TLS
//! certificate rewritten at the same path is not noticed: it is read at
//! start-up).

use super::{Config, OidcConfig, ServerConfig, SessionConfig};

/// The keys of `[server]`, `[oidc]` and `[session]` a reload applies.
pub const RELOADABLE: [&str; 8] = [
    "server.trusted_proxies",
    "server.prefix",
    "server.max_connections_per_client",
    "server.debug_endpoint",
    "server.access_log",
    "server.pages_dir",
    "oidc.rp_logout",
    "session.refresh",
];

/// The config to run after a reload.
#[derive(Debug)]
pub struct Merged {
    /// The loaded config with every start-up-only key at its running value.
    pub config: Config,
    /// Start-up-only keys whose value in the file differs from the running
    /// one, in file order: they take effect after a restart.
    pub restart_required: Vec<&'static str>,
}

/// The loaded config with the start-up-only keys of `[server]`, `[oidc]`
/// and `[session]` taken from `running`, and which of them changed.
pub fn merge(running: &Config, loaded: Config) -> Merged {
    let mut changed = Vec::new();
    server_changes(&running.server, &loaded.server, &mut changed);
    oidc_changes(&running.oidc, &loaded.oidc, &mut changed);
    session_changes(&running.session, &loaded.session, &mut changed);
    let mut config = loaded;
    let new = (config.server, config.oidc, config.session);
    config.server = ServerConfig {
        trusted_proxies: new.0.trusted_proxies,
        prefix: new.0.prefix,
        max_connections_per_client: new.0.max_connections_per_client,
        debug_endpoint: new.0.debug_endpoint,
        access_log: new.0.access_log,
        pages: new.0.pages,
        ..running.server.clone()
    };
    config.oidc = OidcConfig {
        rp_logout: new.1.rp_logout,
        ..running.oidc.clone()
    };
    config.session = SessionConfig {
        refresh: new.2.refresh,
        ..running.session.clone()
    };
    Merged {
        config,
        restart_required: changed,
    }
}

/// A start-up-only key and whether a running and a loaded section agree on it.
type Key<T> = (&'static str, fn(&T, &T) -> bool);

/// The start-up-only keys of `[server]`, in file order.
const SERVER: &[Key<ServerConfig>] = &[
    ("server.listen", |r, l| r.listen == l.listen),
    ("server.external_url", |r, l| {
        r.external_url == l.external_url
    }),
    ("server.admin_listen", |r, l| {
        r.admin_listen == l.admin_listen
    }),
    ("server.admin_token_file", |r, l| {
        r.admin_token == l.admin_token
    }),
    ("server.tls_cert", |r, l| {
        tls_cert(&r.tls) == tls_cert(&l.tls)
    }),
    ("server.tls_key", |r, l| tls_key(&r.tls) == tls_key(&l.tls)),
    ("server.client_ca", |r, l| r.client_ca == l.client_ca),
    ("server.header_read_timeout", |r, l| {
        r.header_read_timeout == l.header_read_timeout
    }),
    ("server.idle_timeout", |r, l| {
        r.idle_timeout == l.idle_timeout
    }),
    ("server.max_header_bytes", |r, l| {
        r.max_header_bytes == l.max_header_bytes
    }),
    ("server.thread_per_core", |r, l| {
        r.thread_per_core == l.thread_per_core
    }),
    ("server.max_connections", |r, l| {
        r.max_connections == l.max_connections
    }),
    ("server.shutdown_grace", |r, l| {
        r.shutdown_grace == l.shutdown_grace
    }),
    ("server.log_format", |r, l| r.log_format == l.log_format),
];

/// The start-up-only keys of `[oidc]`, in file order, then the claim paths
/// that logins and bearer verifiers capture for `[headers]` (kept in
/// `capture`): new header names apply at once, new claim paths after a restart.
const OIDC: &[Key<OidcConfig>] = &[
    ("oidc.issuer", |r, l| r.issuer == l.issuer),
    ("oidc.client_id", |r, l| r.client_id == l.client_id),
    ("oidc.client_secret", |r, l| {
        r.client_secret == l.client_secret
    }),
    ("oidc.scopes", |r, l| r.scopes == l.scopes),
    ("oidc.user_claim", |r, l| r.user_claim == l.user_claim),
    ("oidc.email_claim", |r, l| r.email_claim == l.email_claim),
    ("oidc.groups_claim", |r, l| r.groups_claim == l.groups_claim),
    ("oidc.userinfo_fallback", |r, l| {
        r.userinfo_fallback == l.userinfo_fallback
    }),
    ("oidc.allow_unverified_email", |r, l| {
        r.allow_unverified_email == l.allow_unverified_email
    }),
    ("oidc.extra_audiences", |r, l| {
        r.extra_audiences == l.extra_audiences
    }),
    ("oidc.bearer_issuers", |r, l| {
        r.bearer_issuers == l.bearer_issuers
    }),
    ("oidc.http_timeout", |r, l| r.http_timeout == l.http_timeout),
    ("oidc.clock_leeway", |r, l| r.clock_leeway == l.clock_leeway),
    ("headers.preferred_username_claim", |r, l| {
        r.capture.preferred_username == l.capture.preferred_username
    }),
    ("headers.claims", |r, l| {
        r.capture.claims == l.capture.claims
    }),
];

/// The start-up-only keys of `[session]`, in file order.
const SESSION: &[Key<SessionConfig>] = &[
    ("session.cookie_name", |r, l| r.cookie_name == l.cookie_name),
    ("session.cookie_domain", |r, l| {
        r.cookie_domain == l.cookie_domain
    }),
    ("session.cookie_secure", |r, l| {
        r.cookie_secure == l.cookie_secure
    }),
    ("session.secret", |r, l| r.secrets == l.secrets),
    ("session.lifetime", |r, l| r.lifetime == l.lifetime),
    ("session.idle_timeout", |r, l| {
        r.idle_timeout == l.idle_timeout
    }),
    ("session.store", |r, l| r.store == l.store),
    ("session.redis_url", |r, l| r.redis_urls == l.redis_urls),
    ("session.redis_ca", |r, l| {
        ca_file(&r.redis_ca) == ca_file(&l.redis_ca)
    }),
    ("session.local_cache", |r, l| r.local_cache == l.local_cache),
];

/// Pushes, in table order, each key of `keys` on which the sections differ.
fn note<T>(keys: &[Key<T>], running: &T, loaded: &T, changed: &mut Vec<&'static str>) {
    changed.extend(
        keys.iter()
            .filter(|(_, same)| !same(running, loaded))
            .map(|(key, _)| *key),
    );
}

fn tls_cert(t: &Option<super::TlsFiles>) -> Option<std::path::PathBuf> {
    t.as_ref().map(|t| t.cert.clone())
}

fn tls_key(t: &Option<super::TlsFiles>) -> Option<std::path::PathBuf> {
    t.as_ref().map(|t| t.key.clone())
}

/// A CA file is the same when its path and its contents are.
fn ca_file(ca: &Option<super::CaFile>) -> Option<(std::path::PathBuf, Vec<u8>)> {
    ca.as_ref().map(|ca| (ca.path.clone(), ca.pem.clone()))
}

// Each function destructures the running section without `..`, so a new
// field does not compile until it is sorted: reloadable (in `RELOADABLE`,
// taken from the loaded config in `merge`) or start-up only (in the table).

fn server_changes(running: &ServerConfig, loaded: &ServerConfig, changed: &mut Vec<&'static str>) {
    let ServerConfig {
        listen: _,
        external_url: _,
        admin_listen: _,
        admin_token: _,
        tls: _,
        trusted_proxies: _,
        client_ca: _,
        prefix: _,
        header_read_timeout: _,
        idle_timeout: _,
        max_header_bytes: _,
        max_connections: _,
        max_connections_per_client: _,
        shutdown_grace: _,
        thread_per_core: _,
        log_format: _,
        debug_endpoint: _,
        access_log: _,
        pages: _,
    } = running;
    note(SERVER, running, loaded, changed);
}

fn oidc_changes(running: &OidcConfig, loaded: &OidcConfig, changed: &mut Vec<&'static str>) {
    let OidcConfig {
        issuer: _,
        client_id: _,
        client_secret: _,
        scopes: _,
        user_claim: _,
        email_claim: _,
        groups_claim: _,
        userinfo_fallback: _,
        allow_unverified_email: _,
        extra_audiences: _,
        bearer_issuers: _,
        rp_logout: _,
        http_timeout: _,
        clock_leeway: _,
        capture: _,
    } = running;
    note(OIDC, running, loaded, changed);
}

fn session_changes(
    running: &SessionConfig,
    loaded: &SessionConfig,
    changed: &mut Vec<&'static str>,
) {
    let SessionConfig {
        cookie_name: _,
        cookie_domain: _,
        cookie_secure: _,
        secrets: _,
        lifetime: _,
        idle_timeout: _,
        refresh: _,
        store: _,
        redis_urls: _,
        redis_ca: _,
        local_cache: _,
    } = running;
    note(SESSION, running, loaded, changed);
}

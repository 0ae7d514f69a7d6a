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

/// Pushes `key` when `same` is false.
fn note(changed: &mut Vec<&'static str>, key: &'static str, same: bool) {
    if !same {
        changed.push(key);
    }
}

// Each function destructures the running section without `..`, so a new
// field does not compile until it is sorted into reloadable or not.

fn server_changes(running: &ServerConfig, loaded: &ServerConfig, changed: &mut Vec<&'static str>) {
    let ServerConfig {
        listen,
        external_url,
        admin_listen,
        admin_token,
        tls,
        trusted_proxies: _,
        client_ca,
        prefix: _,
        header_read_timeout,
        idle_timeout,
        max_header_bytes,
        max_connections,
        max_connections_per_client: _,
        shutdown_grace,
        log_format,
        debug_endpoint: _,
        access_log: _,
        pages: _,
    } = running;
    let c = changed;
    note(c, "server.listen", *listen == loaded.listen);
    note(
        c,
        "server.external_url",
        *external_url == loaded.external_url,
    );
    note(
        c,
        "server.admin_listen",
        *admin_listen == loaded.admin_listen,
    );
    note(
        c,
        "server.admin_token_file",
        *admin_token == loaded.admin_token,
    );
    let cert = |t: &Option<super::TlsFiles>| t.as_ref().map(|t| t.cert.clone());
    let key = |t: &Option<super::TlsFiles>| t.as_ref().map(|t| t.key.clone());
    note(c, "server.tls_cert", cert(tls) == cert(&loaded.tls));
    note(c, "server.tls_key", key(tls) == key(&loaded.tls));
    note(c, "server.client_ca", *client_ca == loaded.client_ca);
    note(
        c,
        "server.header_read_timeout",
        *header_read_timeout == loaded.header_read_timeout,
    );
    note(
        c,
        "server.idle_timeout",
        *idle_timeout == loaded.idle_timeout,
    );
    note(
        c,
        "server.max_header_bytes",
        *max_header_bytes == loaded.max_header_bytes,
    );
    note(
        c,
        "server.max_connections",
        *max_connections == loaded.max_connections,
    );
    note(
        c,
        "server.shutdown_grace",
        *shutdown_grace == loaded.shutdown_grace,
    );
    note(c, "server.log_format", *log_format == loaded.log_format);
}

fn oidc_changes(running: &OidcConfig, loaded: &OidcConfig, changed: &mut Vec<&'static str>) {
    let OidcConfig {
        issuer,
        client_id,
        client_secret,
        scopes,
        user_claim,
        email_claim,
        groups_claim,
        userinfo_fallback,
        allow_unverified_email,
        extra_audiences,
        bearer_issuers,
        rp_logout: _,
        http_timeout,
        clock_leeway,
        capture,
    } = running;
    let c = changed;
    note(c, "oidc.issuer", *issuer == loaded.issuer);
    note(c, "oidc.client_id", *client_id == loaded.client_id);
    note(
        c,
        "oidc.client_secret",
        *client_secret == loaded.client_secret,
    );
    note(c, "oidc.scopes", *scopes == loaded.scopes);
    note(c, "oidc.user_claim", *user_claim == loaded.user_claim);
    note(c, "oidc.email_claim", *email_claim == loaded.email_claim);
    note(c, "oidc.groups_claim", *groups_claim == loaded.groups_claim);
    note(
        c,
        "oidc.userinfo_fallback",
        *userinfo_fallback == loaded.userinfo_fallback,
    );
    note(
        c,
        "oidc.allow_unverified_email",
        *allow_unverified_email == loaded.allow_unverified_email,
    );
    note(
        c,
        "oidc.extra_audiences",
        *extra_audiences == loaded.extra_audiences,
    );
    note(
        c,
        "oidc.bearer_issuers",
        *bearer_issuers == loaded.bearer_issuers,
    );
    note(c, "oidc.http_timeout", *http_timeout == loaded.http_timeout);
    note(c, "oidc.clock_leeway", *clock_leeway == loaded.clock_leeway);
    // The claims the login and the bearer verifiers keep (from `[headers]`):
    // new header names apply at once, new claim paths after a restart.
    note(
        c,
        "headers.preferred_username_claim",
        capture.preferred_username == loaded.capture.preferred_username,
    );
    note(c, "headers.claims", capture.claims == loaded.capture.claims);
}

fn session_changes(
    running: &SessionConfig,
    loaded: &SessionConfig,
    changed: &mut Vec<&'static str>,
) {
    let SessionConfig {
        cookie_name,
        cookie_domain,
        cookie_secure,
        secrets,
        lifetime,
        idle_timeout,
        refresh: _,
        store,
        redis_urls,
        redis_ca,
        local_cache,
    } = running;
    let c = changed;
    note(c, "session.cookie_name", *cookie_name == loaded.cookie_name);
    note(
        c,
        "session.cookie_domain",
        *cookie_domain == loaded.cookie_domain,
    );
    note(
        c,
        "session.cookie_secure",
        *cookie_secure == loaded.cookie_secure,
    );
    note(c, "session.secret", *secrets == loaded.secrets);
    note(c, "session.lifetime", *lifetime == loaded.lifetime);
    note(
        c,
        "session.idle_timeout",
        *idle_timeout == loaded.idle_timeout,
    );
    note(c, "session.store", *store == loaded.store);
    note(c, "session.redis_url", *redis_urls == loaded.redis_urls);
    let pem = |ca: &Option<super::CaFile>| ca.as_ref().map(|ca| (ca.path.clone(), ca.pem.clone()));
    note(
        c,
        "session.redis_ca",
        pem(redis_ca) == pem(&loaded.redis_ca),
    );
    note(c, "session.local_cache", *local_cache == loaded.local_cache);
}

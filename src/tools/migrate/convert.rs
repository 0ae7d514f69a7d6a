//! From oauth2-proxy [`Options`] to portcullis TOML text. Each option set is
//! either written as a portcullis key or named in a `# not converted:`
//! comment saying why; options left at oauth2-proxy's defaults are written
//! where portcullis's default differs (listen address, session lifetime,
//! `Host` to the upstream, bearer tokens, the user claim). Part of `migrate`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use url::Url;

mod rules;

use super::options::{Options, Source, Value, SECRETS};
use super::{Converted, MigrateError};
#[cfg(test)]
pub(super) use rules::regex_prefix;
use rules::{render_rule, Rule};

/// oauth2-proxy providers that are OpenID Connect underneath, and the issuer
/// each uses when `oidc_issuer_url` is not set.
const OIDC_PROVIDERS: &[(&str, Option<&str>)] = &[
    ("oidc", None),
    ("keycloak-oidc", None),
    ("google", Some("https://accounts.google.com")),
    ("gitlab", Some("https://gitlab.com")),
    ("azure", None),
    ("entra-id", None),
    ("adfs", None),
    ("cidaas", None),
];

/// The portcullis section a line belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Section {
    Server,
    Oidc,
    Session,
    Headers,
    Proxy,
    Access,
}

/// The conversion in progress.
struct Convert<'a> {
    opts: &'a Options,
    lines: Vec<(Section, String)>,
    bearer_issuers: Vec<Vec<String>>,
    rules: Vec<Rule>,
    handled: BTreeSet<&'static str>,
    warnings: Vec<String>,
}

/// Converts; see the module docs.
pub fn convert(opts: &Options) -> Result<Converted, MigrateError> {
    let mut c = Convert {
        opts,
        lines: Vec::new(),
        bearer_issuers: Vec::new(),
        rules: Vec::new(),
        handled: BTreeSet::new(),
        warnings: Vec::new(),
    };
    c.server();
    c.oidc()?;
    c.session();
    c.headers();
    c.access_rules()?;
    c.access();
    c.leftovers();
    Ok(c.finish())
}

// === impl Convert: sections ===

impl Convert<'_> {
    fn server(&mut self) {
        use Section::Server;
        let o = self.opts;
        let tls = o.non_empty("tls_cert_file").is_some() || o.non_empty("tls_key_file").is_some();
        let (listen_key, default) = if tls {
            ("https_address", ":443")
        } else {
            ("http_address", "127.0.0.1:4180")
        };
        let written = o.non_empty(listen_key).unwrap_or(default).to_owned();
        self.take(listen_key);
        match listen_address(&written) {
            Some(addr) => {
                if !o.is_set(listen_key) {
                    self.comment(Server, format!("oauth2-proxy's default {listen_key}"));
                }
                self.kv(Server, "listen", q(&addr));
            }
            None => self.not_converted(
                Server,
                listen_key,
                "portcullis listens on a TCP address; unix sockets and inherited descriptors are not supported",
            ),
        }
        if tls {
            if o.is_set("http_address") {
                self.not_converted(Server, "http_address", "portcullis has one listener; with TLS it serves https only (plain-http redirects are the front proxy's job)");
            }
            for (cfg, key) in [("tls_cert_file", "tls_cert"), ("tls_key_file", "tls_key")] {
                if let Some(path) = o.non_empty(cfg) {
                    self.kv(Server, key, q(&absolute(path)));
                    self.take(cfg);
                }
            }
        }
        for cfg in ["tls_min_version", "tls_cipher_suites"] {
            self.not_converted_if_set(Server, cfg, "portcullis uses rustls's defaults: TLS 1.2 and 1.3 with its safe cipher suites only");
        }
        if let Some(prefix) = o.non_empty("proxy_prefix") {
            self.take("proxy_prefix");
            if prefix != "/oauth2" {
                self.kv(Server, "prefix", q(prefix.trim_end_matches('/')));
            }
        }
        self.redirect_url();
        self.trusted_proxies();
        if let Some(addr) = o.non_empty("metrics_address") {
            match listen_address(addr).filter(|a| is_loopback(a)) {
                Some(a) => {
                    self.comment(Server, "metrics_address: /metrics, /healthz and /readyz are served here");
                    self.kv(Server, "admin_listen", q(&a));
                    self.take("metrics_address");
                }
                None => self.not_converted(Server, "metrics_address", "admin_listen on a non-loopback address also needs server.admin_token_file (a bearer token for /metrics and /admin); set both by hand"),
            }
        }
        if o.bool("request_logging") == Some(true) {
            self.kv(Server, "access_log", "true".to_owned());
            self.take("request_logging");
        }
    }

    /// `redirect_url` → `external_url` (its origin), when its path is the callback.
    fn redirect_url(&mut self) {
        let Some(text) = self.opts.non_empty("redirect_url").map(str::to_owned) else {
            return;
        };
        let prefix = self
            .opts
            .non_empty("proxy_prefix")
            .unwrap_or("/oauth2")
            .trim_end_matches('/')
            .to_owned();
        match Url::parse(&text) {
            Ok(url) if url.path() == format!("{prefix}/callback") && url.host_str().is_some() => {
                self.comment(
                    Section::Server,
                    format!(
                        "redirect_url {text}: logins run on this host; register {text} at the IdP (unchanged)"
                    ),
                );
                self.kv(
                    Section::Server,
                    "external_url",
                    q(url.origin().ascii_serialization().as_str()),
                );
                self.take("redirect_url");
            }
            Ok(_) => self.not_converted(
                Section::Server,
                "redirect_url",
                &format!("portcullis's callback is always <external_url>{prefix}/callback; set server.external_url and register that URL at the IdP"),
            ),
            Err(_) => self.not_converted(
                Section::Server,
                "redirect_url",
                "a relative redirect URL: portcullis uses the request's own host when server.external_url is absent, which is the same",
            ),
        }
    }

    fn trusted_proxies(&mut self) {
        let o = self.opts;
        let reverse = o.bool("reverse_proxy").unwrap_or(false);
        self.take("reverse_proxy");
        let listed = o.list("trusted_proxy_ips");
        if !reverse {
            if !listed.is_empty() {
                self.not_converted(
                    Section::Server,
                    "trusted_proxy_ips",
                    "reverse_proxy is off, so oauth2-proxy ignored it",
                );
            }
            self.comment(Section::Server, "reverse_proxy is off: portcullis still believes X-Forwarded-* (which forward auth needs) from loopback peers only, its default; list your front proxies in trusted_proxies");
            return;
        }
        if listed.is_empty() {
            self.comment(Section::Server, "reverse_proxy = true without trusted_proxy_ips: oauth2-proxy believed X-Forwarded-* from every address; portcullis believes loopback peers only (its default): list your front proxies in trusted_proxies");
            self.warn("list your front proxies in server.trusted_proxies: oauth2-proxy trusted X-Forwarded-* from every address");
            return;
        }
        self.take("trusted_proxy_ips");
        self.kv(Section::Server, "trusted_proxies", list(&listed));
        if let Some(h) = o.non_empty("real_client_ip_header") {
            if !h.eq_ignore_ascii_case("x-forwarded-for") {
                self.not_converted(Section::Server, "real_client_ip_header", "portcullis takes the client address from X-Forwarded-For (walked from the right past trusted_proxies)");
            } else {
                self.take("real_client_ip_header");
            }
        }
    }

    fn oidc(&mut self) -> Result<(), MigrateError> {
        use Section::Oidc;
        let o = self.opts;
        let provider = o.non_empty("provider").unwrap_or("google").to_owned();
        self.take("provider");
        let Some((_, default_issuer)) = OIDC_PROVIDERS.iter().find(|(p, _)| *p == provider) else {
            return Err(MigrateError::NotOidc { provider });
        };
        let issuer = match (o.non_empty("oidc_issuer_url"), default_issuer) {
            (Some(i), _) => i.to_owned(),
            (None, Some(d)) => d.to_string(),
            (None, None) => String::new(),
        };
        self.take("oidc_issuer_url");
        if provider != "oidc" {
            self.comment(Oidc, format!("provider {provider:?}: converted as plain OpenID Connect; its provider-specific behaviour is not carried over"));
        }
        if !o.is_set("provider") {
            self.comment(
                Oidc,
                "provider not set: oauth2-proxy's default is \"google\"",
            );
        }
        self.kv(Oidc, "issuer", q(&issuer));
        if let Some(id) = o.str("client_id") {
            self.kv(Oidc, "client_id", q(id));
            self.take("client_id");
        }
        if let Some(path) = o.non_empty("client_secret_file") {
            self.kv(Oidc, "client_secret_file", q(&absolute(path)));
            self.take("client_secret_file");
            if o.is_set("client_secret") {
                self.not_converted(Oidc, "client_secret", "client_secret_file takes precedence");
            }
        } else if o.non_empty("client_secret").is_some() {
            self.secret(
                Oidc,
                "client_secret",
                "client_secret",
                "PORTCULLIS_OIDC_CLIENT_SECRET",
            );
        }
        let groups = !o.list("allowed_groups").is_empty();
        let scopes: Vec<String> = match o.non_empty("scope") {
            Some(s) => {
                self.take("scope");
                s.split_whitespace().map(str::to_owned).collect()
            }
            None => {
                let mut s = vec![
                    "openid".to_owned(),
                    "email".to_owned(),
                    "profile".to_owned(),
                ];
                if groups {
                    s.push("groups".to_owned());
                }
                self.comment(Oidc, if groups {
                    "oauth2-proxy's default scopes, with \"groups\" because allowed_groups is set"
                } else {
                    "oauth2-proxy's default scopes (add \"groups\" if rules are to use groups)"
                });
                s
            }
        };
        self.kv(Oidc, "scopes", list(&scopes));
        let email_claim = match (
            o.non_empty("oidc_email_claim"),
            o.non_empty("user_id_claim"),
        ) {
            (Some(c), _) => Some(c.to_owned()),
            (None, Some(c)) => Some(c.to_owned()),
            _ => None,
        };
        self.take("oidc_email_claim");
        self.take("user_id_claim");
        if o.bool("prefer_email_to_user") == Some(true) {
            self.take("prefer_email_to_user");
            self.comment(Oidc, "prefer_email_to_user: the user is the e-mail address");
            self.kv(
                Oidc,
                "user_claim",
                q(email_claim.as_deref().unwrap_or("email")),
            );
        } else {
            self.comment(
                Oidc,
                "oauth2-proxy's user is the sub claim (portcullis's default is preferred_username)",
            );
            self.kv(Oidc, "user_claim", q("sub"));
        }
        if let Some(c) = email_claim.filter(|c| c != "email") {
            self.kv(Oidc, "email_claim", q(&c));
        }
        if let Some(c) = o.non_empty("oidc_groups_claim") {
            self.take("oidc_groups_claim");
            if c != "groups" {
                self.kv(Oidc, "groups_claim", q(c));
            }
        }
        if o.bool("insecure_oidc_allow_unverified_email") == Some(true) {
            self.kv(Oidc, "allow_unverified_email", "true".to_owned());
            self.take("insecure_oidc_allow_unverified_email");
        }
        if o.bool("skip_claims_from_profile_url") == Some(true) {
            self.kv(Oidc, "userinfo_fallback", "false".to_owned());
            self.take("skip_claims_from_profile_url");
        }
        let audiences = o.list("oidc_extra_audiences");
        if !audiences.is_empty() {
            self.kv(Oidc, "extra_audiences", list(&audiences));
            self.take("oidc_extra_audiences");
        }
        if let Some(m) = o.non_empty("code_challenge_method") {
            self.take("code_challenge_method");
            self.comment(
                Oidc,
                format!("code_challenge_method = {m:?}: portcullis always uses PKCE with S256"),
            );
        }
        self.extra_jwt_issuers();
        let why_discovery =
            "portcullis reads every endpoint and the keys from the issuer's discovery document";
        for cfg in [
            "skip_oidc_discovery",
            "login_url",
            "redeem_url",
            "oidc_jwks_url",
            "oidc_public_key_files",
            "profile_url",
            "validate_url",
        ] {
            self.not_converted_if_set(Oidc, cfg, why_discovery);
        }
        Ok(())
    }

    /// `extra_jwt_issuers` (`issuer=audience`) → `[[oidc.bearer_issuers]]`.
    fn extra_jwt_issuers(&mut self) {
        let o = self.opts;
        let issuers = o.list("extra_jwt_issuers");
        if issuers.is_empty() {
            return;
        }
        if o.bool("skip_jwt_bearer_tokens") != Some(true) {
            self.not_converted(
                Section::Oidc,
                "extra_jwt_issuers",
                "skip_jwt_bearer_tokens is off, so oauth2-proxy ignored it",
            );
            return;
        }
        self.take("extra_jwt_issuers");
        for pair in issuers {
            match pair.split_once('=') {
                Some((iss, aud)) if !iss.is_empty() && !aud.is_empty() => {
                    self.bearer_issuers.push(vec![
                        format!("# extra_jwt_issuers: {pair}"),
                        format!("issuer = {}", q(iss)),
                        format!("audiences = {}", list(&[aud.to_owned()])),
                        format!("user_claim = {}", q("sub")),
                    ]);
                }
                _ => self.comment(
                    Section::Oidc,
                    format!(
                        "not converted: extra_jwt_issuers entry {pair:?} (not issuer=audience)"
                    ),
                ),
            }
        }
    }

    fn session(&mut self) {
        use Section::Session;
        let o = self.opts;
        if let Some(name) = o.non_empty("cookie_name") {
            self.kv(Session, "cookie_name", q(name));
            self.take("cookie_name");
        }
        self.cookie_domain();
        match o.bool("cookie_secure") {
            Some(false) => {
                self.take("cookie_secure");
                self.kv(Session, "cookie_secure", "false".to_owned());
            }
            Some(true) => self.same(Session, "cookie_secure", "portcullis's default"),
            None => {}
        }
        self.comment(Session, "a fresh secret: portcullis seals its cookies in its own format, so oauth2-proxy's cookie_secret is not reused and users sign in once more. Keep it out of this file in production: secret_file or PORTCULLIS_SESSION_SECRET");
        self.kv(Session, "secret", q(&fresh_secret()));
        for cfg in ["cookie_secret", "cookie_secret_file"] {
            self.not_converted_if_set(Session, cfg, "replaced by the fresh session.secret above");
        }
        let expire = o
            .duration("cookie_expire")
            .unwrap_or(Duration::from_secs(168 * 3600));
        self.take("cookie_expire");
        if expire.is_zero() {
            self.comment(Session, "cookie_expire = 0 (a browser-session cookie): portcullis's cookie lives as long as the session; lifetime left at its default");
        } else {
            if !o.is_set("cookie_expire") {
                self.comment(Session, "oauth2-proxy's default cookie_expire (168h)");
            }
            self.kv(Session, "lifetime", q(&human(expire)));
        }
        match o.duration("cookie_refresh") {
            Some(d) if !d.is_zero() => {
                self.comment(Session, format!("cookie_refresh = {:?}: portcullis renews the claims with the refresh token shortly before the ID token expires, not at a fixed interval; request the offline_access scope if the IdP needs it", o.str("cookie_refresh").unwrap_or("")));
                self.kv(Session, "refresh", "true".to_owned());
                self.take("cookie_refresh");
            }
            Some(_) => self.same(
                Session,
                "cookie_refresh",
                "no refresh, portcullis's default",
            ),
            None => {}
        }
        if o.bool("cookie_httponly") == Some(true) {
            self.same(
                Session,
                "cookie_httponly",
                "portcullis's session cookie is always HttpOnly",
            );
        }
        self.not_converted_if_set(
            Session,
            "cookie_httponly",
            "portcullis's session cookie is always HttpOnly",
        );
        self.not_converted_if_set(
            Session,
            "cookie_path",
            "portcullis's session cookie always has Path=/",
        );
        self.not_converted_if_set(
            Session,
            "cookie_samesite",
            "portcullis's session cookie is always SameSite=Lax",
        );
        for cfg in [
            "cookie_csrf_expire",
            "cookie_csrf_per_request",
            "cookie_csrf_per_request_limit",
            "cookie_csrf_samesite",
        ] {
            self.not_converted_if_set(Session, cfg, "portcullis keeps one short-lived flow cookie per login in progress (capped), with its own expiry");
        }
        self.store();
    }

    /// `cookie_domains` (the longest match per request) → one `cookie_domain`.
    fn cookie_domain(&mut self) {
        let domains = self.opts.list("cookie_domains");
        let Some(shortest) = domains
            .iter()
            .min_by_key(|d| d.trim_start_matches('.').len())
        else {
            return;
        };
        let shortest = shortest.clone();
        let bare = |d: &str| d.trim_start_matches('.').to_ascii_lowercase();
        let covered = domains.iter().all(|d| {
            let d = bare(d);
            d == bare(&shortest) || d.ends_with(&format!(".{}", bare(&shortest)))
        });
        self.take("cookie_domains");
        self.kv(Section::Session, "cookie_domain", q(&shortest));
        if domains.len() > 1 {
            let why = if covered {
                "portcullis sets one cookie domain; the widest one covers the others".to_owned()
            } else {
                format!("portcullis sets one cookie domain ({shortest}); the others ({}) need a gateway of their own", domains.iter().filter(|d| **d != shortest).cloned().collect::<Vec<_>>().join(", "))
            };
            self.comment(
                Section::Session,
                format!("cookie_domains = {}: {why}", list(&domains)),
            );
        }
    }

    /// `session_store_type` and `redis_*`.
    fn store(&mut self) {
        use Section::Session;
        let o = self.opts;
        let kind = o
            .non_empty("session_store_type")
            .unwrap_or("cookie")
            .to_owned();
        self.take("session_store_type");
        if kind != "redis" {
            self.comment(Session, "session_store_type = \"cookie\": portcullis keeps sessions server-side; \"memory\" serves one instance, use store = \"redis\" to share sessions between several");
            for cfg in [
                "redis_connection_url",
                "redis_cluster_connection_urls",
                "redis_sentinel_connection_urls",
                "redis_use_cluster",
                "redis_use_sentinel",
                "redis_sentinel_master_name",
                "redis_password",
                "redis_username",
                "redis_sentinel_password",
                "redis_ca_path",
                "redis_insecure_skip_tls_verify",
                "redis_connection_idle_timeout",
            ] {
                self.not_converted_if_set(Session, cfg, "session_store_type is not redis");
            }
            self.not_converted_if_set(
                Session,
                "session_cookie_minimal",
                "portcullis's cookie holds only a session reference; tokens stay server-side",
            );
            return;
        }
        self.not_converted_if_set(
            Session,
            "session_cookie_minimal",
            "applies to cookie sessions only",
        );
        self.kv(Session, "store", q("redis"));
        let creds = self.redis_credentials();
        if o.bool("redis_use_sentinel") == Some(true) {
            self.take("redis_use_sentinel");
            let hosts: Vec<String> = o
                .list("redis_sentinel_connection_urls")
                .iter()
                .map(|u| host_port(u))
                .collect();
            let master = o
                .non_empty("redis_sentinel_master_name")
                .unwrap_or("mymaster");
            self.take("redis_sentinel_connection_urls");
            self.take("redis_sentinel_master_name");
            self.kv(
                Session,
                "redis_url",
                q(&format!(
                    "redis+sentinel://{creds}{}/{master}",
                    hosts.join(",")
                )),
            );
            self.not_converted_if_set(
                Session,
                "redis_sentinel_password",
                "portcullis authenticates to the sentinels with the credentials in redis_url",
            );
        } else if o.bool("redis_use_cluster") == Some(true) {
            self.take("redis_use_cluster");
            let urls: Vec<String> = o
                .list("redis_cluster_connection_urls")
                .iter()
                .map(|u| with_credentials(u, &creds))
                .collect();
            self.take("redis_cluster_connection_urls");
            self.kv(Session, "redis_url", list(&urls));
        } else if let Some(url) = o.non_empty("redis_connection_url") {
            let url = with_credentials(url, &creds);
            self.take("redis_connection_url");
            self.kv(Session, "redis_url", q(&url));
        }
        if let Some(ca) = o.non_empty("redis_ca_path") {
            self.kv(Session, "redis_ca", q(&absolute(ca)));
            self.take("redis_ca_path");
        }
        self.not_converted_if_set(
            Session,
            "redis_insecure_skip_tls_verify",
            "portcullis always verifies the Redis certificate; give its CA as redis_ca",
        );
        self.not_converted_if_set(
            Session,
            "redis_connection_idle_timeout",
            "portcullis keeps its Redis connections alive itself",
        );
    }

    /// `user:password@` for Redis URLs, from `redis_username` / `redis_password`.
    fn redis_credentials(&mut self) -> String {
        let o = self.opts;
        let user = o.non_empty("redis_username").map(str::to_owned);
        self.take("redis_username");
        let password = match (o.non_empty("redis_password"), o.source("redis_password")) {
            (Some(_), Some(Source::Env)) => {
                self.comment(Section::Session, "redis_password came from OAUTH2_PROXY_REDIS_PASSWORD and is not printed: put it into redis_url (redis://:PASSWORD@host:port)");
                self.take("redis_password");
                None
            }
            (Some(p), _) => {
                self.take("redis_password");
                Some(p.to_owned())
            }
            _ => None,
        };
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        match (user, password) {
            (None, None) => String::new(),
            (Some(u), None) => format!("{}@", enc(&u)),
            (u, Some(p)) => format!("{}:{}@", enc(u.as_deref().unwrap_or("")), enc(&p)),
        }
    }

    fn headers(&mut self) {
        use Section::Headers;
        let o = self.opts;
        let xauth = o.bool("set_xauthrequest") == Some(true);
        let proxying = !o.list("upstreams").is_empty();
        let pass_user = o.bool("pass_user_headers").unwrap_or(true);
        if proxying {
            self.take("pass_user_headers");
        }
        if xauth {
            self.take("set_xauthrequest");
            self.comment(Headers, "set_xauthrequest: oauth2-proxy's X-Auth-Request-User/-Email/-Groups/-Preferred-Username (and -Access-Token) in forward-auth answers and, in portcullis, also towards proxied apps");
            self.kv(Headers, "preset", q("oauth2-proxy"));
            if proxying && pass_user {
                self.comment(Headers, "pass_user_headers: the proxied apps receive the X-Auth-Request-* names instead of X-Forwarded-User/-Email/-Groups/-Preferred-Username");
            }
        } else if proxying && pass_user {
            self.comment(Headers, "pass_user_headers (oauth2-proxy's default): the names oauth2-proxy sends to proxied apps");
            self.kv(Headers, "user", q("X-Forwarded-User"));
            self.kv(Headers, "email", q("X-Forwarded-Email"));
            self.kv(Headers, "groups", q("X-Forwarded-Groups"));
            self.kv(
                Headers,
                "preferred_username",
                q("X-Forwarded-Preferred-Username"),
            );
        }
        if o.bool("pass_access_token") == Some(true) {
            self.take("pass_access_token");
            self.comment(Headers, if xauth { "pass_access_token: the access token travels as X-Auth-Request-Access-Token, in answers and towards proxied apps (oauth2-proxy sent X-Forwarded-Access-Token upstream)" } else { "pass_access_token: the access token travels as X-Auth-Access-Token (oauth2-proxy: X-Forwarded-Access-Token upstream, X-Auth-Request-Access-Token in answers)" });
            self.kv(Headers, "pass_access_token", "true".to_owned());
        }
        if o.bool("pass_authorization_header") == Some(true) {
            self.take("pass_authorization_header");
            self.kv(Headers, "pass_authorization", "true".to_owned());
        }
        for cfg in ["pass_access_token", "pass_authorization_header"] {
            if o.bool(cfg) == Some(false) {
                self.same(Headers, cfg, "off, portcullis's default");
            }
        }
        if o.bool("skip_auth_strip_headers") == Some(true) {
            self.same(
                Headers,
                "skip_auth_strip_headers",
                "portcullis always removes client copies of its identity headers",
            );
        }
        if o.is_set("set_xauthrequest") && !xauth {
            self.same(
                Headers,
                "set_xauthrequest",
                "portcullis's own X-Auth-* names",
            );
        }
        if o.is_set("pass_user_headers") && !proxying {
            self.not_converted(
                Headers,
                "pass_user_headers",
                "there is no http(s) upstream to send them to",
            );
        }
        self.not_converted_if_set(
            Headers,
            "skip_auth_strip_headers",
            "portcullis always removes client copies of its identity headers, on public routes too",
        );
        self.not_converted_if_set(Headers, "set_authorization_header", "portcullis does not put the ID token into forward-auth answers; pass_authorization sends it to proxied apps");
        self.not_converted_if_set(
            Headers,
            "set_basic_auth",
            "portcullis sends no Basic credentials to apps; they read the identity headers",
        );
        self.not_converted_if_set(
            Headers,
            "pass_basic_auth",
            "portcullis sends no Basic credentials to apps; they read the identity headers",
        );
        self.not_converted_if_set(
            Headers,
            "basic_auth_password",
            "portcullis sends no Basic credentials to apps",
        );
    }

    fn access(&mut self) {
        let domains = self.opts.list("whitelist_domains");
        if domains.is_empty() {
            return;
        }
        self.take("whitelist_domains");
        let mut out = Vec::new();
        for d in &domains {
            let d = d
                .strip_prefix("*.")
                .map(|r| format!(".{r}"))
                .unwrap_or_else(|| d.clone());
            let (host, port) = match d.rsplit_once(':') {
                Some((h, p)) if p == "*" || p.parse::<u16>().is_ok() => {
                    (h.to_owned(), Some(p.to_owned()))
                }
                _ => (d.clone(), None),
            };
            if let Some(p) = port {
                self.comment(Section::Access, format!("whitelist_domains entry {d:?}: portcullis matches redirect hosts on any port (port {p} dropped)"));
            }
            if !out.contains(&host) {
                out.push(host);
            }
        }
        self.kv(Section::Access, "allowed_redirect_domains", list(&out));
    }

    /// Every option set but not yet dealt with gets its comment.
    fn leftovers(&mut self) {
        let left: Vec<&'static str> = self
            .opts
            .set
            .keys()
            .copied()
            .filter(|k| !self.handled.contains(k))
            .collect();
        for cfg in left {
            let (section, why) = reason(cfg);
            self.not_converted(section, cfg, why);
        }
    }

    fn finish(self) -> Converted {
        let mut out = String::new();
        out.push_str("# portcullis configuration converted from oauth2-proxy by `portcullis migrate oauth2-proxy`.\n");
        let sources: Vec<String> = [
            self.opts
                .file
                .as_ref()
                .map(|f| format!("config file {}", f.display())),
            count(self.opts, Source::Env).map(|n| format!("{n} OAUTH2_PROXY_* variable(s)")),
            count(self.opts, Source::Flag).map(|n| format!("{n} flag(s)")),
        ]
        .into_iter()
        .flatten()
        .collect();
        out.push_str(&format!(
            "# Read: {}.\n",
            if sources.is_empty() {
                "nothing (oauth2-proxy's defaults)".to_owned()
            } else {
                sources.join(", ")
            }
        ));
        out.push_str("# Review every \"not converted\" comment; docs/migrating-from-oauth2-proxy.md explains the differences.\n");
        for w in &self.warnings {
            out.push_str(&format!("# WARNING: {w}\n"));
        }
        for (section, header) in [
            (Section::Server, "[server]"),
            (Section::Oidc, "[oidc]"),
            (Section::Session, "[session]"),
            (Section::Headers, "[headers]"),
            (Section::Proxy, "[proxy]"),
            (Section::Access, "[access]"),
        ] {
            let lines: Vec<&String> = self
                .lines
                .iter()
                .filter(|(s, _)| *s == section)
                .map(|(_, l)| l)
                .collect();
            if lines.is_empty() {
                continue;
            }
            out.push('\n');
            out.push_str(header);
            out.push('\n');
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
            if section == Section::Oidc {
                for issuer in &self.bearer_issuers {
                    out.push_str("\n[[oidc.bearer_issuers]]\n");
                    for l in issuer {
                        out.push_str(l);
                        out.push('\n');
                    }
                }
            }
        }
        for (i, rule) in self.rules.iter().enumerate() {
            out.push('\n');
            out.push_str(&render_rule(i, rule));
        }
        Converted {
            toml: out,
            warnings: self.warnings,
        }
    }
}

// === impl Convert: helpers ===

impl Convert<'_> {
    fn take(&mut self, cfg: &'static str) {
        self.handled.insert(cfg);
    }

    fn kv(&mut self, section: Section, key: &str, value: String) {
        self.lines.push((section, format!("{key} = {value}")));
    }

    fn comment(&mut self, section: Section, text: impl AsRef<str>) {
        self.lines.push((section, format!("# {}", text.as_ref())));
    }

    fn warn(&mut self, text: impl Into<String>) {
        self.warnings.push(text.into());
    }

    /// `# not converted: cfg = value (why)`, the value left out for secrets.
    fn not_converted(&mut self, section: Section, cfg: &'static str, why: &str) {
        let shown = match self.opts.set.get(cfg) {
            _ if SECRETS.contains(&cfg) => String::new(),
            Some((Value::Bool(b), _)) => format!(" = {b}"),
            Some((Value::Str(s), _)) => format!(" = {}", q(s)),
            Some((Value::List(l), _)) => format!(" = {}", list(l)),
            None => String::new(),
        };
        self.comment(section, format!("not converted: {cfg}{shown} ({why})"));
        self.take(cfg);
    }

    fn not_converted_if_set(&mut self, section: Section, cfg: &'static str, why: &str) {
        if self.opts.is_set(cfg) && !self.handled.contains(cfg) {
            self.not_converted(section, cfg, why);
        }
    }

    /// `# cfg = value: why` for an option whose meaning portcullis has without a key.
    fn same(&mut self, section: Section, cfg: &'static str, why: &str) {
        let shown = match self.opts.set.get(cfg) {
            Some((Value::Bool(b), _)) => b.to_string(),
            Some((Value::Str(s), _)) => q(s),
            Some((Value::List(l), _)) => list(l),
            None => String::new(),
        };
        self.comment(section, format!("{cfg} = {shown}: {why}"));
        self.take(cfg);
    }

    /// A secret option: inline when it was written in the file or a flag; a
    /// pointer to the portcullis variable when it came from the environment.
    fn secret(&mut self, section: Section, cfg: &'static str, key: &str, env: &str) {
        self.take(cfg);
        let Some(value) = self.opts.non_empty(cfg) else {
            return;
        };
        if self.opts.source(cfg) == Some(Source::Env) {
            let var = format!("OAUTH2_PROXY_{}", cfg.to_ascii_uppercase());
            self.comment(section, format!("{cfg} came from {var} and is not printed: give it to portcullis as {env} (or {key}_file)"));
        } else {
            self.kv(section, key, q(value));
        }
    }
}

// === free helpers ===

/// Why an option has no counterpart, for those without a specific comment.
fn reason(cfg: &str) -> (Section, &'static str) {
    use Section::{Access, Oidc, Server, Session};
    match cfg {
        "acr_values" | "approval_prompt" | "prompt" | "auth_request_response_mode" | "resource" => (Oidc, "portcullis sends a plain authorization request (code flow, PKCE, state, nonce)"),
        "insecure_oidc_skip_issuer_verification" => (Oidc, "portcullis compares the issuer exactly; for multi-tenant Azure use the tenant's issuer"),
        "insecure_oidc_skip_nonce" => (Oidc, "portcullis always checks the nonce"),
        "oidc_audience_claims" => (Oidc, "portcullis checks the aud claim (and azp)"),
        "oidc_enabled_signing_algs" => (Oidc, "portcullis accepts the asymmetric algorithms the issuer's keys declare"),
        "provider_ca_files" | "use_system_trust_store" => (Oidc, "portcullis verifies the IdP against the system trust store; add a private CA there"),
        "ssl_insecure_skip_verify" => (Oidc, "portcullis always verifies the IdP's certificate"),
        "backend_logout_url" => (Oidc, "portcullis can end the IdP session with oidc.rp_logout = true (end_session_endpoint) instead"),
        "custom_templates_dir" => (Server, "oauth2-proxy's Go templates do not carry over; portcullis's own 403, error and signed-out pages can be replaced with server.pages_dir, in its own placeholder syntax"),
        "provider_display_name" | "skip_provider_button" | "banner" | "footer" | "custom_sign_in_logo" | "show_debug_on_error" => (Server, "portcullis shows no sign-in page of its own; it sends the browser straight to the IdP"),
        "force_https" => (Server, "redirecting plain http to https is the front proxy's job"),
        "force_json_errors" => (Server, "portcullis answers JSON to clients that do not accept text/html"),
        "ping_path" | "ping_user_agent" | "ready_path" | "gcp_healthchecks" | "silence_ping_logging" => (Server, "portcullis serves /healthz and /readyz (on admin_listen when set)"),
        "metrics_secure_address" | "metrics_tls_cert_file" | "metrics_tls_key_file" => (Server, "portcullis serves /metrics on admin_listen (plain http; keep it on loopback or behind admin_token_file)"),
        "allow_query_semicolons" | "encode_state" | "relative_redirect_url" => (Server, "no counterpart; portcullis's behaviour here is fixed"),
        "signature_key" => (Server, "GAP-Signature has no counterpart; headers.assertion-style signed identity is the portcullis way once available"),
        "request_id_header" => (Server, "portcullis reads and sends X-Request-Id"),
        "request_logging" => (Server, "portcullis's access_log is off unless set"),
        c if c.starts_with("logging_") || c.ends_with("_logging") || c.ends_with("_logging_format") || c == "exclude_logging_paths" || c == "errors_to_info_log" => (Server, "portcullis logs to stderr (server.log_format text or json; RUST_LOG for levels); rotation is the service manager's job"),
        c if c.starts_with("cookie_") => (Session, "no counterpart"),
        c if c.starts_with("github_") || c.starts_with("gitlab_") || c.starts_with("google_") || c.starts_with("bitbucket_") || c.starts_with("azure_") || c.starts_with("entra_id_") || c.starts_with("keycloak_") || c == "jwt_key" || c == "jwt_key_file" || c == "pubjwk_url" => (Access, "a provider-specific option; portcullis speaks plain OpenID Connect: express the restriction with groups from the groups claim"),
        "trusted_proxy_ips" | "real_client_ip_header" => (Server, "applies only with reverse_proxy = true"),
        _ => (Access, "no counterpart in portcullis"),
    }
}

/// `http://0.0.0.0:4180`, `:4180`, `[::1]:4180` → a socket address text.
pub(super) fn listen_address(text: &str) -> Option<String> {
    let lower = text.trim().to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .unwrap_or(&lower);
    if rest.starts_with("unix:") || rest.starts_with("fd:") {
        return None;
    }
    let full = if rest.starts_with(':') {
        format!("0.0.0.0{rest}")
    } else {
        rest.to_owned()
    };
    full.parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| a.to_string())
}

fn is_loopback(addr: &str) -> bool {
    addr.parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback())
}

/// Relative paths resolve against the directory this runs in (oauth2-proxy
/// resolved them against its working directory; portcullis against its
/// config file's).
pub(super) fn absolute(path: &str) -> String {
    let p = Path::new(path);
    if p.is_absolute() {
        return path.to_owned();
    }
    std::env::current_dir()
        .map(|d| d.join(p).display().to_string())
        .unwrap_or_else(|_| path.to_owned())
}

/// `redis://host:port` → `host:port`.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// Puts `user:password@` into a Redis URL that has none.
fn with_credentials(url: &str, creds: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) if !creds.is_empty() && !rest.contains('@') => {
            format!("{scheme}://{creds}{rest}")
        }
        _ => url.to_owned(),
    }
}

fn count(opts: &Options, source: Source) -> Option<usize> {
    let n = opts.set.values().filter(|(_, s)| *s == source).count();
    (n > 0).then_some(n)
}

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A TOML array of strings.
fn list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", inner.join(", "))
}

/// A duration as portcullis writes it: the largest whole unit.
pub(super) fn human(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// 48 random bytes, base64url: a session secret well above the 32-byte minimum.
fn fresh_secret() -> String {
    use base64::Engine as _;
    use rand::RngCore;
    let mut b = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

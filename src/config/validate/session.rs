//! `[session]`: cookie attributes, session secrets (inline, file or
//! environment), lifetimes and the session store. Part of `validate`.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::{syntax, Checker, MIN_SESSION_SECRET_BYTES, SESSION_SECRET_ENV};
use crate::config::raw::{RawRedisUrl, RawSession};
use crate::config::{SessionConfig, StoreKind};
use crate::secret::Secret;

/// Shortest `session.idle_timeout`.
const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

// === impl Checker: [session] ===

impl Checker<'_> {
    pub(super) fn session(&mut self, raw: RawSession, external_url: Option<&Url>) -> SessionConfig {
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
            if !idle.is_zero() && idle < MIN_IDLE_TIMEOUT {
                // Shorter would slide the Redis expiry faster than it is written.
                self.problem("session.idle_timeout", "must be at least 1s");
            } else if !lifetime.is_zero() && idle >= lifetime {
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
        let redis_ca = raw.redis_ca.and_then(|path| {
            let tls = redis_urls.iter().any(|u| {
                u.expose().split_once("://").is_some_and(|(scheme, _)| {
                    scheme.eq_ignore_ascii_case("rediss")
                        || scheme.eq_ignore_ascii_case("rediss+sentinel")
                })
            });
            if store != StoreKind::Redis {
                self.problem("session.redis_ca", "is set but session.store is \"memory\"");
            } else if !redis_urls.is_empty() && !tls {
                self.problem(
                    "session.redis_ca",
                    "applies only to TLS connections; use a rediss:// (or rediss+sentinel://) session.redis_url",
                );
            }
            self.ca_file("session.redis_ca", path)
        });
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
            redis_ca,
            local_cache: raw.local_cache,
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

    fn redis_urls(&mut self, store: StoreKind, raw: Option<RawRedisUrl>) -> Vec<Secret<String>> {
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
        let cluster = urls.len() > 1 || matches!(raw, RawRedisUrl::Cluster(_));
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

//! `[session]`: cookie attributes, session secrets and the Redis URL (each
//! inline, from a file or from the environment, see `secrets`), lifetimes
//! and the session store. Part of `validate`.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::secrets::{words, Place};
use super::{
    syntax, Checker, MIN_SESSION_SECRET_BYTES, REDIS_URL_ENV, SESSION_SECRETS_ENV,
    SESSION_SECRET_ENV,
};
use crate::base::secret::Secret;
use crate::config::raw::{RawRedisUrl, RawSession};
use crate::config::{SessionConfig, StoreKind};

/// Shortest `session.idle_timeout`.
const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// The `session.secret*` keys as written.
struct SecretSources {
    secret: Option<Secret<String>>,
    secret_file: Option<PathBuf>,
    secrets: Option<Vec<Secret<String>>>,
    secrets_file: Option<PathBuf>,
}

// === impl Checker: [session] ===

impl Checker<'_> {
    pub(super) fn session(&mut self, raw: RawSession, external_url: Option<&Url>) -> SessionConfig {
        let secrets = self.session_secrets(SecretSources {
            secret: raw.secret,
            secret_file: raw.secret_file,
            secrets: raw.secrets,
            secrets_file: raw.secrets_file,
        });
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
        let redis_urls = self.redis_urls(store, raw.redis_url, raw.redis_url_file);
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

    /// Exactly one of the `session.secret*` keys or the two environment
    /// variables; each value at least [`MIN_SESSION_SECRET_BYTES`] long.
    fn session_secrets(&mut self, raw: SecretSources) -> Vec<Secret<Vec<u8>>> {
        let env_one = self.env_secret(SESSION_SECRET_ENV);
        let env_list = self.env_secret(SESSION_SECRETS_ENV);
        let given = [
            raw.secret.as_ref().map(|_| Place::Key("session.secret")),
            raw.secret_file
                .as_ref()
                .map(|_| Place::Key("session.secret_file")),
            raw.secrets.as_ref().map(|_| Place::Key("session.secrets")),
            raw.secrets_file
                .as_ref()
                .map(|_| Place::Key("session.secrets_file")),
            env_one.as_ref().map(|_| Place::Env(SESSION_SECRET_ENV)),
            env_list.as_ref().map(|_| Place::Env(SESSION_SECRETS_ENV)),
        ];
        if self.sole_place("session.secret", &given).is_err() {
            return Vec::new();
        }
        let candidates: Vec<(String, Vec<u8>)> = if let Some(s) = raw.secret {
            vec![("session.secret".to_owned(), s.expose().as_bytes().to_vec())]
        } else if let Some(path) = raw.secret_file {
            let bytes = self.read_secret_file("session.secret_file", path);
            bytes
                .map(|b| ("session.secret_file".to_owned(), b))
                .into_iter()
                .collect()
        } else if let Some(list) = raw.secrets {
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
        } else if let Some(path) = raw.secrets_file {
            let bytes = self.read_secret_file("session.secrets_file", path);
            bytes.map_or_else(Vec::new, |b| self.secret_list("session.secrets_file", &b))
        } else if let Some(s) = env_one {
            vec![(SESSION_SECRET_ENV.to_owned(), s.into_bytes())]
        } else if let Some(text) = env_list {
            self.secret_list(SESSION_SECRETS_ENV, text.as_bytes())
        } else {
            self.problem(
                "session.secret",
                format!("is required: set secret_file, secret, secrets, secrets_file or the {SESSION_SECRET_ENV} (or {SESSION_SECRETS_ENV}) environment variable to at least {MIN_SESSION_SECRET_BYTES} random bytes (`portcullis gen-secret` prints one)"),
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

    /// A whitespace-separated list of secrets, each named `where[i]` in messages.
    fn secret_list(&mut self, place: &str, bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let list = words(bytes);
        if list.is_empty() {
            self.problem(
                place,
                "holds no secret; list at least one, separated by whitespace (one a line)",
            );
        }
        list.into_iter()
            .enumerate()
            .map(|(i, s)| (format!("{place}[{i}]"), s))
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

    /// `redis_url`, `redis_url_file` or the environment (at most one);
    /// required with `store = "redis"`.
    fn redis_urls(
        &mut self,
        store: StoreKind,
        inline: Option<RawRedisUrl>,
        file: Option<PathBuf>,
    ) -> Vec<Secret<String>> {
        let env = self.env_secret(REDIS_URL_ENV);
        let given = [
            inline.as_ref().map(|_| Place::Key("session.redis_url")),
            file.as_ref().map(|_| Place::Key("session.redis_url_file")),
            env.as_ref().map(|_| Place::Env(REDIS_URL_ENV)),
        ];
        let Ok(place) = self.sole_place("session.redis_url", &given) else {
            return Vec::new();
        };
        let Some(place) = place else {
            if store == StoreKind::Redis {
                self.problem(
                    "session.redis_url",
                    format!("is required when store = \"redis\", e.g. redis_url = \"redis://127.0.0.1:6379/0\" (or redis_url_file, or the {REDIS_URL_ENV} environment variable)"),
                );
            }
            return Vec::new();
        };
        let key = match place {
            Place::Key(key) | Place::Env(key) => key,
        };
        if store != StoreKind::Redis {
            self.problem(
                key,
                "is set but session.store is \"memory\": sessions would not be shared; set store = \"redis\" or remove the Redis URL",
            );
        }
        // Each URL with the name it goes by in messages, and whether a list was given.
        let (urls, cluster) = match (inline, file) {
            (Some(raw), _) => {
                let cluster = matches!(raw, RawRedisUrl::Cluster(_));
                let urls = raw
                    .urls()
                    .into_iter()
                    .map(|(k, url)| (k, url.clone()))
                    .collect();
                (urls, cluster)
            }
            (None, Some(path)) => match self.read_secret_file(key, path) {
                Some(bytes) => self.url_list(key, &bytes),
                None => return Vec::new(),
            },
            (None, None) => self.url_list(key, env.unwrap_or_default().as_bytes()),
        };
        if urls.is_empty() && cluster {
            // `redis_url = []`; the file and variable forms said so already.
            self.problem(
                "session.redis_url",
                "is an empty list; give at least one URL",
            );
        }
        let cluster = cluster || urls.len() > 1;
        for (key, url) in &urls {
            self.redis_url(key, url.expose(), cluster);
        }
        urls.into_iter().map(|(_, url)| url).collect()
    }

    /// Whitespace-separated Redis URLs from a file or the environment:
    /// several are Redis Cluster seed nodes.
    fn url_list(&mut self, place: &str, bytes: &[u8]) -> (Vec<(String, Secret<String>)>, bool) {
        let list = words(bytes);
        if list.is_empty() {
            self.problem(place, "holds no Redis URL");
        }
        let many = list.len() > 1;
        let urls = list
            .into_iter()
            .enumerate()
            .map(|(i, url)| {
                let name = if many {
                    format!("{place}[{i}]")
                } else {
                    place.to_owned()
                };
                // A URL that is not UTF-8 fails the URL check below, unshown.
                (
                    name,
                    Secret::new(String::from_utf8_lossy(&url).into_owned()),
                )
            })
            .collect();
        (urls, many)
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

//! The compiled upstream table: for every rule with `upstream`, where its
//! requests go and the connection pools that take them there. Built by
//! `Runtime::compile` (at start-up and on SIGHUP), so rules and upstreams
//! are swapped together in one `ArcSwap` store; requests already in flight
//! keep the `Arc<Upstream>` (and its pools) they started with.
//!
//! Each upstream has two pools (see [`pool`](crate::base::transport::pool)): HTTP/1.1 to `http://`
//! upstreams, HTTP/1.1 or HTTP/2 (by ALPN) to `https://` upstreams, verified
//! against the system roots (loaded once per process), a rule's
//! `upstream_ca`, or nothing at all when the rule says
//! `upstream_insecure_skip_verify` (warned about whenever it is compiled);
//! and an HTTP/1.1-only one for WebSocket upgrades (an upgrade cannot ride on
//! an HTTP/2 connection) and `preserve_host`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::HeaderValue;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use url::Url;

use crate::auth::rules::{Match, RequestFacts};
use crate::base::crypto::provider;
use crate::base::transport::pool::Pool;
use crate::config::{Config, HostPattern, UpstreamTls};

/// One rule's upstream, ready to take requests.
pub struct Upstream {
    /// The configured URL (for logs; never shown to clients).
    pub url: Url,
    /// The URL as text, shared with the bodies for their log lines.
    pub label: Arc<str>,
    /// The rule that named it (for logs).
    pub rule: String,
    /// The URL's path without a trailing `/` (`""` for the root).
    base_path: String,
    /// `Host` to send unless `preserve_host`.
    host: HeaderValue,
    /// Send the client's `Host`.
    pub preserve_host: bool,
    /// Connections, HTTP/1.1 and (over TLS, by ALPN) HTTP/2.
    pub pool: Arc<Pool>,
    /// HTTP/1.1-only connections that can carry upgrades.
    pub upgrade_pool: Arc<Pool>,
    /// `proxy.response_header_timeout`.
    pub response_header_timeout: Duration,
    /// `proxy.idle_timeout`.
    pub idle_timeout: Duration,
    /// The rule's upstream counters and latency histogram.
    pub metrics: crate::base::metrics::UpstreamMetrics,
}

/// Every upstream of a runtime, indexed by rule.
#[derive(Default)]
pub struct Upstreams {
    /// Rule index → its upstream.
    by_rule: Vec<Option<Arc<Upstream>>>,
    /// Host patterns of rules with an upstream, in file order: where a
    /// request goes when its own rule names none (e.g. a public path rule).
    by_host: Vec<(HostPattern, Arc<Upstream>)>,
}

// === impl Upstreams ===

impl Upstreams {
    /// Builds the pools for every rule with an upstream.
    pub fn compile(config: &Config) -> Upstreams {
        let needs_roots = config.rules.iter().any(|r| {
            r.upstream.as_ref().is_some_and(|u| u.scheme() == "https")
                && matches!(r.upstream_options.tls, UpstreamTls::SystemRoots)
        });
        let mut shared: Option<Tls> = None;
        let mut out = Upstreams::default();
        for rule in &config.rules {
            let Some(url) = &rule.upstream else {
                out.by_rule.push(None);
                continue;
            };
            let opts = &rule.upstream_options;
            let tls = match &opts.tls {
                UpstreamTls::SystemRoots => shared
                    .get_or_insert_with(|| {
                        let roots = if needs_roots {
                            system_roots()
                        } else {
                            Arc::new(RootCertStore::empty())
                        };
                        Tls::new(verified(roots))
                    })
                    .clone(),
                UpstreamTls::Ca { certs, .. } => Tls::new(verified(ca_roots(certs))),
                UpstreamTls::InsecureSkipVerify => {
                    tracing::warn!(rule.name = %rule.name, upstream = %url, "upstream_insecure_skip_verify = true: the upstream's certificate is not checked; anyone on the path can read and alter this traffic");
                    Tls::new(insecure())
                }
            };
            let timeout = config.proxy.connect_timeout;
            let (Some(pool), Some(upgrade_pool)) = (
                Pool::new(url, Some(tls.both), timeout),
                Pool::new(url, Some(tls.h1), timeout),
            ) else {
                // Validation accepts only http(s) URLs with a host.
                tracing::error!(rule.name = %rule.name, upstream = %url, "upstream URL has no usable host; the rule's requests get 502");
                out.by_rule.push(None);
                continue;
            };
            let upstream = Arc::new(Upstream {
                url: url.clone(),
                label: Arc::from(url.as_str()),
                rule: rule.name.clone(),
                base_path: url.path().trim_end_matches('/').to_owned(),
                host: host_value(url),
                preserve_host: opts.preserve_host,
                pool: Arc::new(pool),
                upgrade_pool: Arc::new(upgrade_pool),
                response_header_timeout: config.proxy.response_header_timeout,
                idle_timeout: config.proxy.idle_timeout,
                metrics: crate::base::metrics::UpstreamMetrics::compile(&rule.name),
            });
            if let Some(h) = &rule.host {
                out.by_host.push((h.clone(), upstream.clone()));
            }
            out.by_rule.push(Some(upstream));
        }
        out
    }

    /// The upstream for a request: its matched rule's, or else the first
    /// upstream configured for the same host. `None` = not a proxied host.
    pub fn find(&self, m: &Match<'_>, facts: &RequestFacts<'_>) -> Option<&Arc<Upstream>> {
        if let Match::Rule(r) = m {
            if let Some(Some(u)) = self.by_rule.get(r.index) {
                return Some(u);
            }
        }
        self.by_host
            .iter()
            .find(|(h, _)| match h {
                HostPattern::Exact(e) => e == facts.host,
                HostPattern::Suffix(s) => facts.host.ends_with(s.as_str()),
            })
            .map(|(_, u)| u)
    }

    /// True when no rule names an upstream.
    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty() && self.by_rule.iter().all(Option::is_none)
    }
}

// === impl Upstream ===

impl Upstream {
    /// The upstream request target (origin form, `/path?query`): the base
    /// path, the (normalised) `path` the rules judged and the original query.
    pub fn uri(&self, original: &http::Uri, path: &str) -> Option<http::Uri> {
        // Nothing to change: the original target is passed on as it is,
        // without building and re-parsing a copy.
        if self.base_path.is_empty() && path == original.path() {
            return original.path_and_query().cloned().map(http::Uri::from);
        }
        let query = original.query();
        let len = self.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1);
        let mut s = String::with_capacity(len);
        s.push_str(&self.base_path);
        s.push_str(path);
        if let Some(q) = query {
            s.push('?');
            s.push_str(q);
        }
        s.parse().ok()
    }

    /// The `Host` header to send: the client's with `preserve_host`, else the upstream's.
    pub fn host_header(&self, client_host: &str) -> HeaderValue {
        if self.preserve_host {
            if let Ok(v) = HeaderValue::from_str(client_host) {
                return v;
            }
        }
        self.host.clone()
    }
}

fn host_value(url: &Url) -> HeaderValue {
    let host = url.host_str().unwrap_or("");
    let text = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("localhost"))
}

// === clients ===

/// One TLS setup in its two ALPN variants.
#[derive(Clone)]
struct Tls {
    /// `h2` and `http/1.1`.
    both: Arc<ClientConfig>,
    /// `http/1.1` only (upgrades, `preserve_host`).
    h1: Arc<ClientConfig>,
}

impl Tls {
    fn new(cfg: ClientConfig) -> Tls {
        let mut both = cfg.clone();
        both.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut h1 = cfg;
        h1.alpn_protocols = vec![b"http/1.1".to_vec()];
        Tls {
            both: Arc::new(both),
            h1: Arc::new(h1),
        }
    }
}

fn verified(roots: Arc<RootCertStore>) -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the provider supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn ca_roots(certs: &[CertificateDer<'static>]) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    // Validation already added each certificate to a store once.
    let (_added, _ignored) = roots.add_parsable_certificates(certs.iter().cloned());
    Arc::new(roots)
}

/// The system's CA certificates, loaded once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "reading the system CA certificates");
            }
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!("no system CA certificates found: https:// upstreams will fail verification; install the system CA bundle (ca-certificates) or set the rule's upstream_ca");
            }
            Arc::new(roots)
        })
        .clone()
}

/// A client config that accepts any server certificate (handshake
/// signatures still checked): `upstream_insecure_skip_verify`, and
/// `portcullis healthcheck` probing its own listener.
pub(crate) fn insecure() -> ClientConfig {
    let provider = provider();
    ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth()
}

/// `upstream_insecure_skip_verify`: any certificate is accepted; handshake
/// signatures are still checked so the session keys belong to that certificate.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rules: &str) -> Config {
        let text = format!(
            "[oidc]\nissuer = \"https://idp.example.com\"\nclient_id = \"x\"\n[session]\nsecrets = [\"0123456789abcdef0123456789abcdef\"]\n{rules}"
        );
        Config::from_toml(
            &text,
            std::path::Path::new("."),
            &std::collections::HashMap::new(),
        )
        .unwrap()
    }

    #[test]
    fn uris_keep_the_base_path() {
        let cfg = config(
            "[[rule]]\nhost = \"a.example.com\"\nupstream = \"http://127.0.0.1:3000/base/\"\n",
        );
        let ups = Upstreams::compile(&cfg);
        let u = ups.by_rule[0].as_ref().unwrap();
        let original: http::Uri = "/a?x=1".parse().unwrap();
        assert_eq!(u.uri(&original, "/a").unwrap().to_string(), "/base/a?x=1");
        // Without a base path, the original target goes through as it is,
        // unless normalisation changed the path.
        let cfg =
            config("[[rule]]\nhost = \"a.example.com\"\nupstream = \"http://127.0.0.1:3000\"\n");
        let ups = Upstreams::compile(&cfg);
        let u = ups.by_rule[0].as_ref().unwrap();
        assert_eq!(u.uri(&original, "/a").unwrap().to_string(), "/a?x=1");
        let dotted: http::Uri = "http://a.example.com/x/../a?x=1".parse().unwrap();
        assert_eq!(u.uri(&dotted, "/a").unwrap().to_string(), "/a?x=1");
        let plain: http::Uri = "/b".parse().unwrap();
        assert_eq!(u.uri(&plain, "/b").unwrap().to_string(), "/b");
        assert_eq!(u.host_header("a.example.com"), "127.0.0.1:3000");
    }

    #[test]
    fn host_fallback_and_preserve_host() {
        let cfg = config(
            "[[rule]]\nhost = \"a.example.com\"\npath = \"/health\"\npolicy = \"public\"\n\
             [[rule]]\nhost = \"a.example.com\"\npath = \"/api\"\nupstream = \"http://127.0.0.1:1/\"\n\
             [[rule]]\nhost = \"*.example.com\"\nupstream = \"https://127.0.0.1:2\"\npreserve_host = true\n",
        );
        let ups = Upstreams::compile(&cfg);
        let facts = |host| RequestFacts {
            host,
            path: "/",
            method: Some(&http::Method::GET),
            client: None,
        };
        let f = facts("a.example.com");
        let u = ups.find(&Match::Default(crate::config::DefaultPolicy::Deny), &f);
        assert_eq!(u.unwrap().url.as_str(), "http://127.0.0.1:1/");
        let f = facts("b.example.com");
        let u = ups
            .find(&Match::Default(crate::config::DefaultPolicy::Deny), &f)
            .unwrap();
        assert_eq!(u.url.as_str(), "https://127.0.0.1:2/");
        assert_eq!(u.host_header("b.example.com:8443"), "b.example.com:8443");
        let f = facts("example.org");
        assert!(ups
            .find(&Match::Default(crate::config::DefaultPolicy::Deny), &f)
            .is_none());
    }
}

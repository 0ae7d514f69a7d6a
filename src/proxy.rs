//! Reverse-proxy mode: for a host whose rule names an `upstream`, portcullis
//! makes the same decision as forward auth and, when allowed, forwards the
//! request over a pooled hyper-util client, streaming bodies both ways.
//!
//! Header hygiene happens here: hop-by-hop headers (and those named in
//! `Connection`) are dropped, every client copy of the identity headers and of
//! `headers.strip` — in any letter case and with `_` for `-` — is removed,
//! portcullis's own cookies are cut out of `Cookie`, fresh identity headers
//! and `X-Forwarded-For/Proto/Host` are added. The upstream sees the
//! normalised path that the rules judged.

use std::net::SocketAddr;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::http_util::{self, Body};
use crate::identity::IdentityHeaders;
use crate::pages;
use crate::pipeline::{canonical, rule_name, Decision, Gateway, Runtime};
use crate::rules::host::normalize_host;
use crate::rules::path::{normalize, split_target};
use crate::rules::{Match, RequestFacts};

/// Time allowed for the upstream's response head.
const RESPONSE_HEAD_TIMEOUT: Duration = Duration::from_secs(60);

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// The upstream client.
pub struct Proxy {
    client: Client<HttpConnector, Incoming>,
}

// === impl Proxy ===

impl Default for Proxy {
    fn default() -> Self {
        Self::new()
    }
}

impl Proxy {
    /// A pooled client (keep-alive, 90 s idle).
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Proxy { client }
    }

    /// Handles a request that is not for the gateway's own endpoints.
    pub async fn handle(
        &self,
        gw: &Gateway,
        req: Request<Incoming>,
        peer: SocketAddr,
        tls: bool,
    ) -> Response<Body> {
        let rt = gw.runtime.load();
        let host_raw = req
            .uri()
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
            })
            .unwrap_or("")
            .to_owned();
        let Ok(host) = normalize_host(&host_raw) else {
            return pages::json_error(StatusCode::BAD_REQUEST, "bad_request", "malformed host");
        };
        let path = match normalize(split_target(req.uri().path())) {
            Ok(p) => p.into_owned(),
            Err(e) => {
                tracing::info!(error = %e, "proxied request rejected");
                return pages::json_error(StatusCode::BAD_REQUEST, "bad_request", &e.to_string());
            }
        };
        let facts = RequestFacts {
            host: &host,
            path: &path,
            method: req.method(),
        };
        let Some(upstream) = upstream_for(&rt, &facts) else {
            return crate::error::not_found();
        };
        let browser = http_util::is_browser(req.headers());
        let identity = match gw.decide(&rt, &facts, req.headers()).await {
            Decision::Allow(p, _) => p.headers().clone(),
            Decision::Public(_) => IdentityHeaders::empty(),
            Decision::Unauthenticated(_) => {
                let proto = if tls { "https" } else { "http" };
                let original = crate::forward_auth::Original {
                    proto,
                    host_raw: host_raw.as_str().into(),
                    target: req
                        .uri()
                        .path_and_query()
                        .map(|p| p.as_str())
                        .unwrap_or("/")
                        .into(),
                    method: req.method().clone(),
                    nginx: false,
                };
                return crate::forward_auth::unauthenticated(&rt, &original, req.headers());
            }
            Decision::InvalidToken(rule) => {
                tracing::info!(
                    rule.name = rule_name(rule),
                    decision = "invalid_token",
                    "proxied request denied: bearer token rejected"
                );
                return crate::forward_auth::invalid_token();
            }
            Decision::Forbidden(p, rule) => {
                tracing::info!(rule.name = rule_name(rule), user = %p.identity().user, decision = "forbidden", "proxied request denied");
                let groups = rule.map(|r| r.required_groups()).unwrap_or(&[]);
                let sign_out = format!("{}/sign_out", rt.prefix());
                return pages::forbidden(
                    browser,
                    &p.identity().user,
                    rule_name(rule),
                    groups,
                    &sign_out,
                );
            }
            Decision::Deny(rule) => {
                tracing::info!(
                    rule.name = rule_name(rule),
                    decision = "deny",
                    "proxied request denied by rule"
                );
                return pages::json_error(StatusCode::FORBIDDEN, "forbidden", "denied by rule");
            }
            Decision::StoreUnavailable(e) => {
                tracing::warn!(error = %e, "session store unavailable; answering 503");
                return crate::error::store_unavailable(browser);
            }
        };
        let target = match build_uri(&upstream, &path, req.uri().query()) {
            Some(u) => u,
            None => {
                return pages::json_error(
                    StatusCode::BAD_GATEWAY,
                    "bad_gateway",
                    "upstream address invalid",
                )
            }
        };
        let (mut parts, body) = req.into_parts();
        parts.uri = target;
        scrub_request(
            &rt,
            gw.keys.cookie_name(),
            &mut parts.headers,
            &identity,
            peer,
            tls,
            &host_raw,
        );
        if let Some(h) = upstream_host(&upstream) {
            parts.headers.insert(header::HOST, h);
        }
        let fut = self.client.request(Request::from_parts(parts, body));
        match tokio::time::timeout(RESPONSE_HEAD_TIMEOUT, fut).await {
            Ok(Ok(res)) => {
                let (mut parts, body) = res.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, Either::Right(body))
            }
            Ok(Err(e)) => {
                tracing::warn!(upstream = %upstream, error = %crate::oidc::error_chain(&e), "upstream request failed");
                pages::html(
                    StatusCode::BAD_GATEWAY,
                    "Bad gateway",
                    "The application behind this address is not answering.",
                    None,
                )
            }
            Err(_) => {
                tracing::warn!(upstream = %upstream, "upstream did not answer in time");
                pages::html(
                    StatusCode::GATEWAY_TIMEOUT,
                    "Gateway timeout",
                    "The application behind this address took too long to answer.",
                    None,
                )
            }
        }
    }
}

/// The upstream for a request: the matched rule's, or else the first
/// upstream configured for the same host.
fn upstream_for(rt: &Runtime, facts: &RequestFacts<'_>) -> Option<url::Url> {
    if let Match::Rule(r) = rt.rules.evaluate(facts) {
        if let Some(u) = &r.upstream {
            return Some(u.clone());
        }
    }
    rt.config.rules.iter().find_map(|r| {
        let host_matches = match &r.host {
            Some(crate::config::HostPattern::Exact(h)) => h == facts.host,
            Some(crate::config::HostPattern::Suffix(s)) => facts.host.ends_with(s.as_str()),
            None => false,
        };
        if host_matches {
            r.upstream.clone()
        } else {
            None
        }
    })
}

fn build_uri(upstream: &url::Url, path: &str, query: Option<&str>) -> Option<Uri> {
    if upstream.scheme() != "http" {
        return None;
    }
    let base = upstream.as_str().trim_end_matches('/');
    let base_path = upstream.path().trim_end_matches('/');
    let origin = base.strip_suffix(base_path).unwrap_or(base);
    let s = match query {
        Some(q) => format!("{origin}{base_path}{path}?{q}"),
        None => format!("{origin}{base_path}{path}"),
    };
    s.parse().ok()
}

fn upstream_host(upstream: &url::Url) -> Option<HeaderValue> {
    let host = upstream.host_str()?;
    let v = match upstream.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    HeaderValue::from_str(&v).ok()
}

/// Lower-cases a header name and maps `_` to `-`, the spellings apps treat alike.
fn canonical_name(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                b.to_ascii_lowercase() as char
            }
        })
        .collect()
}

/// Removes hop-by-hop headers and those named in `Connection`.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

/// Header hygiene for the request sent upstream.
fn scrub_request(
    rt: &Runtime,
    cookie_name: &str,
    h: &mut HeaderMap,
    id: &IdentityHeaders,
    peer: SocketAddr,
    tls: bool,
    host_raw: &str,
) {
    strip_hop_by_hop(h);
    h.remove(header::UPGRADE);
    let cfg = &rt.config.headers;
    let mut hostile: Vec<String> = [&cfg.user, &cfg.email, &cfg.groups]
        .iter()
        .map(|n| n.as_str().to_owned())
        .chain(cfg.strip.iter().map(|n| canonical_name(n.as_str())))
        .collect();
    hostile.push("x-auth-access-token".into());
    let doomed: Vec<HeaderName> = h
        .keys()
        .filter(|k| hostile.contains(&canonical_name(k.as_str())))
        .cloned()
        .collect();
    for k in doomed {
        h.remove(k);
    }
    // Cut our own cookies (session and login-flow) out of Cookie.
    let flow_prefix = format!("{cookie_name}_flow_");
    let kept: Vec<String> = http_util::cookies(h)
        .filter(|(k, _)| *k != cookie_name && !k.starts_with(&flow_prefix))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    h.remove(header::COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
            h.insert(header::COOKIE, v);
        }
    }
    h.insert(cfg.user.clone(), id.user.clone());
    h.insert(cfg.email.clone(), id.email.clone());
    h.insert(cfg.groups.clone(), id.groups.clone());
    let peer_ip = canonical(peer.ip()).to_string();
    let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) if rt.is_trusted(peer.ip()) => format!("{prev}, {peer_ip}"),
        _ => peer_ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert("x-forwarded-for", v);
    }
    h.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    if let Ok(v) = HeaderValue::from_str(host_raw) {
        h.insert("x-forwarded-host", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names() {
        assert_eq!(canonical_name("X_Auth_User"), "x-auth-user");
        assert_eq!(canonical_name("x-AUTH-user"), "x-auth-user");
    }

    #[test]
    fn upstream_uris() {
        let u = url::Url::parse("http://127.0.0.1:3000").unwrap();
        assert_eq!(
            build_uri(&u, "/a/b", Some("x=1")).unwrap().to_string(),
            "http://127.0.0.1:3000/a/b?x=1"
        );
        let u = url::Url::parse("http://127.0.0.1:3000/base/").unwrap();
        assert_eq!(
            build_uri(&u, "/a", None).unwrap().to_string(),
            "http://127.0.0.1:3000/base/a"
        );
    }
}

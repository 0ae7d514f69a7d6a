//! Reverse-proxy mode: for a host whose rule names an `upstream`, portcullis
//! makes the same decision as forward auth and, when allowed, forwards the
//! request to the upstream and streams the answer back. It owns how an
//! allowed request travels, never whether it is allowed (that is
//! `pipeline`). Called by `server` for every request outside the gateway's
//! own endpoints.
//!
//! - [`upstream`]: the compiled upstream table (part of the reloadable
//!   `Runtime`, so rules and upstreams swap together; in `proxy_table`);
//! - [`pool`]: keep-alive connections to one upstream (in `transport`);
//! - [`headers`]: header hygiene both ways (in `proxy_table`);
//! - [`body`]: streaming bodies with an idle timeout (in `transport`);
//! - [`tunnel`]: WebSocket (HTTP/1.1 `Upgrade`) pass-through.
//!
//! The upstream sees the normalised path that the rules judged. Refusals and
//! failures are answered by `respond`: 502 (refused, reset, TLS) or 504
//! (connect or response-head timeout), the log naming the upstream and the
//! cause, the page neither.

pub mod tunnel;

pub use crate::auth::proxy_table::{headers, upstream};
pub use crate::base::transport::{body, pool};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::base::transport::body::ClientBody;
use futures_util::future::{self, FutureExt as _};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Version};
use http_body_util::Either;

use crate::auth::pipeline::{Gateway, Principal};
use crate::auth::rules::host::normalize_host;
use crate::auth::rules::path::{normalize, split_target};
use crate::auth::rules::RequestFacts;
use crate::base::http_util::Body;
use crate::base::identity::IdentityHeaders;
use crate::endpoints::respond::{self, Answer, Asked, At, Failure, Mode};

use self::body::{IdleBody, PooledBody};
use self::headers::{Carry, Forwarding};
use self::pool::{Pool, PoolError, Use};
use self::upstream::Upstream;

static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Opening the connection took longer than `proxy.connect_timeout`.
    #[error("connecting to the upstream timed out")]
    ConnectTimeout,
    /// The upstream sent no response head within `proxy.response_header_timeout`.
    #[error("the upstream sent no response head in time")]
    HeadTimeout,
    /// Refused, reset, TLS failure, malformed answer.
    #[error("upstream request failed: {0}")]
    Failed(#[source] PoolError),
    /// The request's path and query do not make a valid URI on the
    /// upstream's URL.
    #[error("cannot build the upstream URI")]
    Uri,
}

/// Handles a request that is not for the gateway's own endpoints.
///
/// `id` is the request's id: its answer's log lines name it (the request
/// runs in its span only with debug logging on; see `server::router`).
pub async fn handle(
    gw: &Gateway,
    mut req: Request<ClientBody>,
    peer: SocketAddr,
    tls: bool,
    id: &HeaderValue,
) -> Response<Body> {
    let rt = gw.runtime.load();
    let host_raw = request_host(&req).to_owned();
    let at = At {
        id: Some(id),
        ..At::new(Mode::Proxy, req.headers())
    };
    let Ok(host) = normalize_host(&host_raw) else {
        return respond::failure(Some(&rt), &at, Failure::BadHost);
    };
    if req.method() == Method::CONNECT {
        // Not a forward proxy: a CONNECT's 2xx would turn the upstream
        // connection into a tunnel that portcullis never looks into.
        return respond::failure(
            Some(&rt),
            &at,
            Failure::Method("CONNECT is not served: this is not a forward proxy"),
        );
    }
    let path = match normalize(split_target(req.uri().path())) {
        Ok(p) => p,
        Err(e) => return respond::failure(Some(&rt), &at, Failure::BadPath(&e)),
    };
    let facts = RequestFacts {
        host: &host,
        path: &path,
        method: Some(req.method()),
        client: crate::auth::client_addr::for_rules(
            &rt.rules,
            peer.ip(),
            req.headers(),
            &rt.config.server.trusted_proxies,
        ),
    };
    let matched = rt.rules.evaluate(&facts);
    let Some(upstream) = rt.proxy.upstreams.find(&matched, &facts).cloned() else {
        return respond::failure(Some(&rt), &at, Failure::NotFound);
    };
    let trusted = rt.is_trusted(peer.ip());
    let proto = client_proto(req.headers(), tls, trusted);
    let decision = gw.decide_matched(&rt, matched, &facts, req.headers()).await;
    let asked = Asked {
        proto,
        host_raw: &host_raw,
        target: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
    };
    let allowed = match respond::decision(&rt, &at, &asked, decision) {
        Answer::Pass(p) => p,
        Answer::Respond(res) => return res,
    };
    let empty = IdentityHeaders::empty();
    let identity = allowed.as_ref().map_or(&empty, Principal::headers);
    let session = match &allowed {
        Some(Principal::Session(s)) => Some(&**s),
        _ => None,
    };
    let Some(uri) = upstream.uri(req.uri(), &path) else {
        return upstream_failed(&upstream, &UpstreamError::Uri, id);
    };
    let upgrade = headers::upgrade_of(req.headers()).filter(|_| req.version() < Version::HTTP_2);
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let fwd = Forwarding {
        peer: peer.ip(),
        trusted,
        proto,
        host: &host_raw,
    };
    let pool = upstream_pool(&upstream);
    // The identity headers go straight into the request head that
    // portcullis writes when the pool only speaks HTTP/1.1 (the usual
    // `http://` upstream); hyper's client takes them from the map.
    let mut lines = Vec::new();
    let carry = if pool.h1_only() && upgrade.is_none() {
        lines.reserve(256);
        Carry::Lines(&mut lines)
    } else {
        Carry::Map {
            upgrade: upgrade.clone(),
        }
    };
    rt.proxy.hygiene.scrub_request(
        &mut parts.headers,
        gw.keys.cookie_name(),
        identity,
        session,
        &fwd,
        carry,
    );
    if let (Some(signer), Some(p)) = (&rt.assertion, &allowed) {
        let value = signer.assertion(p, &host, crate::base::clock::unix_secs());
        parts
            .headers
            .insert(crate::auth::assertion::X_AUTH_ASSERTION.clone(), value);
    }
    parts
        .headers
        .insert(header::HOST, upstream.host_header(&host_raw));
    drop(rt);
    // Bodies with content report progress, so the response-head timeout
    // starts once they are sent; an empty body never makes the timer wait.
    let progress =
        (!hyper::body::Body::is_end_stream(&body)).then(|| Arc::new(body::Progress::default()));
    let mut body = IdleBody::new(
        body,
        upstream.idle_timeout,
        "request",
        upstream.label.clone(),
    );
    if let Some(p) = &progress {
        body = body.with_progress(p.clone());
    }
    let req = Request::from_parts(parts, body);
    match client_upgrade {
        Some(on_client) => Box::pin(tunnel::forward(&upstream, req, on_client, id)).await,
        None => forward(&upstream, req, &lines, progress.as_deref(), id).await,
    }
}

/// True when a rule sends `req` (its host and path) to an upstream.
pub fn proxies<B>(gw: &Gateway, req: &Request<B>) -> bool {
    let rt = gw.runtime.load();
    if rt.proxy.upstreams.is_empty() {
        return false;
    }
    let Ok(host) = normalize_host(request_host(req)) else {
        return false;
    };
    let Ok(path) = normalize(split_target(req.uri().path())) else {
        return false;
    };
    // No client address: a rule with networks does not match here, and the
    // host's first upstream answers for it (`Upstreams::find`), so a host
    // is proxied whatever the client's address.
    let facts = RequestFacts {
        host: &host,
        path: &path,
        method: Some(req.method()),
        client: None,
    };
    rt.proxy
        .upstreams
        .find(&rt.rules.evaluate(&facts), &facts)
        .is_some()
}

/// The host the client asked for, as sent (HTTP/2 `:authority` or `Host`).
fn request_host<B>(req: &Request<B>) -> &str {
    crate::base::http_util::request_host(req).unwrap_or("")
}

/// The scheme the client used: a trusted front proxy's `X-Forwarded-Proto`, else our own.
fn client_proto(h: &HeaderMap, tls: bool, trusted: bool) -> &'static str {
    let own = if tls { "https" } else { "http" };
    if !trusted {
        // A client's own claim is never read (nor looked up).
        return own;
    }
    let forwarded = h
        .get(&X_FORWARDED_PROTO)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').next().unwrap_or("").trim());
    match forwarded {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        Some(p) if p.eq_ignore_ascii_case("http") => "http",
        _ => own,
    }
}

/// Sends the request and streams the answer back.
///
/// Neither this nor [`send`] is an `async fn`: each would keep the request
/// beside the future it awaits, and every level of the proxy path is built
/// and then moved into its parent once per request. Combinators keep one
/// copy, in the pool's future.
fn forward<'a>(
    upstream: &'a Arc<Upstream>,
    req: Request<body::RequestBody>,
    lines: &'a [u8],
    progress: Option<&'a body::Progress>,
    id: &'a HeaderValue,
) -> impl Future<Output = Response<Body>> + 'a {
    let pool = upstream_pool(upstream);
    let started = std::time::Instant::now();
    send(pool, upstream, req, lines, progress, Use::Exchange).map(move |sent| {
        let status = sent.as_ref().ok().map(Response::status);
        upstream.metrics.observe(status, started.elapsed());
        match sent {
            Ok(res) => upstream_response(upstream, res),
            Err(e) => upstream_failed(upstream, &e, id),
        }
    })
}

/// The pool an ordinary (non-upgrade) request to `upstream` goes through.
fn upstream_pool(upstream: &Upstream) -> &Arc<Pool> {
    if upstream.preserve_host {
        // Over HTTP/2 the upstream would take the host from `:authority`, which
        // must name the upstream itself; HTTP/1.1 carries the client's `Host`.
        &upstream.upgrade_pool
    } else {
        &upstream.pool
    }
}

/// Sends `req`, with the header `lines` (see [`Pool::request`]). The response head must come within
/// `proxy.response_header_timeout` of the request body's end (of the head,
/// for requests without a body); while the body is going up, the upstream
/// must take some of it within every such period.
fn send<'a>(
    pool: &'a Arc<Pool>,
    upstream: &Upstream,
    req: Request<body::RequestBody>,
    lines: &'a [u8],
    progress: Option<&'a body::Progress>,
    purpose: Use,
) -> impl Future<Output = Result<Response<PooledBody>, UpstreamError>> + 'a {
    let limit = upstream.response_header_timeout;
    let sent = match progress {
        None => future::Either::Left(
            tokio::time::timeout(limit, pool.request(req, lines, purpose))
                .map(|r| r.map_err(|_| UpstreamError::HeadTimeout)),
        ),
        // Boxed: only requests with a body need the progress watch.
        Some(p) => future::Either::Right(Box::pin(watching_upload(
            pool.request(req, lines, purpose),
            p,
            limit,
        ))),
    };
    sent.map(|r| {
        r.and_then(|result| {
            result.map_err(|e| match e {
                PoolError::ConnectTimeout => UpstreamError::ConnectTimeout,
                e => UpstreamError::Failed(e),
            })
        })
    })
}

/// Waits for `fut` while a request body goes up: the upstream must take some
/// of it every `limit`, and answer within `limit` of its end.
async fn watching_upload<F: std::future::Future>(
    fut: F,
    p: &body::Progress,
    limit: std::time::Duration,
) -> Result<F::Output, UpstreamError> {
    tokio::pin!(fut);
    let mut seen = 0;
    loop {
        tokio::select! {
            r = &mut fut => return Ok(r),
            _ = p.done.notified() => {
                return tokio::time::timeout(limit, &mut fut)
                    .await
                    .map_err(|_| UpstreamError::HeadTimeout);
            }
            _ = tokio::time::sleep(limit) => {
                let now = p.frames.load(std::sync::atomic::Ordering::Relaxed);
                if now == seen {
                    return Err(UpstreamError::HeadTimeout);
                }
                seen = now;
            }
        }
    }
}

/// The upstream's answer as sent to the client: hop-by-hop headers scrubbed,
/// the body streamed and cut after the upstream's idle timeout.
fn upstream_response(upstream: &Upstream, res: Response<PooledBody>) -> Response<Body> {
    let (mut parts, body) = res.into_parts();
    headers::scrub_response(&mut parts.headers, false);
    let body = IdleBody::new(
        body,
        upstream.idle_timeout,
        "response",
        upstream.label.clone(),
    );
    Response::from_parts(parts, Either::Right(Box::new(body)))
}

/// 502 or 504; the log names the upstream and the cause, the page neither.
fn upstream_failed(upstream: &Upstream, e: &UpstreamError, id: &HeaderValue) -> Response<Body> {
    let at = At {
        mode: Mode::Proxy,
        headers: None,
        id: Some(id),
    };
    let failure = Failure::Upstream {
        rule: &upstream.rule,
        url: &upstream.label,
        error: e,
        timed_out: matches!(
            e,
            UpstreamError::ConnectTimeout | UpstreamError::HeadTimeout
        ),
    };
    respond::failure(None, &at, failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_scheme_is_read_from_trusted_proxies_only() {
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        assert_eq!(client_proto(&h, false, false), "http", "untrusted claim");
        assert_eq!(client_proto(&h, false, true), "https");
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("HTTP, https"));
        assert_eq!(client_proto(&h, true, false), "https", "own TLS stays");
        assert_eq!(client_proto(&h, true, true), "http", "first of a list");
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("gopher"));
        assert_eq!(client_proto(&h, true, true), "https", "unknown: our own");
        assert_eq!(client_proto(&h, false, true), "http");
        assert_eq!(client_proto(&HeaderMap::new(), false, true), "http");
    }
}

//! The forward-auth endpoint (`<prefix>/auth`), asked by Traefik
//! (`forwardAuth`), Caddy (`forward_auth`) and nginx (`auth_request`) about
//! every request. It reads the original request and has it judged;
//! `respond` makes the answer.
//!
//! The original request is read from `X-Forwarded-Method/Proto/Host/Uri`
//! (Traefik, Caddy) or `X-Original-URL` / `X-Original-Method` (nginx), and
//! only when the peer is in `trusted_proxies`; from anyone else those headers
//! are ignored and the check judges the auth request itself. Answers follow
//! SPEC's table: 200 with every identity header, 302 to the login for
//! browsers, 401 for APIs and nginx, 403, 400 for malformed paths — and every
//! answer carries every identity header of `[headers]` (user, email, groups,
//! preferred username, the `[headers.claims]` headers, the access token with
//! `pass_access_token`; empty when unknown) so the front proxy overwrites
//! any copy the client sent.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, Request, Response};
use tracing::Instrument as _;

use crate::auth::pipeline::{Gateway, Peer, Runtime};
use crate::auth::rules::host::normalize_host;
use crate::auth::rules::path::{normalize, split_target};
use crate::auth::rules::RequestFacts;
use crate::base::http_util::{self, Body};
use crate::base::request_id;
use crate::endpoints::respond::{self, Answer, Asked, At, Failure, Mode};

static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");

/// The request the front proxy is asking about.
#[derive(Debug)]
pub struct Original<'a> {
    /// `http` or `https`.
    pub proto: &'static str,
    /// Host as sent (may carry a port), validated.
    pub host_raw: Cow<'a, str>,
    /// Request target: path and query.
    pub target: Cow<'a, str>,
    /// Method; `None` when the front proxy did not name it, which no rule
    /// restricted by `methods` accepts.
    pub method: Option<Method>,
    /// nginx `auth_request` semantics: never redirect, answer 401.
    pub nginx: bool,
}

/// Why the original request could not be judged (400).
#[derive(Debug, thiserror::Error)]
pub enum OriginalError {
    /// A trusted proxy sent neither `X-Forwarded-Uri` nor `X-Original-URL`.
    #[error("forward-auth request names no original URI (X-Forwarded-Uri or X-Original-URL)")]
    NoUri,
    /// `X-Original-URL` is not a plain absolute `http(s)://host[:port]/path`
    /// URL, or URL parsers could read its host in more than one way
    /// (userinfo, backslash, percent-encoding, `http:host` without `//`).
    #[error("X-Original-URL rejected: {0}")]
    BadOriginalUrl(&'static str),
    /// `X-Original-*` and `X-Forwarded-*` describe different requests: a
    /// client-sent copy of one family (Traefik and Caddy pass client headers
    /// to the check unless configured not to). Names the field.
    #[error(
        "X-Original-* and X-Forwarded-* disagree on the {0} (a client-sent copy of one of them?)"
    )]
    Disagree(&'static str),
    /// The host is missing or malformed.
    #[error("original host is missing or malformed")]
    BadHost,
    /// The method is not a valid token.
    #[error("original method is malformed")]
    BadMethod,
    /// The path breaks SPEC's rules (encoded slash, climbing dot-segments, ...).
    #[error("original path rejected: {0}")]
    BadPath(#[from] crate::auth::rules::path::PathError),
}

/// `X-Original-URL` taken apart: the scheme, the host from the parsed URL's
/// authority, and the raw path and query as the client sent them.
#[derive(Debug, PartialEq, Eq)]
pub struct OriginalUrl<'a> {
    /// The scheme is `https`.
    pub https: bool,
    /// `host[:port]` as the URL parser reads the authority (lower-cased,
    /// default port dropped).
    pub host: String,
    /// Path and query, raw: the rules must see what the URL parser would
    /// normalise away. `/` when the URL has none.
    pub target: &'a str,
}

/// Set once the missing-method hint has been logged.
static METHOD_HINT_LOGGED: AtomicBool = AtomicBool::new(false);

// === impl Original ===

impl<'a> Original<'a> {
    /// Reads the original request from a forward-auth request. `trusted` says
    /// whether the peer may set forwarding headers; when it may not, the auth
    /// request itself is the original.
    ///
    /// With `X-Original-URL` (nginx) and `X-Forwarded-*` (Traefik, Caddy, and
    /// the nginx example, which sets both) present together, every field both
    /// carry must agree: host (normalised), path and query (raw text),
    /// method. The scheme may differ (a TLS hop in front of nginx); `https`
    /// wins.
    pub fn from_request(
        headers: &'a HeaderMap,
        own_target: &'a str,
        tls: bool,
        trusted: bool,
        nginx_query: bool,
    ) -> Result<Original<'a>, OriginalError> {
        let own_proto = if tls { "https" } else { "http" };
        // Looked up only when needed: a trusted front proxy's
        // X-Forwarded-Host usually makes this hashed lookup unnecessary.
        let own_host = || header_str(headers, &header::HOST).unwrap_or("");
        if !trusted {
            return Ok(Original {
                proto: own_proto,
                host_raw: Cow::Borrowed(own_host()),
                target: Cow::Borrowed(own_target),
                method: Some(Method::GET),
                nginx: nginx_query,
            });
        }
        let fwd = Forwarding::scan(headers);
        if let Some(url) = fwd.original_url {
            return Self::from_original_url(&fwd, url);
        }
        let proto = match fwd.proto.flatten().map(first_value) {
            Some(p) if p.eq_ignore_ascii_case("http") => "http",
            Some(_) => "https",
            None => own_proto,
        };
        let host = match fwd.host.flatten() {
            Some(h) => first_value(h),
            None => own_host(),
        };
        let target = fwd.uri.flatten().ok_or(OriginalError::NoUri)?;
        let method = method_from(fwd.method)?;
        if method.is_none() {
            hint_missing_method("X-Forwarded-Method");
        }
        Ok(Original {
            proto,
            host_raw: Cow::Borrowed(host),
            target: Cow::Borrowed(target),
            method,
            nginx: nginx_query,
        })
    }

    /// The nginx form: `X-Original-URL` (present, `None` when unreadable),
    /// checked against every `X-Forwarded-*` field sent beside it.
    fn from_original_url(
        fwd: &Forwarding<'a>,
        url: Option<&'a str>,
    ) -> Result<Original<'a>, OriginalError> {
        let url = url.ok_or(OriginalError::BadOriginalUrl("it is not visible ASCII"))?;
        let url = OriginalUrl::parse(url)?;
        // A forwarded field that is present but unreadable cannot agree.
        if let Some(fwd_host) = fwd.host {
            let fwd_host = fwd_host.ok_or(OriginalError::Disagree("host"))?;
            let theirs =
                normalize_host(first_value(fwd_host)).map_err(|_| OriginalError::BadHost)?;
            let ours = normalize_host(&url.host).map_err(|_| OriginalError::BadHost)?;
            if theirs != ours {
                return Err(OriginalError::Disagree("host"));
            }
        }
        if fwd.uri.is_some_and(|uri| uri != Some(url.target)) {
            return Err(OriginalError::Disagree("path and query"));
        }
        let method = match (method_from(fwd.original_method)?, method_from(fwd.method)?) {
            (Some(a), Some(b)) if a != b => return Err(OriginalError::Disagree("method")),
            (Some(m), _) | (None, Some(m)) => Some(m),
            (None, None) => {
                hint_missing_method("X-Original-Method");
                None
            }
        };
        let https = url.https
            || fwd
                .proto
                .is_some_and(|p| !p.is_some_and(|p| first_value(p).eq_ignore_ascii_case("http")));
        Ok(Original {
            proto: if https { "https" } else { "http" },
            host_raw: Cow::Owned(url.host),
            target: Cow::Borrowed(url.target),
            method,
            nginx: true,
        })
    }
}

// === impl OriginalUrl ===

impl<'a> OriginalUrl<'a> {
    /// Takes `X-Original-URL` apart. The host comes from the URL parser; the
    /// raw text must name the same authority in the plain form
    /// `http(s)://host[:port]`, else the value is refused: forms the parser
    /// reads differently from a naive reader (`http:host/x`, `http:/\host`,
    /// `http://a@b/`, `http://a\@b/`, `%`-encoded or numeric-shorthand hosts)
    /// are what a host-confusion attack would send.
    pub fn parse(text: &'a str) -> Result<OriginalUrl<'a>, OriginalError> {
        let bad = OriginalError::BadOriginalUrl;
        let (scheme, rest) = text
            .split_once("://")
            .ok_or(bad("it is not an absolute http(s):// URL"))?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(bad("it is not an absolute http(s):// URL"));
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        if !is_safe_host_raw(authority) {
            return Err(bad("its authority is not a plain host[:port]"));
        }
        let parsed = url::Url::parse(text).map_err(|_| bad("it is not a valid URL"))?;
        let parsed_host = match parsed.host_str() {
            Some(h) if parsed.scheme() == if https { "https" } else { "http" } => h,
            _ => return Err(bad("it is not an absolute http(s):// URL")),
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad("it carries userinfo"));
        }
        let host = match parsed.port() {
            Some(port) => format!("{parsed_host}:{port}"),
            None => parsed_host.to_owned(),
        };
        let agree = match (normalize_host(authority), normalize_host(&host)) {
            (Ok(raw), Ok(parsed)) => raw == parsed,
            _ => false,
        };
        if !agree {
            return Err(bad("URL parsers read its host in different ways"));
        }
        Ok(OriginalUrl {
            https,
            host,
            target: if target.is_empty() { "/" } else { target },
        })
    }
}

/// Logs, once per process, that checks arrive without the original method.
fn hint_missing_method(header: &'static str) {
    if !METHOD_HINT_LOGGED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            header,
            "forward-auth check without the original method: no rule restricted by `methods` can match it. Have the front proxy send it (nginx: proxy_set_header X-Original-Method $request_method;)"
        );
    }
}

/// The forwarding headers of a request, found in one pass over the header
/// list instead of one hashed lookup per name. Each field is what
/// `HeaderMap::get` would give: `None` when absent, `Some(None)` when the
/// first copy is not visible ASCII, later copies ignored.
#[derive(Default)]
struct Forwarding<'h> {
    method: Option<Option<&'h str>>,
    proto: Option<Option<&'h str>>,
    host: Option<Option<&'h str>>,
    uri: Option<Option<&'h str>>,
    original_url: Option<Option<&'h str>>,
    original_method: Option<Option<&'h str>>,
}

impl<'h> Forwarding<'h> {
    fn scan(headers: &'h HeaderMap) -> Self {
        let mut f = Forwarding::default();
        for (name, value) in headers {
            let n = name.as_str();
            if n.len() < 14 || !n.starts_with("x-") {
                continue;
            }
            let slot = match n {
                "x-forwarded-method" => &mut f.method,
                "x-forwarded-proto" => &mut f.proto,
                "x-forwarded-host" => &mut f.host,
                "x-forwarded-uri" => &mut f.uri,
                "x-original-url" => &mut f.original_url,
                "x-original-method" => &mut f.original_method,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.to_str().ok());
            }
        }
        f
    }

    /// True when any header naming the original request is present.
    fn any(&self) -> bool {
        self.uri.is_some() || self.host.is_some() || self.original_url.is_some()
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The first of a comma-separated list. Header text is ASCII (`to_str`), so
/// byte scans and ASCII trimming suffice; they cost a fraction of `split` and
/// `trim` on these short values.
fn first_value(v: &str) -> &str {
    let end = v.bytes().position(|b| b == b',').unwrap_or(v.len());
    v[..end].trim_ascii()
}

/// A method header: absent is `None` (unknown), present but unreadable or
/// not a token is an error.
fn method_from(v: Option<Option<&str>>) -> Result<Option<Method>, OriginalError> {
    match v {
        None => Ok(None),
        Some(m) => {
            let m = m.ok_or(OriginalError::BadMethod)?;
            Method::from_bytes(m.trim_ascii().as_bytes())
                .map(Some)
                .map_err(|_| OriginalError::BadMethod)
        }
    }
}

/// Host text safe to put into a URL: a normalisable host and an optional numeric port.
fn is_safe_host_raw(raw: &str) -> bool {
    !raw.is_empty()
        && raw.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        })
}

/// Answers one forward-auth check.
///
/// With debug logging on, the whole check runs in the request's span; else
/// only its log lines enter it (see [`request_id::enter_span`]).
pub async fn check<B>(
    gw: &Gateway,
    rt: &Runtime,
    req: &Request<B>,
    peer: Peer<'_>,
) -> Response<Body> {
    if tracing::enabled!(tracing::Level::DEBUG) {
        judge(gw, rt, req, peer)
            .instrument(request_id::span(peer.id))
            .await
    } else {
        judge(gw, rt, req, peer).await
    }
}

/// [`check`] without waiting: the answer when the decision needs no round
/// trip (see [`Gateway::decide_now`]), else `None`, and the caller runs
/// [`check`]. Most checks (a cached session, no cookie, a public rule, a
/// malformed request) are answered here, so the server needs no future
/// for them.
pub fn check_now<B>(
    gw: &Gateway,
    rt: &Runtime,
    req: &Request<B>,
    peer: Peer<'_>,
) -> Option<Response<Body>> {
    let _span =
        tracing::enabled!(tracing::Level::DEBUG).then(|| request_id::span(peer.id).entered());
    let asked = match Asking::read(gw, req, peer) {
        Ok(a) => a,
        Err((e, at)) => return Some(bad(rt, &at, &e)),
    };
    let (host, path) = match asked.host_and_path() {
        Ok(hp) => hp,
        Err(e) => return Some(bad(rt, &asked.at(), &e)),
    };
    let facts = asked.facts(rt, &host, &path);
    let decision = gw.decide_now(rt, &facts, asked.headers)?;
    Some(asked.answer(rt, decision))
}

async fn judge<B>(gw: &Gateway, rt: &Runtime, req: &Request<B>, peer: Peer<'_>) -> Response<Body> {
    let asked = match Asking::read(gw, req, peer) {
        Ok(a) => a,
        Err((e, at)) => return bad(rt, &at, &e),
    };
    let (host, path) = match asked.host_and_path() {
        Ok(hp) => hp,
        Err(e) => return bad(rt, &asked.at(), &e),
    };
    let facts = asked.facts(rt, &host, &path);
    let decision = gw.decide(rt, &facts, asked.headers).await;
    asked.answer(rt, decision)
}

/// A forward-auth request read: the original request it asks about, and
/// where the answer goes.
struct Asking<'r> {
    headers: &'r HeaderMap,
    peer: Peer<'r>,
    original: Original<'r>,
}

impl<'r> Asking<'r> {
    /// Reads the original request; a malformed one is an error, with where
    /// its 400 goes.
    fn read<B>(
        gw: &Gateway,
        req: &'r Request<B>,
        peer: Peer<'r>,
    ) -> Result<Asking<'r>, (OriginalError, At<'r>)> {
        let trusted = peer.trusted;
        let headers = req.headers();
        let query = req.uri().query();
        let nginx_query = http_util::query_param(query, "mode").as_deref() == Some("nginx");
        if !trusted && has_forwarding_headers(headers) {
            warn_untrusted_once(gw, peer);
        }
        let own_target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        match Original::from_request(headers, own_target, peer.tls, trusted, nginx_query) {
            Ok(original) => Ok(Asking {
                headers,
                peer,
                original,
            }),
            Err(e) => Err((
                e,
                at(headers, peer, nginx_mode(headers, trusted, nginx_query)),
            )),
        }
    }

    /// The original host and path, normalised for the rules.
    fn host_and_path(&self) -> Result<(Cow<'_, str>, Cow<'_, str>), OriginalError> {
        let raw = &self.original.host_raw;
        let host = match normalize_host(raw) {
            Ok(h) if is_safe_host_raw(raw) => h,
            _ => return Err(OriginalError::BadHost),
        };
        let path = normalize(split_target(&self.original.target))?;
        Ok((host, path))
    }

    /// What the rules see of the original request.
    fn facts<'f>(&'f self, rt: &Runtime, host: &'f str, path: &'f str) -> RequestFacts<'f> {
        RequestFacts {
            host,
            path,
            method: self.original.method.as_ref(),
            client: crate::auth::client_addr::for_rules(
                &rt.rules,
                self.peer.addr.ip(),
                self.headers,
                &rt.config.server.trusted_proxies,
            ),
        }
    }

    /// The answer to the front proxy.
    fn answer(
        &self,
        rt: &Runtime,
        decision: crate::auth::pipeline::Decision<'_>,
    ) -> Response<Body> {
        let asked = Asked {
            proto: self.original.proto,
            host_raw: &self.original.host_raw,
            target: &self.original.target,
        };
        match respond::decision(rt, &self.at(), &asked, decision) {
            Answer::Respond(res) => res,
            Answer::Pass(principal) => respond::allowed(rt, &asked, principal.as_ref()),
        }
    }

    fn at(&self) -> At<'r> {
        at(self.headers, self.peer, self.original.nginx)
    }
}

/// The 400 of a request that cannot be judged.
fn bad(rt: &Runtime, at: &At<'_>, e: &OriginalError) -> Response<Body> {
    respond::failure(Some(rt), at, Failure::BadCheck(e))
}

/// Where a forward-auth answer goes: plain, or nginx's (never a redirect).
fn at<'r>(headers: &'r HeaderMap, peer: Peer<'r>, nginx: bool) -> At<'r> {
    At {
        mode: if nginx {
            Mode::Nginx
        } else {
            Mode::ForwardAuth
        },
        headers: Some(headers),
        id: Some(peer.id),
    }
}

fn has_forwarding_headers(h: &HeaderMap) -> bool {
    Forwarding::scan(h).any()
}

fn warn_untrusted_once(gw: &Gateway, peer: Peer<'_>) {
    if !gw.untrusted_hint_logged.swap(true, Ordering::Relaxed) {
        let _span = request_id::enter_span(peer.id);
        tracing::warn!(
            client.addr = %peer.addr,
            "forward-auth request with X-Forwarded-*/X-Original-* headers from a peer outside server.trusted_proxies; the headers are ignored. Add the front proxy's address to trusted_proxies"
        );
    }
}

/// True for nginx `auth_request` checks (`X-Original-URL` from a trusted peer, or `?mode=nginx`).
fn nginx_mode(headers: &HeaderMap, trusted: bool, nginx_query: bool) -> bool {
    nginx_query || (trusted && headers.contains_key(&X_ORIGINAL_URL))
}

#[cfg(test)]
mod tests;

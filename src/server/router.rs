//! Routing one request: its id, its access log line, and the endpoint that
//! answers it. A forward-auth check that needs no round trip is answered at
//! once, without a future; the rest is served by one boxed future (the
//! check and the reverse proxy inline in it; login, logout, debug, health
//! and admin boxed again, in the request's span).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::base::transport::body::ClientBody;
use http::{HeaderValue, Method, Request, Response};
use tracing::Instrument;

use crate::auth::pipeline::{Peer, Runtime};
use crate::base::http_util::Body;
use crate::base::request_id::{self, X_REQUEST_ID};
use crate::{
    base::access, endpoints::admin, endpoints::forward_auth, endpoints::login, endpoints::proxy,
    endpoints::respond,
};

use super::{Role, Shared};

/// What [`route`] made of a request.
// Not boxed: it lives for one return, and a box would add an allocation to
// every request that waits (each proxied one).
#[allow(clippy::large_enum_variant)]
pub(super) enum Routed {
    /// The answer, made at once.
    Now(Response<Body>),
    /// A request that needs waiting; its future is [`Pending::serve`].
    Later(Pending),
    /// A request for the reverse proxy, with nothing around it (no page
    /// templates, access log or debug span): its future is
    /// [`Proxied::serve`], one level instead of the three of [`Pending`]'s.
    Proxy(Proxied),
}

impl Routed {
    /// The answer, waited for when it needs waiting.
    pub(super) async fn answer(self, shared: &Shared) -> Response<Body> {
        match self {
            Routed::Now(res) => res,
            Routed::Later(pending) => pending.serve(shared).await,
            Routed::Proxy(proxied) => proxied.serve(shared).await,
        }
    }
}

/// A request [`route`] sends straight to the reverse proxy.
pub(super) struct Proxied {
    req: Request<ClientBody>,
    id: HeaderValue,
    peer: SocketAddr,
    tls: bool,
}

/// A request the server could not answer at once (see [`route`]).
pub(super) struct Pending {
    req: Request<ClientBody>,
    rt: arc_swap::Guard<Arc<Runtime>>,
    id: HeaderValue,
    fresh: bool,
    peer: SocketAddr,
    tls: bool,
}

/// Gives the request its id (see [`request_id`]) and answers it when that
/// takes no waiting: a forward-auth check that needs no round trip (see
/// [`forward_auth::check_now`]), which is most of them. The server then
/// needs no future for the request. Anything else is [`Pending`].
///
/// Either way the answer is made with the operator's page templates (when
/// `server.pages_dir` is set), gets its access log line (when
/// `server.access_log` is on) and returns the id in `X-Request-Id`.
pub(super) fn route(
    shared: &Shared,
    req: Request<ClientBody>,
    peer: SocketAddr,
    tls: bool,
) -> Routed {
    let rt = shared.gw.runtime.load();
    let trusted = rt.is_trusted(peer.ip());
    let (id, fresh) = match request_id::of(req.headers(), trusted) {
        Some(fresh) => (fresh, true),
        None => (req.headers()[&X_REQUEST_ID].clone(), false),
    };
    if matches!(shared.role, Role::Main { .. }) && is_check(&rt, &req) {
        let conn = Conn {
            peer: Peer {
                addr: peer,
                tls,
                trusted,
                id: &id,
            },
            fresh,
        };
        let check = || check_now(shared, &rt, &req, conn);
        let server = &rt.config.server;
        let now = if server.pages.is_none() && !server.access_log {
            check()
        } else {
            let branding =
                server
                    .pages
                    .clone()
                    .map(|templates| crate::endpoints::pages::Branding {
                        templates,
                        request_id: id.clone(),
                    });
            crate::endpoints::pages::branded_now(branding, || {
                if server.access_log {
                    access::logged_now(access_line(&req, &id), check)
                } else {
                    check()
                }
            })
        };
        if let Some(mut res) = now {
            res.headers_mut().insert(&X_REQUEST_ID, id);
            return Routed::Now(res);
        }
    }
    if straight_to_proxy(shared, &rt, &req) {
        drop(rt);
        let mut req = req;
        if fresh {
            // The upstream sees the id the client gets back.
            req.headers_mut().insert(&X_REQUEST_ID, id.clone());
        }
        return Routed::Proxy(Proxied { req, id, peer, tls });
    }
    Routed::Later(Pending {
        req,
        rt,
        id,
        fresh,
        peer,
        tls,
    })
}

/// The request goes to the reverse proxy as [`dispatch`] would send it
/// there, and nothing wraps the proxy's answer: no page templates, no
/// access log line, no debug span. Requests [`dispatch`] might give to
/// another endpoint (under the prefix, the assertion keys, health and
/// metrics) take the longer way.
fn straight_to_proxy(shared: &Shared, rt: &Runtime, req: &Request<ClientBody>) -> bool {
    let Role::Main { with_admin } = shared.role else {
        return false;
    };
    let server = &rt.config.server;
    if server.pages.is_some() || server.access_log || tracing::enabled!(tracing::Level::DEBUG) {
        return false;
    }
    let path = req.uri().path();
    #[cfg(test)]
    if path == super::tests::PANIC_PATH {
        return false;
    }
    let p = rt.prefix();
    let under_prefix = path.starts_with(p) && path[p.len()..].starts_with('/');
    !under_prefix
        && path != crate::auth::assertion::JWKS_PATH
        && !(with_admin && admin::is_served(req))
}

impl Proxied {
    /// Proxies the request [`route`] sent straight to the reverse proxy.
    pub(super) async fn serve(self, shared: &Shared) -> Response<Body> {
        let Proxied { req, id, peer, tls } = self;
        let mut res = proxy::handle(&shared.gw, req, peer, tls, &id).await;
        res.headers_mut().insert(&X_REQUEST_ID, id);
        res
    }
}

/// The request asks `<prefix>/auth`.
fn is_check(rt: &Runtime, req: &Request<ClientBody>) -> bool {
    req.uri()
        .path()
        .strip_prefix(rt.prefix())
        .is_some_and(|rest| rest == "/auth")
}

/// The forward-auth check when it needs no waiting, timed for `/metrics`.
fn check_now(
    shared: &Shared,
    rt: &Runtime,
    req: &Request<ClientBody>,
    conn: Conn<'_>,
) -> Option<Response<Body>> {
    let started = std::time::Instant::now();
    let res = forward_auth::check_now(&shared.gw, rt, req, conn.peer)?;
    crate::base::metrics::global()
        .check_duration
        .observe(started.elapsed());
    Some(res)
}

/// The start of a request's access log line.
fn access_line(req: &Request<ClientBody>, id: &HeaderValue) -> access::Line {
    access::Line {
        method: req.method().clone(),
        host: crate::base::http_util::request_host(req)
            .unwrap_or("")
            .to_owned(),
        path: req.uri().path().to_owned(),
        id: id.clone(),
        started: std::time::Instant::now(),
    }
}

impl Pending {
    /// Serves the request [`route`] could not answer at once.
    pub(super) async fn serve(self, shared: &Shared) -> Response<Body> {
        let Pending {
            req,
            rt,
            id,
            fresh,
            peer,
            tls,
        } = self;
        let conn = Conn {
            peer: Peer {
                addr: peer,
                tls,
                trusted: rt.is_trusted(peer.ip()),
                id: &id,
            },
            fresh,
        };
        let mut res = match rt.config.server.pages.clone() {
            Some(templates) => {
                let branding = crate::endpoints::pages::Branding {
                    templates,
                    request_id: id.clone(),
                };
                crate::endpoints::pages::branded(
                    Some(branding),
                    serve_logged(shared, rt, req, conn),
                )
                .await
            }
            None => serve_logged(shared, rt, req, conn).await,
        };
        res.headers_mut().insert(&X_REQUEST_ID, id);
        res
    }
}

/// Serves a request, with its access log line when `server.access_log` is on.
async fn serve_logged(
    shared: &Shared,
    rt: arc_swap::Guard<Arc<Runtime>>,
    req: Request<ClientBody>,
    conn: Conn<'_>,
) -> Response<Body> {
    if rt.config.server.access_log {
        let line = access_line(&req, conn.peer.id);
        access::logged(line, dispatch(shared, rt, req, conn)).await
    } else {
        dispatch(shared, rt, req, conn).await
    }
}

/// A request's connection, and whether its id replaced the request's own header.
#[derive(Clone, Copy)]
struct Conn<'a> {
    peer: Peer<'a>,
    fresh: bool,
}

impl Conn<'_> {
    /// The span of the request's log lines, naming its id.
    fn span(self) -> tracing::Span {
        request_id::span(self.peer.id)
    }
}

/// Routes one request to its endpoint (see [`route`] for the checks
/// answered at once).
///
/// The forward-auth check is awaited inline and without a span of its own
/// (see [`forward_auth::check`]), judged on the runtime `route` loaded, and
/// so is the reverse proxy, the other common path; the rarer endpoints'
/// futures are boxed, so the request's future is as large as the proxy's
/// instead of as large as the login callback's. Every endpoint but the
/// check and the proxy runs in the request's span; those two run in it
/// only with debug logging on, and their answers' log lines enter it.
async fn dispatch(
    shared: &Shared,
    rt: arc_swap::Guard<Arc<Runtime>>,
    mut req: Request<ClientBody>,
    conn: Conn<'_>,
) -> Response<Body> {
    let gw = &shared.gw;
    let (peer, tls) = (conn.peer.addr, conn.peer.tls);
    let path = req.uri().path();
    #[cfg(test)]
    if path == super::tests::PANIC_PATH {
        panic!("a request that panics its connection task");
    }
    let health = match shared.role {
        Role::Admin => {
            drop(rt);
            return Box::pin(admin::handle_admin(gw, &req, peer).instrument(conn.span()))
                .await
                .unwrap_or_else(respond::not_found);
        }
        Role::Main { with_admin } => with_admin,
    };
    if path == crate::auth::assertion::JWKS_PATH && req.method() == Method::GET {
        if let Some(res) = crate::auth::assertion::jwks_response(rt.assertion.as_ref()) {
            return res;
        }
    }
    let prefix_len = {
        let p = rt.prefix();
        (path.starts_with(p) && path[p.len()..].starts_with('/')).then_some(p.len())
    };
    if let Some(n) = prefix_len {
        let method = req.method();
        if &path[n..] == "/auth" {
            let started = std::time::Instant::now();
            let res = forward_auth::check(gw, &rt, &req, conn.peer).await;
            crate::base::metrics::global()
                .check_duration
                .observe(started.elapsed());
            return res;
        }
        drop(rt);
        return match (&path[n..], method) {
            ("/start", &Method::GET) => {
                Box::pin(login::start(gw, &req, peer, tls).instrument(conn.span())).await
            }
            ("/callback", &Method::GET) => {
                Box::pin(login::callback(gw, &req, peer, tls).instrument(conn.span())).await
            }
            ("/sign_out", &Method::GET | &Method::POST) => {
                Box::pin(login::sign_out(gw, &req, peer, tls).instrument(conn.span())).await
            }
            ("/userinfo", &Method::GET) => {
                Box::pin(login::userinfo(gw, &req).instrument(conn.span())).await
            }
            ("/backchannel_logout", &Method::POST) => {
                Box::pin(crate::endpoints::logout::backchannel(gw, req).instrument(conn.span()))
                    .await
            }
            ("/debug", &Method::GET) => {
                Box::pin(crate::endpoints::debug::handle(gw, &req, peer).instrument(conn.span()))
                    .await
            }
            _ => respond::not_found(),
        };
    }
    drop(rt);
    // Without an admin listener, health and metrics answer on hosts no rule
    // proxies (a proxied app's own `/healthz` reaches the app).
    if health && admin::is_served(&req) && !proxy::proxies(gw, &req) {
        if let Some(res) =
            Box::pin(admin::handle(gw, &req, admin::Detail::Public).instrument(conn.span())).await
        {
            return res;
        }
    }
    if conn.fresh {
        // The upstream sees the id the client gets back.
        req.headers_mut()
            .insert(&X_REQUEST_ID, conn.peer.id.clone());
    }
    // Like the check, a proxied request has a span only when debug logging
    // is on (creating, entering and closing one costs about a microsecond);
    // its answer's log lines enter one through the id.
    let id = conn.peer.id;
    if tracing::enabled!(tracing::Level::DEBUG) {
        proxy::handle(gw, req, peer, tls, id)
            .instrument(conn.span())
            .await
    } else {
        proxy::handle(gw, req, peer, tls, id).await
    }
}

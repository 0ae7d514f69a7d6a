//! The admin endpoints: `/healthz` (the process answers), `/readyz` (IdP
//! metadata and signing keys loaded, session store reachable), `/metrics`
//! (Prometheus text, see [`crate::base::metrics`]), and — on the
//! admin listener only, never on the public one — the session inventory:
//! `GET /admin/sessions[?user=U]` lists sessions, `DELETE /admin/sessions?user=U
//! | ?sid=S | ?all=true` ends them on every instance. `/readyz` also lists the
//! key state of every `[[oidc.bearer_issuers]]` entry under `jwks`; an extra
//! issuer whose keys are unreachable is reported there but does not make the
//! gateway unready (browser logins still work).
//!
//! Health and metrics are served on `admin_listen` when it is set. Otherwise they are served
//! on the main listener, but only for hosts that no rule proxies (an app's
//! own `/healthz` reaches the app), and `/readyz` there names which part is
//! not ready without the error text (store addresses, TLS and key errors
//! stay on the admin listener and in the log).
//!
//! `/readyz` reads state the gateway keeps anyway: the IdP metadata and keys
//! refreshed in the background, and the store's own readiness, which reuses
//! its connection and its answer for a second (see [`SessionStore::ping`]).
//! A flood of `/readyz` is no flood at Redis or at the IdP.
//!
//! On the admin listener every request first passes [`guard`]: with
//! `server.admin_token_file` set, everything except `/healthz` and `/readyz`
//! (`/metrics` included) needs `Authorization: Bearer <token>` (401 otherwise), and a request
//! addressed to a DNS name other than `localhost` is refused with 421 unless
//! it carries the token (DNS rebinding). Config validation refuses an
//! `admin_listen` that is not loopback unless the token is set.
//!
//! [`SessionStore::ping`]: crate::auth::session::SessionStore::ping

pub mod guard;

use std::net::SocketAddr;

use http::{Method, Request, Response, StatusCode};

use crate::auth::bearer::jwks::Status;
use crate::auth::pipeline::Gateway;
use crate::auth::session::Revoke;
use crate::base::http_util::{fixed, query_param, Body};
use crate::endpoints::respond::{self, At, Failure, Mode};

/// How much `/readyz` tells.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Detail {
    /// The public listener: which part is not ready, no error text.
    Public,
    /// The admin listener: the errors themselves.
    Admin,
}

/// True for the health endpoints' paths and methods.
pub fn is_health<B>(req: &Request<B>) -> bool {
    (req.method() == Method::GET || req.method() == Method::HEAD)
        && matches!(req.uri().path(), "/healthz" | "/readyz")
}

/// True for `GET` or `HEAD /metrics`.
pub fn is_metrics<B>(req: &Request<B>) -> bool {
    (req.method() == Method::GET || req.method() == Method::HEAD) && req.uri().path() == "/metrics"
}

/// True for what [`handle`] answers: health and metrics.
pub fn is_served<B>(req: &Request<B>) -> bool {
    is_health(req) || is_metrics(req)
}

/// Answers `/healthz`, `/readyz` and `/metrics`; `None` for any other path.
pub async fn handle<B>(gw: &Gateway, req: &Request<B>, detail: Detail) -> Option<Response<Body>> {
    if !is_served(req) {
        return None;
    }
    match req.uri().path() {
        "/healthz" => Some(fixed(StatusCode::OK, "text/plain", "ok\n")),
        "/metrics" => Some(fixed(
            StatusCode::OK,
            crate::base::metrics::CONTENT_TYPE,
            crate::base::metrics::render(),
        )),
        _ => Some(readyz(gw, detail).await),
    }
}

/// The admin listener: health plus `/admin/sessions`, behind [`guard`].
pub async fn handle_admin<B>(
    gw: &Gateway,
    req: &Request<B>,
    peer: SocketAddr,
) -> Option<Response<Body>> {
    let admitted = {
        let rt = gw.runtime.load();
        guard::admit(rt.config.server.admin_token.as_ref(), req, is_health(req))
    };
    if let Err(refusal) = admitted {
        let failure = Failure::Admin {
            refusal,
            peer,
            host: crate::base::http_util::request_host(req).unwrap_or(""),
            path: req.uri().path(),
        };
        return Some(answer_failure(req, failure));
    }
    if req.uri().path() == "/admin/sessions" {
        return Some(sessions(gw, req).await);
    }
    handle(gw, req, Detail::Admin).await
}

async fn readyz(gw: &Gateway, detail: Detail) -> Response<Body> {
    let admin = detail == Detail::Admin;
    let oidc_ok = gw.oidc.is_ready();
    let store = tokio::time::timeout(std::time::Duration::from_secs(2), gw.sessions.ping()).await;
    let (store_ok, store_status) = match store {
        Ok(Ok(())) => (true, "ok".to_owned()),
        Ok(Err(e)) if admin => (false, e.to_string()),
        Err(_) if admin => (false, "session store did not answer within 2s".to_owned()),
        _ => (false, "session store unavailable".to_owned()),
    };
    let mut jwks = serde_json::Map::new();
    let mut keys_ok = true;
    for (i, issuer) in gw.bearer.issuers().iter().enumerate() {
        let status = issuer.jwks.status();
        let text = match &status {
            Status::Loaded(n) => format!("ok ({n} keys)"),
            Status::Pending => "signing keys not fetched yet".to_owned(),
            Status::Failed(e) if admin => format!("signing keys not loaded: {e}"),
            Status::Failed(_) => "signing keys not loaded".to_owned(),
        };
        // The main issuer's keys are part of the IdP being usable.
        if i == 0 && !matches!(status, Status::Loaded(_)) {
            keys_ok = false;
        }
        jwks.insert(issuer.iss.clone(), text.into());
    }
    let ready = oidc_ok && store_ok && keys_ok;
    let body = serde_json::json!({
        "ready": ready,
        "oidc": if oidc_ok { "ok" } else { "identity provider metadata not loaded" },
        "store": store_status,
        "jwks": jwks,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    fixed(status, "application/json", body.to_string())
}

async fn sessions<B>(gw: &Gateway, req: &Request<B>) -> Response<Body> {
    let query = req.uri().query();
    let user = query_param(query, "user");
    let result = match *req.method() {
        Method::GET => gw.sessions.list(user.as_deref()).await.map(|list| {
            let items: Vec<_> = list.iter().map(|s| s.summary()).collect();
            serde_json::json!({ "sessions": items })
        }),
        Method::DELETE => {
            let sid = query_param(query, "sid");
            let all = query_param(query, "all").is_some_and(|v| v == "true");
            let what = match (&user, &sid, all) {
                (Some(u), None, false) if !u.is_empty() => Revoke::User(u),
                (None, Some(s), false) if !s.is_empty() => Revoke::IdpSession(s),
                (None, None, true) => Revoke::All,
                _ => {
                    return answer_failure(
                        req,
                        Failure::BadQuery(
                            "give exactly one of ?user=NAME, ?sid=IDP_SID or ?all=true",
                        ),
                    )
                }
            };
            let outcome = gw.sessions.revoke(what).await;
            if let Ok(n) = &outcome {
                tracing::info!(target_sessions = ?what, revoked = n, "sessions revoked by an administrator");
            }
            outcome.map(|n| serde_json::json!({ "revoked": n }))
        }
        _ => return answer_failure(req, Failure::Method("use GET or DELETE")),
    };
    match result {
        Ok(body) => fixed(StatusCode::OK, "application/json", body.to_string()),
        Err(e) => answer_failure(req, Failure::Store(&e)),
    }
}

/// The admin listener's answer to a failed request (JSON, with the cause).
fn answer_failure<B>(req: &Request<B>, failure: Failure<'_>) -> Response<Body> {
    respond::failure(None, &At::new(Mode::Admin, req.headers()), failure)
}

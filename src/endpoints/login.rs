//! The browser-facing login endpoints under the prefix: `start`, `callback`,
//! `sign_out` and `userinfo`.
//!
//! This is where the OIDC protocol ([`crate::auth::oidc`]) meets cookies and
//! sessions: `start` seals the flow state into its own cookie and sends the
//! browser to the IdP; `callback` opens that cookie, lets `oidc` redeem and
//! validate, stores the session and sets the session cookie; `sign_out` ends
//! it. Every `rd` passes [`crate::auth::redirect::RedirectPolicy`] first.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};

use crate::auth::diagnostics::{self, Class};
use crate::auth::oidc::flow::{self, FlowState, FLOW_TTL_SECS};
use crate::auth::oidc::LoginError;
use crate::auth::pipeline::{Gateway, Runtime};
use crate::auth::rules::host::normalize_host;
use crate::auth::session::{Session, SessionId};
use crate::base::clock::unix_now;
use crate::base::http_util::{self, Body};
use crate::base::secret::constant_time_eq;
use crate::endpoints::respond::{self, At, Failure, Mode};

/// A callback whose parameters are all there and whose flow cookie opened.
struct Callback<'q> {
    flow: FlowState,
    /// The `state` parameter.
    state: Cow<'q, str>,
    /// The `code` parameter.
    code: Cow<'q, str>,
}

/// Scheme and host of the request as the browser sent it (through a trusted proxy when there is one).
struct Origin {
    proto: &'static str,
    host: String,
}

impl Origin {
    fn of<B>(rt: &Runtime, req: &Request<B>, peer: SocketAddr, tls: bool) -> Origin {
        let h = req.headers();
        let get = |n: &str| {
            h.get(n)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(',').next().unwrap_or("").trim())
        };
        let trusted = rt.is_trusted(peer.ip());
        let mut proto = if tls { "https" } else { "http" };
        let mut host = http_util::request_host(req).unwrap_or("").to_owned();
        if trusted {
            if let Some(p) = get("x-forwarded-proto") {
                proto = if p.eq_ignore_ascii_case("http") {
                    "http"
                } else {
                    "https"
                };
            }
            if let Some(fh) = get("x-forwarded-host") {
                host = fh.to_owned();
            }
        }
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b))
        {
            host = "localhost".into();
        }
        Origin { proto, host }
    }

    fn base(&self, rt: &Runtime) -> String {
        match &rt.config.server.external_url {
            Some(u) => u.as_str().trim_end_matches('/').to_owned(),
            None => format!("{}://{}", self.proto, self.host),
        }
    }

    fn bare_host(&self) -> Option<String> {
        normalize_host(&self.host).ok().map(|h| h.into_owned())
    }
}

/// `GET <prefix>/start?rd=URL`: begins a login.
pub async fn start<B>(
    gw: &Gateway,
    req: &Request<B>,
    peer: SocketAddr,
    tls: bool,
) -> Response<Body> {
    let rt = gw.runtime.load();
    let origin = Origin::of(&rt, req, peer, tls);
    let rd = safe_rd(&rt, req.uri().query(), &origin);
    let redirect_uri = format!("{}{}/callback", origin.base(&rt), rt.prefix());
    let retry = format!(
        "{}{}/start?rd={}",
        origin.base(&rt),
        rt.prefix(),
        http_util::encode_component(&rd)
    );
    let (url, flow) = match gw.oidc.begin(&redirect_uri, &rd).await {
        Ok(v) => v,
        Err(e) => return login_failed(req.headers(), &e, &retry),
    };
    diagnostics::watch_redirect_uri(&gw.oidc, &redirect_uri);
    let Some((name, value)) = flow.seal(&gw.keys) else {
        return login_failed(req.headers(), &LoginError::StateInvalid, &retry);
    };
    let mut res = http_util::redirect(&url);
    let evict = flow::to_evict(flow::present(&gw.keys, http_util::cookies(req.headers())));
    for old in evict {
        set_cookie(
            &mut res,
            &gw.keys.build(old, String::new(), 0, rt.prefix(), false),
        );
    }
    set_cookie(
        &mut res,
        &gw.keys
            .build(name, value, FLOW_TTL_SECS as i64, rt.prefix(), false),
    );
    res
}

/// `GET <prefix>/callback`: completes a login.
pub async fn callback<B>(
    gw: &Gateway,
    req: &Request<B>,
    peer: SocketAddr,
    tls: bool,
) -> Response<Body> {
    let rt = gw.runtime.load();
    let origin = Origin::of(&rt, req, peer, tls);
    let query = req.uri().query();
    let state = http_util::query_param(query, "state");
    let flow_cookie = state
        .as_deref()
        .and_then(|s| FlowState::cookie_name(gw.keys.cookie_name(), s));
    let opened = open_flow(gw, req.headers(), query, flow_cookie.as_deref());
    // "Try again" starts over towards the same `rd` when the flow cookie told it.
    let mut retry = format!("{}{}/start", origin.base(&rt), rt.prefix());
    if let Ok(opened) = &opened {
        retry.push_str("?rd=");
        retry.push_str(&http_util::encode_component(&opened.flow.rd));
    }
    let result = match opened {
        Ok(opened) => complete(gw, &rt, opened).await,
        Err(e) => Err(e),
    };
    crate::base::metrics::global().login(
        result
            .as_ref()
            .map(|_| ())
            .map_err(LoginError::metric_reason),
    );
    let mut res = match result {
        Ok((session, rd)) => {
            tracing::info!(user = %session.identity.user, session = %session.id.log_tag(), "login succeeded");
            let mut res = http_util::redirect(&rd);
            set_cookie(&mut res, &gw.keys.session_cookie(&session.id));
            res
        }
        Err(e) => {
            diagnostics::login_failed(&e);
            login_failed(req.headers(), &e, &retry)
        }
    };
    if let Some(name) = flow_cookie {
        if http_util::cookie_bytes(req.headers(), &name).is_some() {
            set_cookie(
                &mut res,
                &gw.keys.build(name, String::new(), 0, rt.prefix(), false),
            );
        }
    }
    res
}

/// The callback's first steps: the IdP's `error=`, the `code` and `state`
/// parameters, and this browser's flow cookie, opened.
fn open_flow<'q>(
    gw: &Gateway,
    headers: &HeaderMap,
    query: Option<&'q str>,
    flow_cookie: Option<&str>,
) -> Result<Callback<'q>, LoginError> {
    if let Some(err) = http_util::query_param(query, "error") {
        let description = http_util::query_param(query, "error_description").unwrap_or_default();
        return Err(LoginError::IdpRefused {
            error: truncate(&err, 100),
            description: truncate(&description, 300),
        });
    }
    let (Some(state), Some(code)) = (
        http_util::query_param(query, "state"),
        http_util::query_param(query, "code"),
    ) else {
        return Err(LoginError::MissingParameters);
    };
    let name = flow_cookie.ok_or(LoginError::StateMismatch)?;
    let value = http_util::cookie_bytes(headers, name).ok_or(LoginError::StateMissing)?;
    let flow = std::str::from_utf8(value)
        .ok()
        .and_then(|value| FlowState::unseal(&gw.keys, name, value))
        .ok_or(LoginError::StateInvalid)?;
    Ok(Callback { flow, state, code })
}

/// The rest of the callback, once the flow is open: the `state` checked
/// against the flow's, the code redeemed, the session stored. The session
/// and where to send the browser.
async fn complete(
    gw: &Gateway,
    rt: &Runtime,
    callback: Callback<'_>,
) -> Result<(Arc<Session>, String), LoginError> {
    let Callback { flow, state, code } = callback;
    if !constant_time_eq(flow.state.as_bytes(), state.as_bytes()) {
        return Err(LoginError::StateMismatch);
    }
    if flow.is_expired() {
        return Err(LoginError::StateExpired);
    }
    let outcome = gw.oidc.complete(&flow, &code).await?;
    if outcome.identity.groups.is_empty() && rt.rules_need_groups {
        let claim = &gw.oidc.config().groups_claim.dotted;
        let state = if outcome.groups_claim_missing {
            "absent from the ID token and userinfo"
        } else {
            "empty"
        };
        diagnostics::diagnose(
            Class::EmptyGroups,
            &format!("the groups claim `{claim}` is {state} for user {:?} while rules need groups; every group rule denies this user", outcome.identity.user),
        );
    }
    let now = unix_now();
    let refresh_at = crate::auth::session::refresh_at(
        outcome.id_token.expose(),
        rt.config.session.refresh,
        outcome.refresh_token.is_some(),
    );
    let identity = outcome.identity;
    let id = SessionId::random();
    if let Some(address) = &outcome.unverified_email {
        tracing::warn!(
            user = %identity.user,
            session = %id.log_tag(),
            email = %address,
            "the identity provider did not mark this email as verified (email_verified is not true): emails/email_domains rules do not match it and the email header is sent empty; make the identity provider verify addresses, or set oidc.allow_unverified_email = true if only administrators can set them"
        );
    }
    let session = Arc::new(Session {
        id,
        headers: identity.headers(),
        identity,
        subject: outcome.subject,
        idp_session: outcome.idp_session,
        id_token: Some(outcome.id_token),
        access_token: Some(outcome.access_token),
        refresh_token: outcome.refresh_token,
        created_at: now,
        expires_at: now + rt.config.session.lifetime.as_secs(),
        refresh_at,
    });
    gw.sessions
        .save(session.clone())
        .await
        .map_err(LoginError::Store)?;
    Ok((session, flow.rd))
}

/// `GET|POST <prefix>/sign_out?rd=URL`: ends the session.
pub async fn sign_out<B>(
    gw: &Gateway,
    req: &Request<B>,
    peer: SocketAddr,
    tls: bool,
) -> Response<Body> {
    let rt = gw.runtime.load();
    let origin = Origin::of(&rt, req, peer, tls);
    let rd = safe_rd(&rt, req.uri().query(), &origin);
    let sid = http_util::cookie_bytes(req.headers(), gw.keys.cookie_name())
        .and_then(|v| gw.keys.unseal(v));
    let mut id_token = None;
    if let Some(id) = sid {
        let ended = async {
            if rt.config.oidc.rp_logout {
                // The ID token is the IdP's hint of which of its sessions to end.
                id_token = gw
                    .sessions
                    .load(&id)
                    .await?
                    .and_then(|s| s.id_token.as_ref().map(|t| t.expose().clone()));
            }
            gw.sessions.remove(&id).await
        };
        if let Err(e) = ended.await {
            let at = At::new(Mode::Endpoint, req.headers());
            return respond::failure(None, &at, Failure::Store(&e));
        }
        tracing::info!(session = %id.log_tag(), "signed out");
    }
    let endpoint = match &id_token {
        Some(_) => gw.oidc.end_session_endpoint().await,
        None => None,
    };
    if endpoint.is_none() && http_util::query_param(req.uri().query(), "rd").is_none() {
        if let Some(mut page) = crate::endpoints::pages::signed_out(&rd) {
            set_cookie(&mut page, &gw.keys.clear_session_cookie());
            return page;
        }
    }
    let target = match (&id_token, endpoint) {
        (Some(hint), Some(endpoint)) => {
            let back = if rd.starts_with('/') {
                format!("{}{rd}", origin.base(&rt))
            } else {
                rd.clone()
            };
            crate::endpoints::logout::end_session_url(
                &endpoint,
                hint,
                &back,
                &rt.config.oidc.client_id,
            )
            .unwrap_or(rd)
        }
        _ => rd,
    };
    let mut res = http_util::redirect(&target);
    set_cookie(&mut res, &gw.keys.clear_session_cookie());
    res
}

/// `GET <prefix>/userinfo`: the current identity as JSON, or 401.
pub async fn userinfo<B>(gw: &Gateway, req: &Request<B>) -> Response<Body> {
    match gw.session(req.headers()).await {
        Ok(Some(s)) => {
            let body = serde_json::json!({
                "user": s.identity.user,
                "email": s.identity.email,
                "groups": s.identity.groups,
                "expires_at": s.expires_at,
            });
            http_util::fixed(StatusCode::OK, "application/json", body.to_string())
        }
        Ok(None) => {
            let no_session = Failure::NoSession {
                message: "no valid session",
                challenge: true,
            };
            respond::failure(None, &At::new(Mode::Api, req.headers()), no_session)
        }
        Err(e) => respond::failure(None, &At::new(Mode::Api, req.headers()), Failure::Store(&e)),
    }
}

/// The page for a failed login, with a link that starts over.
fn login_failed(headers: &http::HeaderMap, e: &LoginError, retry: &str) -> Response<Body> {
    respond::failure(
        None,
        &At::new(Mode::Endpoint, headers),
        Failure::Login(e, retry),
    )
}

/// The validated `rd` (or `/`), logging rejected values.
fn safe_rd(rt: &Runtime, query: Option<&str>, origin: &Origin) -> String {
    let Some(rd) = http_util::query_param(query, "rd") else {
        return "/".into();
    };
    if rd.is_empty() {
        return "/".into();
    }
    let own = origin.bare_host();
    match rt.redirects.check(&rd, own.as_deref()) {
        Ok(ok) => ok.to_owned(),
        Err(e) => {
            tracing::info!(reason = %e, "rejected redirect target; using /");
            "/".into()
        }
    }
}

fn set_cookie(res: &mut Response<Body>, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).filter(|c| !c.is_control()).collect()
}

//! The response boundary: every [`Decision`] and every failure a request
//! meets becomes its response here, in each mode the gateway answers in —
//! forward auth for Traefik and Caddy, forward auth for nginx
//! (`auth_request` takes 2xx, 401 and 403 only, so never a redirect), the
//! reverse proxy, and the gateway's own endpoints. Browsers (`Accept` naming
//! `text/html`) get pages, every other client JSON.
//!
//! Each outcome is logged here, once, and the decision counters
//! (`portcullis_decisions`) count here. A failure's [`Fault`] class picks
//! its status family and its log level; the client gets a short body, the
//! cause goes to the log.
//!
//! Callers: `forward_auth` and `proxy` (decisions and malformed requests),
//! `proxy` (upstream failures), `login`, `debug` and `admin` (their
//! failures, the admin listener's refusals included), `server` (404).

use std::error::Error;
use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use crate::auth::diagnostics::{self, ClientError};
use crate::auth::oidc::LoginError;
use crate::auth::pipeline::{rule_name, Decision, Principal, Runtime};
use crate::auth::rules::host::normalize_host;
use crate::auth::rules::path::PathError;
use crate::auth::rules::CompiledRule;
use crate::auth::session::StoreError;
use crate::base::error::Fault;
use crate::base::http_util::{self, Body};
use crate::base::identity::IdentityHeaders;
use crate::base::metrics::Outcome;
use crate::base::request_id;
use crate::endpoints::pages;

/// Absolute login URL for the original request, sent with nginx-mode 401s.
pub static X_AUTH_LOGIN_URL: HeaderName = HeaderName::from_static("x-auth-login-url");

/// Who is answered, which decides redirects, statuses and body formats.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// A forward-auth check from Traefik or Caddy: browsers are sent to the
    /// login; every answer carries every identity header.
    ForwardAuth,
    /// A forward-auth check from nginx `auth_request`: 401 and 403 only,
    /// never a redirect (nginx turns any other status into a 500); every
    /// answer carries every identity header.
    Nginx,
    /// A request for a proxied host: refusals are answered, an allowed
    /// request goes on to its upstream.
    Proxy,
    /// The gateway's own pages (login, sign-out): pages for browsers, JSON
    /// otherwise.
    Endpoint,
    /// The gateway's JSON endpoints (userinfo, debug): JSON for everyone.
    Api,
    /// The admin listener: JSON, and store errors with their text.
    Admin,
}

/// The request being answered.
#[derive(Clone, Copy)]
pub struct At<'a> {
    /// The mode it is answered in.
    pub mode: Mode,
    /// Its headers (`Accept` chooses between page and JSON); `None` once
    /// they are gone (a proxied request sent on to its upstream).
    pub headers: Option<&'a HeaderMap>,
    /// Its id, when its log lines are written outside the request's span (a
    /// forward-auth check or a proxied request runs without one unless debug
    /// logging is on);
    /// `None` when they already are in it.
    pub id: Option<&'a HeaderValue>,
}

/// The request a decision was made about, for the login URL it may be sent to.
#[derive(Clone, Copy, Debug)]
pub struct Asked<'a> {
    /// `http` or `https`, as the client used it.
    pub proto: &'static str,
    /// Host as sent (may carry a port), validated.
    pub host_raw: &'a str,
    /// Request target: path and query.
    pub target: &'a str,
}

/// What a decision comes to.
// Returned once and taken apart at once; boxing the response would cost an
// allocation per refusal.
#[allow(clippy::large_enum_variant)]
pub enum Answer {
    /// The request is allowed (as this principal; `None` on a public rule):
    /// the reverse proxy forwards it, forward auth answers [`allowed`].
    Pass(Option<Principal>),
    /// The answer to send.
    Respond(Response<Body>),
}

/// A request that failed before or after its decision.
#[derive(Debug)]
pub enum Failure<'e> {
    /// A forward-auth check whose original request is malformed or ambiguous
    /// (400; 403 under nginx).
    BadCheck(&'e (dyn Error + 'static)),
    /// A proxied request whose host is malformed (400).
    BadHost,
    /// A proxied request whose path breaks SPEC's rules (400).
    BadPath(&'e PathError),
    /// No endpoint or upstream serves the path (404).
    NotFound,
    /// A query the endpoint cannot act on (400); the text says what it wants.
    BadQuery(&'static str),
    /// A method the endpoint does not take (405); the text names the ones it does.
    Method(&'static str),
    /// The upstream refused, failed or timed out (502; 504 when `timed_out`).
    Upstream {
        /// The rule that names the upstream.
        rule: &'e str,
        /// The upstream's URL (logged, never shown).
        url: &'e str,
        /// What went wrong.
        error: &'e (dyn Error + 'static),
        /// Connecting or the response head took too long.
        timed_out: bool,
    },
    /// The session store could not answer (503).
    Store(&'e StoreError),
    /// A login failed; the page links to `retry` to start over.
    Login(&'e LoginError, &'e str),
    /// A JSON endpoint that answers signed-in browsers only, asked without a
    /// session (401; with `WWW-Authenticate: Bearer` when `challenge`).
    NoSession {
        /// What the client should do.
        message: &'static str,
        /// Whether the answer carries the `Bearer` challenge.
        challenge: bool,
    },
    /// The admin listener refuses the request (421 or 401).
    Admin {
        /// Why.
        refusal: AdminRefusal,
        /// The client's address.
        peer: SocketAddr,
        /// The host it was addressed to (empty when none).
        host: &'e str,
        /// Its path, without the query.
        path: &'e str,
    },
}

/// Why the admin listener refuses a request (decided by `admin::guard`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRefusal {
    /// The request is addressed to a name other than `localhost`
    /// (a DNS-rebinding page, or an operator using a name without the token).
    Misdirected,
    /// A token is configured and the request has no `Authorization: Bearer`.
    MissingToken,
    /// A token is configured and the request sent another one.
    WrongToken,
}

/// The `WWW-Authenticate` challenge of an admin 401.
pub const ADMIN_CHALLENGE: &str = "Bearer realm=\"portcullis-admin\"";

/// The admin challenge when a token was sent but is not the right one (RFC 6750 §3.1).
pub const ADMIN_CHALLENGE_INVALID: &str =
    "Bearer realm=\"portcullis-admin\", error=\"invalid_token\"";

// === impl At ===

impl<'a> At<'a> {
    /// A request with these headers, answered in `mode`, whose log lines are
    /// in its span.
    pub fn new(mode: Mode, headers: &'a HeaderMap) -> At<'a> {
        At {
            mode,
            headers: Some(headers),
            id: None,
        }
    }

    /// True when the client is a browser (`Accept` names `text/html`).
    fn is_browser(&self) -> bool {
        self.headers.is_some_and(http_util::is_browser)
    }
}

// === impl Failure ===

impl Failure<'_> {
    /// Whose fault it is.
    pub fn fault(&self) -> Fault {
        match self {
            Failure::BadCheck(_)
            | Failure::BadHost
            | Failure::BadPath(_)
            | Failure::NotFound
            | Failure::BadQuery(_)
            | Failure::Method(_)
            | Failure::NoSession { .. }
            | Failure::Admin { .. } => Fault::Client,
            Failure::Upstream { .. } => Fault::Upstream,
            Failure::Store(_) => Fault::Store,
            Failure::Login(e, _) => login_fault(e),
        }
    }

    /// The status of the answer in `mode`.
    fn status(&self, mode: Mode) -> StatusCode {
        match (self.fault(), self) {
            (_, Failure::Login(e, _)) => e.status(),
            // nginx's auth_request turns every status but 2xx/401/403 into a 500.
            (_, Failure::BadCheck(_)) if mode == Mode::Nginx => StatusCode::FORBIDDEN,
            (_, Failure::NotFound) => StatusCode::NOT_FOUND,
            (_, Failure::Method(_)) => StatusCode::METHOD_NOT_ALLOWED,
            (
                _,
                Failure::Admin {
                    refusal: AdminRefusal::Misdirected,
                    ..
                },
            ) => StatusCode::MISDIRECTED_REQUEST,
            (_, Failure::NoSession { .. } | Failure::Admin { .. }) => StatusCode::UNAUTHORIZED,
            (Fault::Client, _) => StatusCode::BAD_REQUEST,
            (
                _,
                Failure::Upstream {
                    timed_out: true, ..
                },
            ) => StatusCode::GATEWAY_TIMEOUT,
            (Fault::Upstream | Fault::Idp, _) => StatusCode::BAD_GATEWAY,
            (Fault::Store, _) => StatusCode::SERVICE_UNAVAILABLE,
            (Fault::Internal, _) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Whose fault a failed login is: the store's, the IdP's (5xx), else the
/// client's (a refused sign-in included: the person may try another account).
fn login_fault(e: &LoginError) -> Fault {
    if matches!(e, LoginError::Store(_)) {
        Fault::Store
    } else if e.status().is_server_error() {
        Fault::Idp
    } else {
        Fault::Client
    }
}

/// Turns a decision into its answer, counts it and logs it.
///
/// Allowed requests come back as [`Answer::Pass`]; every refusal as the
/// response for `at`'s mode, made for the request `original`.
pub fn decision(rt: &Runtime, at: &At<'_>, original: &Asked<'_>, decision: Decision<'_>) -> Answer {
    rt.decisions
        .count(decision.rule().map(|r| r.index), decision.outcome());
    let nginx = at.mode == Mode::Nginx;
    let proxy = at.mode == Mode::Proxy;
    let mut res = match decision {
        Decision::Allow(principal, rule) => {
            if tracing::event_enabled!(tracing::Level::DEBUG) {
                tracing::debug!(rule.name = rule_name(rule), user = %principal.identity().user, decision = "allow", "request allowed");
            }
            return Answer::Pass(Some(principal));
        }
        Decision::Public(_) => return Answer::Pass(None),
        Decision::Unauthenticated(rule) => {
            let mut res = unauthenticated(rt, original, at.is_browser(), nginx);
            challenge_basic(rule, &mut res);
            res
        }
        Decision::BadCredentials(_) => bad_credentials(),
        Decision::TooManyAttempts(_, secs) => too_many_attempts(secs, nginx),
        Decision::InvalidToken(rule) => {
            let denial = Denial {
                kind: ClientError::InvalidToken,
                decision: "invalid_token",
                what: "request denied: bearer token rejected",
            };
            log_denial(at, original, rule, denial);
            invalid_token()
        }
        Decision::Forbidden(principal, rule) => {
            let user = &principal.identity().user;
            let sign_out = if proxy {
                // The proxied host serves the gateway's endpoints itself.
                let _span = at.id.and_then(request_id::enter_span);
                tracing::info!(rule.name = rule_name(rule), user = %user, decision = "forbidden", "proxied request denied");
                format!("{}/sign_out", rt.prefix())
            } else {
                let _span = at.id.and_then(request_id::enter_span);
                tracing::info!(rule.name = rule_name(rule), user = %user, host = %original.host_raw, decision = "forbidden", "request denied: user does not satisfy the rule");
                format!("{}{}/sign_out", login_base(rt, original), rt.prefix())
            };
            pages::forbidden(
                at.is_browser(),
                user,
                rule_name(rule),
                &pages::Needed::of(rule, principal.identity()),
                &sign_out,
            )
        }
        Decision::Deny(rule) => {
            let denial = Denial {
                kind: ClientError::DeniedByRule,
                decision: "deny",
                what: "request denied by rule",
            };
            log_denial(at, original, rule, denial);
            deny(at.is_browser())
        }
        Decision::StoreUnavailable(_, e) => {
            // The store logs the outage once; one line per request would flood.
            tracing::debug!(error = %e, "session store unavailable; answering 503");
            store_unavailable(at.is_browser())
        }
    };
    if !proxy {
        set_identity(rt, &mut res, None);
        if rt.assertion.is_some() {
            res.headers_mut().insert(
                crate::auth::assertion::X_AUTH_ASSERTION.clone(),
                HeaderValue::from_static(""),
            );
        }
    }
    Answer::Respond(res)
}

/// A refusal a client can repeat on every request, as it is logged.
struct Denial {
    /// The kind its log lines are rate-limited as.
    kind: ClientError,
    /// The `decision` field.
    decision: &'static str,
    /// The message (`proxied ` in front in proxy mode).
    what: &'static str,
}

/// The one log line of a [`Denial`]: at info in proxy mode; otherwise at
/// info at most once per [`diagnostics::CLIENT_ERRORS_EVERY`] per kind,
/// in the request's span, and at debug in between.
fn log_denial(at: &At<'_>, original: &Asked<'_>, rule: Option<&CompiledRule>, d: Denial) {
    let Denial {
        kind,
        decision,
        what,
    } = d;
    if at.mode == Mode::Proxy {
        let _span = at.id.and_then(request_id::enter_span);
        tracing::info!(rule.name = rule_name(rule), decision, "proxied {what}");
        return;
    }
    match diagnostics::client_error(kind) {
        Some(suppressed) => {
            let _span = at.id.and_then(request_id::enter_span);
            tracing::info!(rule.name = rule_name(rule), host = %original.host_raw, decision, suppressed, "{what}")
        }
        None => {
            tracing::debug!(rule.name = rule_name(rule), host = %original.host_raw, decision, "{what}")
        }
    }
}

/// The forward-auth answer for an allowed request: 200 with every identity
/// header (empty on a public rule, `principal` `None`) and, with
/// `headers.assertion`, the signed assertion for the original host.
pub fn allowed(
    rt: &Runtime,
    original: &Asked<'_>,
    principal: Option<&Principal>,
) -> Response<Body> {
    let mut res = http_util::empty(StatusCode::OK);
    set_identity(rt, &mut res, principal);
    if let Some(signer) = &rt.assertion {
        let value = match (principal, normalize_host(original.host_raw)) {
            (Some(p), Ok(aud)) => signer.assertion(p, &aud, crate::base::clock::unix_secs()),
            _ => HeaderValue::from_static(""),
        };
        res.headers_mut()
            .insert(crate::auth::assertion::X_AUTH_ASSERTION.clone(), value);
    }
    res
}

/// Turns a failure into its answer and logs it at its fault's level.
///
/// `rt` is the runtime the request is judged on, while the request still
/// holds it: a request left unjudged (malformed) is counted in its decision
/// counters, and a forward-auth answer carries its identity headers.
pub fn failure(rt: Option<&Runtime>, at: &At<'_>, failure: Failure<'_>) -> Response<Body> {
    if let Some(rt) = rt {
        if matches!(
            failure,
            Failure::BadCheck(_) | Failure::BadHost | Failure::BadPath(_)
        ) {
            rt.decisions.count_unjudged(Outcome::BadRequest);
        }
    }
    log_failure(at, &failure);
    let status = failure.status(at.mode);
    let browser = || at.is_browser();
    let mut res = match failure {
        Failure::BadCheck(e) if browser() => {
            pages::html(status, "Bad request", &e.to_string(), None)
        }
        Failure::BadCheck(e) => pages::json_error(status, "bad_request", &e.to_string()),
        Failure::BadHost => pages::json_error(status, "bad_request", "malformed host"),
        Failure::BadPath(e) => pages::json_error(status, "bad_request", &e.to_string()),
        Failure::NotFound => pages::json_error(status, "not_found", "no such endpoint"),
        Failure::BadQuery(wanted) => pages::json_error(status, "bad_request", wanted),
        Failure::Method(allowed) => pages::json_error(status, "method_not_allowed", allowed),
        Failure::Upstream {
            timed_out: true, ..
        } => pages::html(
            status,
            "Gateway timeout",
            "The application behind this address took too long to answer.",
            None,
        ),
        Failure::Upstream { .. } => pages::html(
            status,
            "Bad gateway",
            "The application behind this address is not answering.",
            None,
        ),
        // The admin listener is the operator's: it tells the cause.
        Failure::Store(e) if at.mode == Mode::Admin => {
            pages::json_error(status, "store_unavailable", &e.to_string())
        }
        Failure::Store(_) => store_unavailable(at.mode != Mode::Api && browser()),
        Failure::Login(e, retry) => pages::html(
            status,
            "Sign-in failed",
            &e.user_message(),
            Some((retry, "Try again")),
        ),
        Failure::NoSession { message, challenge } => {
            let mut res = pages::json_error(status, "unauthenticated", message);
            if challenge {
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            res
        }
        Failure::Admin { refusal, .. } => refusal.response(),
    };
    if let (Some(rt), Mode::ForwardAuth | Mode::Nginx) = (rt, at.mode) {
        set_identity(rt, &mut res, None);
    }
    res
}

/// The one log line of a failure: client mistakes a client can repeat on
/// every request rate-limited (see [`diagnostics::client_error`]), the rest
/// at their fault's level.
fn log_failure(at: &At<'_>, failure: &Failure<'_>) {
    match failure {
        Failure::BadCheck(e) => log_client_error(
            at,
            ClientError::BadForwardAuth,
            e,
            "forward-auth request rejected",
        ),
        Failure::BadPath(e) => {
            log_client_error(at, ClientError::BadProxied, e, "proxied request rejected")
        }
        // Told by the 400, 401, 404 or 405 itself; nothing for the operator.
        Failure::BadHost
        | Failure::NotFound
        | Failure::BadQuery(_)
        | Failure::Method(_)
        | Failure::NoSession { .. } => {}
        Failure::Upstream {
            rule, url, error, ..
        } => {
            let _span = at.id.and_then(request_id::enter_span);
            tracing::warn!(rule.name = %rule, upstream = %url, error = %error, "proxied request failed")
        }
        // The store logs the outage once; one line per request would flood.
        Failure::Store(e) => {
            tracing::debug!(error = %e, "session store unavailable; answering 503")
        }
        Failure::Login(e, _) => {
            let level = login_fault(e).level();
            if level == tracing::Level::WARN {
                tracing::warn!(reason = e.reason(), error = %e, "login failed")
            } else if level == tracing::Level::INFO {
                tracing::info!(reason = e.reason(), error = %e, "login failed")
            } else {
                tracing::debug!(reason = e.reason(), error = %e, "login failed")
            }
        }
        Failure::Admin {
            refusal,
            peer,
            host,
            path,
        } => {
            let (kind, what) = refusal.described();
            match diagnostics::client_error(kind) {
                Some(suppressed) => {
                    tracing::info!(client.addr = %peer, http.host = %host, http.path = %path, suppressed, "{what}")
                }
                None => {
                    tracing::debug!(client.addr = %peer, http.host = %host, http.path = %path, "{what}")
                }
            }
        }
    }
}

// === impl AdminRefusal ===

impl AdminRefusal {
    /// The answer: 421 or 401 with a short JSON body. [`failure`] sends it
    /// with its log line.
    pub fn response(self) -> Response<Body> {
        match self {
            AdminRefusal::Misdirected => pages::json_error(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected_request",
                "the admin listener answers only requests addressed to an IP address or localhost (or carrying the admin token)",
            ),
            AdminRefusal::MissingToken | AdminRefusal::WrongToken => {
                let mut res = pages::json_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "the admin API needs Authorization: Bearer <the token in server.admin_token_file>",
                );
                let challenge = if self == AdminRefusal::WrongToken {
                    ADMIN_CHALLENGE_INVALID
                } else {
                    ADMIN_CHALLENGE
                };
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
                res
            }
        }
    }

    /// The kind it is rate-limited as in the log, and its log message.
    fn described(self) -> (ClientError, &'static str) {
        match self {
            AdminRefusal::Misdirected => (
                ClientError::AdminMisdirected,
                "admin request refused: addressed to a name other than localhost (DNS rebinding?)",
            ),
            AdminRefusal::MissingToken => (
                ClientError::AdminUnauthorized,
                "admin request refused: no bearer token",
            ),
            AdminRefusal::WrongToken => (
                ClientError::AdminUnauthorized,
                "admin request refused: wrong bearer token",
            ),
        }
    }
}

/// Logs a client mistake at info at most once per
/// [`diagnostics::CLIENT_ERRORS_EVERY`] per kind, at debug in between.
fn log_client_error(
    at: &At<'_>,
    kind: ClientError,
    error: &dyn std::fmt::Display,
    what: &'static str,
) {
    match diagnostics::client_error(kind) {
        Some(suppressed) => {
            let _span = at.id.and_then(request_id::enter_span);
            tracing::info!(error = %error, suppressed, "{what}")
        }
        None => tracing::debug!(error = %error, "{what}"),
    }
}

/// 404 for paths portcullis does not serve ([`Failure::NotFound`]).
pub fn not_found() -> Response<Body> {
    let at = At {
        mode: Mode::Api,
        headers: None,
        id: None,
    };
    failure(None, &at, Failure::NotFound)
}

/// 503 when sessions cannot be read or written: a page for browsers, JSON otherwise.
fn store_unavailable(browser: bool) -> Response<Body> {
    if browser {
        pages::html(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in temporarily unavailable",
            "The session store cannot be reached. Please try again in a moment.",
            None,
        )
    } else {
        pages::json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "session store unavailable",
        )
    }
}

/// Puts every identity header on a forward-auth answer (empty unless
/// `allowed`), so the front proxy overwrites any copy the client sent; with
/// `pass_access_token`, the session's access token too.
fn set_identity(rt: &Runtime, res: &mut Response<Body>, allowed: Option<&Principal>) {
    let names = &rt.config.headers;
    let h = res.headers_mut();
    match allowed {
        Some(p) => p.headers().insert_into(names, h),
        None => IdentityHeaders::insert_empty(names, h),
    }
    if names.pass_access_token {
        let token = match allowed {
            Some(Principal::Session(s)) => s.access_token.as_ref(),
            _ => None,
        };
        let mut v = token
            .and_then(|t| HeaderValue::from_str(t.expose()).ok())
            .unwrap_or(HeaderValue::from_static(""));
        v.set_sensitive(true);
        h.insert(names.access_token.clone(), v);
    }
}

/// 403 for a rule that denies everybody: a page for browsers, JSON otherwise.
fn deny(browser: bool) -> Response<Body> {
    if browser {
        pages::html(
            StatusCode::FORBIDDEN,
            "Access denied",
            "This address is not open to anyone.",
            None,
        )
    } else {
        pages::json_error(StatusCode::FORBIDDEN, "forbidden", "denied by rule")
    }
}

/// Scheme and host the login endpoints are reached on for this request.
fn login_base(rt: &Runtime, original: &Asked<'_>) -> String {
    match &rt.config.server.external_url {
        Some(u) => u.as_str().trim_end_matches('/').to_owned(),
        None => format!("{}://{}", original.proto, original.host_raw),
    }
}

/// The login URL that returns to the original request afterwards.
fn login_url(rt: &Runtime, original: &Asked<'_>) -> String {
    let url = format!(
        "{}://{}{}",
        original.proto, original.host_raw, original.target
    );
    format!(
        "{}{}/start?rd={}",
        login_base(rt, original),
        rt.prefix(),
        http_util::encode_component(&url)
    )
}

/// The answer for a request without valid credentials: a 302 to the login
/// for browsers (not under nginx), otherwise 401 `Bearer` (with
/// `X-Auth-Login-URL` for browsers under nginx, whose 401 handler redirects
/// them there).
fn unauthenticated(
    rt: &Runtime,
    original: &Asked<'_>,
    browser: bool,
    nginx: bool,
) -> Response<Body> {
    let login = login_url(rt, original);
    if !nginx && browser {
        return http_util::redirect(&login);
    }
    let mut res = pages::json_error(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "sign in first, or present a bearer token",
    );
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    // nginx's 401 handler redirects browsers to this URL; API clients keep the 401.
    if browser {
        if let Ok(v) = HeaderValue::from_str(&login) {
            res.headers_mut().insert(X_AUTH_LOGIN_URL.clone(), v);
        }
    }
    res
}

/// The answer for a bearer token that failed verification: 401 with
/// `WWW-Authenticate: Bearer error="invalid_token"`, for browsers too (the
/// client chose the token; a login would not fix it).
fn invalid_token() -> Response<Body> {
    let mut res = pages::json_error(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        "the bearer token was not accepted",
    );
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    res
}

/// Adds the Basic challenge to a 401 answered under a rule with
/// `basic_auth` (browsers are sent to the login instead, as elsewhere).
fn challenge_basic(rule: Option<&CompiledRule>, res: &mut Response<Body>) {
    if res.status() == StatusCode::UNAUTHORIZED && rule.is_some_and(|r| r.basic_auth) {
        res.headers_mut().append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(crate::auth::basic::CHALLENGE),
        );
    }
}

/// The answer for wrong Basic credentials on a `basic_auth` rule: 401 with
/// the Basic challenge, for browsers too (a login page would not fix the
/// credentials the client chose, and a redirect could loop).
fn bad_credentials() -> Response<Body> {
    let mut res = pages::json_error(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "the user name or password was not accepted",
    );
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(crate::auth::basic::CHALLENGE),
    );
    res
}

/// The answer once a user name or client address has too many failed Basic
/// attempts: 429 with `Retry-After`; 403 under nginx, whose `auth_request`
/// turns every status but 2xx/401/403 into a 500.
fn too_many_attempts(retry_after_secs: u64, nginx: bool) -> Response<Body> {
    let status = if nginx {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::TOO_MANY_REQUESTS
    };
    let mut res = pages::json_error(
        status,
        "too_many_attempts",
        "too many failed sign-in attempts; try again later",
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    res
}

#[cfg(test)]
mod tests;
